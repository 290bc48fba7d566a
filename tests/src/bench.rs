//! What the benchmark binaries share: their command-line flags.

use crate::fixture::Kind;

/// The value after `--name` on the command line, if any.
pub fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `--kind software|tpm`, or both key stores when it is absent.
pub fn kinds() -> Result<Vec<Kind>, String> {
    match flag("--kind").as_deref() {
        None => Ok(vec![Kind::Software, Kind::Tpm]),
        Some("software") => Ok(vec![Kind::Software]),
        Some("tpm") => Ok(vec![Kind::Tpm]),
        Some(other) => Err(format!("{other:?}: software or tpm")),
    }
}
