//! Finding (and if needed building) the binaries under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Names `target/<profile>` for a child that cannot work it out itself (see [`profile_dir`]).
pub const PROFILE_DIR_ENV: &str = "ALOHA_TESTS_PROFILE_DIR";

/// `target/<profile>` of the running test executable (`target/<profile>/deps/<test>`).
///
/// A process that has unshared its mount namespace inside a chroot (CI containers, fresh
/// machines) sees `/proc/self/exe` as a path from the host's root, which does not exist in
/// the chroot; such a process is told the directory by its parent through [`PROFILE_DIR_ENV`].
pub fn profile_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(PROFILE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Build alohad, aloha, aloha-presence and pam_aloha.so with the tests' own profile, once per
/// test process, so `cargo test` alone always exercises the current code.
///
/// The whole workspace's libraries and binaries, not just those four packages: cargo unifies
/// features over the packages selected, and four alone (aloha-face without its `cli` feature,
/// so aloha-helper and everything above it too) are a second build of each crate beside the
/// one `cargo build --workspace` made — minutes of compiling inside the first test on a fresh
/// machine. The workspace's own selection is already built there, so this is a no-op.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("ALOHA_TESTS_NO_BUILD").is_some() {
            return;
        }
        let profile_dir = profile_dir();
        let target = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "--workspace", "--lib", "--bins"])
            .env("CARGO_TARGET_DIR", target);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the binaries under test failed");
    });
}

/// Path of a binary (or the PAM module) under test.
pub fn artifact(name: &str) -> PathBuf {
    ensure_built();
    let path = profile_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}
