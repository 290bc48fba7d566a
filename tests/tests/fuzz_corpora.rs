//! The fuzz targets' smoke run in the ordinary suite: every committed corpus input (and the
//! crashes found and fixed, kept as regression inputs) through exactly the body `cargo fuzz`
//! runs (tests/src/fuzz.rs). The long runs and their figures are in docs/fuzzing.md.

use std::path::PathBuf;

use aloha_tests::build::workspace_root;
use aloha_tests::fuzz::TARGETS;

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = workspace_root().join("fuzz").join(dir).join(target);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
    }
    files.sort();
    files
}

#[test]
fn every_target_has_a_corpus_and_passes_it() {
    for (name, body) in TARGETS {
        let files = inputs(name);
        assert!(
            files.len() >= 5,
            "fuzz/corpus/{name} holds {} inputs; run `cargo +nightly fuzz run {name}` and commit the minimized corpus",
            files.len()
        );
        for file in &files {
            // A fuzzer running beside the suite replaces corpus entries as it minimizes them.
            let data = match std::fs::read(file) {
                Ok(data) => data,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", file.display()),
            };
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{name}: {} fails", file.display());
        }
        eprintln!("{name}: {} inputs", files.len());
    }
}
