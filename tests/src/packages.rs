//! The packages `packaging/build.sh` wrote, for the guest tests that install them.

use std::path::{Path, PathBuf};

use crate::build::workspace_root;

/// `$VAR`, else `default` under the workspace.
pub fn dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| workspace_root().join(default), PathBuf::from)
}

/// The first `PREFIX*.deb` in `dir`; panics with the command that builds it.
pub fn deb(dir: &Path, prefix: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".deb")
        })
        .unwrap_or_else(|| {
            panic!(
                "no {prefix}*.deb in {}: run packaging/build.sh first",
                dir.display()
            )
        })
}

/// aloha and aloha-face-models from `$ALOHA_PACKAGES` (default target/packages).
pub fn aloha_and_models() -> (PathBuf, PathBuf) {
    let first = dir("ALOHA_PACKAGES", "target/packages");
    (deb(&first, "aloha_"), deb(&first, "aloha-face-models_"))
}
