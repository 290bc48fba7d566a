//! The state directory's permissions (modes and owners only; nothing is read): `public/` may be
//! read by all but written only by root, everything under `private/` is root's alone, and no
//! symbolic link stands anywhere in it. Without root only the top and `public/` can be seen.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{Check, Level};

/// Deeper than alohad ever writes (private/users/NAME/FILE is 4).
const MAX_DEPTH: usize = 6;

pub fn checks(state_dir: &Path, is_root: bool) -> Vec<Check> {
    let top = match fs::symlink_metadata(state_dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::new(
                "state",
                Level::Note,
                format!(
                    "{} does not exist yet: alohad creates it at its first start",
                    state_dir.display()
                ),
            )];
        }
        Err(e) => {
            return vec![Check::new(
                "state",
                Level::Problem,
                format!("cannot see {}: {e}", state_dir.display()),
            )];
        }
    };
    let mut wrong = Vec::new();
    judge(state_dir, &top, 0o022, &mut wrong);
    walk(&state_dir.join("public"), 0o022, 1, &mut wrong);
    let private = state_dir.join("private");
    let mut out = Vec::new();
    if is_root {
        walk(&private, 0o077, 1, &mut wrong);
    } else {
        out.push(Check::new(
            "state",
            Level::Note,
            format!(
                "{} is root's alone: run `sudo aloha doctor` to check it",
                private.display()
            ),
        ));
    }
    if wrong.is_empty() {
        out.insert(
            0,
            Check::new(
                "state",
                Level::Ok,
                format!(
                    "{} belongs to root, private/ to root alone",
                    state_dir.display()
                ),
            ),
        );
    } else {
        let shown = wrong.len().min(5);
        let more = if wrong.len() > shown {
            format!(" (and {} more)", wrong.len() - shown)
        } else {
            String::new()
        };
        out.insert(
            0,
            Check::new(
                "state",
                Level::Problem,
                format!(
                    "others could read or change Aloha's state: {}{more}",
                    wrong[..shown].join("; ")
                ),
            )
            .fix(format!(
                "chown -R root:root {0} && chmod -R go-w {0} && chmod -R go-rwx {0}/private, \
                 remove any symbolic link in it, then check who changed it",
                state_dir.display()
            )),
        );
    }
    out
}

/// Everything under `dir` (itself included): owned by root, no bit of `forbidden` set.
fn walk(dir: &Path, forbidden: u32, depth: usize, wrong: &mut Vec<String>) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    judge(dir, &meta, forbidden, wrong);
    if !meta.is_dir() || depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        wrong.push(format!("{} cannot be listed", dir.display()));
        return;
    };
    for e in entries.flatten() {
        walk(&e.path(), forbidden, depth + 1, wrong);
    }
}

fn judge(path: &Path, meta: &fs::Metadata, forbidden: u32, wrong: &mut Vec<String>) {
    if meta.file_type().is_symlink() {
        wrong.push(format!("{} is a symbolic link", path.display()));
        return;
    }
    if meta.uid() != 0 {
        wrong.push(format!("{} belongs to uid {}", path.display(), meta.uid()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & forbidden != 0 {
        wrong.push(format!("{} has mode {mode:o}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("aloha-doctor-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        for (dir, mode) in [
            ("", 0o755),
            ("public", 0o755),
            ("private", 0o700),
            ("private/users", 0o700),
            ("private/users/alice", 0o700),
        ] {
            let p = d.join(dir);
            fs::create_dir_all(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        }
        for (file, mode) in [
            ("public/alice.pub", 0o644),
            ("private/users/alice/container.json", 0o600),
        ] {
            fs::write(d.join(file), b"{}").unwrap();
            fs::set_permissions(d.join(file), fs::Permissions::from_mode(mode)).unwrap();
        }
        d
    }

    // The tests run as root (scripts/test), so the files are root's; elsewhere ownership is
    // the caller's and only the mode findings are checked.
    fn root() -> bool {
        nix::unistd::getuid().is_root()
    }

    #[test]
    fn alohad_s_own_layout_is_clean() {
        let d = tree("clean");
        let c = checks(&d, true);
        if root() {
            assert_eq!(c.len(), 1, "{c:#?}");
            assert_eq!(c[0].level, Level::Ok, "{c:#?}");
        }
        fs::remove_dir_all(&d).unwrap();
        assert_eq!(checks(&d, true)[0].level, Level::Note);
    }

    #[test]
    fn readable_secrets_writable_keys_and_links_are_problems() {
        let d = tree("loose");
        let secret = d.join("private/users/alice/container.json");
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(
            d.join("public/alice.pub"),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/shadow", d.join("private/users/alice/history.json"))
            .unwrap();
        let c = checks(&d, true);
        assert_eq!(c[0].level, Level::Problem, "{c:#?}");
        assert!(c[0].what.contains("container.json has mode 644"), "{c:#?}");
        assert!(c[0].what.contains("alice.pub has mode 666"), "{c:#?}");
        assert!(
            c[0].what.contains("history.json is a symbolic link"),
            "{c:#?}"
        );
        assert!(c[0].fix.as_deref().unwrap().contains("chmod -R go-rwx"));
        // Without root, private/ is not looked at and says so.
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(
            d.join("public/alice.pub"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let c = checks(&d, false);
        assert!(
            c.iter()
                .any(|c| c.level == Level::Note && c.what.contains("sudo aloha doctor")),
            "{c:#?}"
        );
        if root() {
            assert_eq!(c[0].level, Level::Ok, "{c:#?}");
        }
        fs::remove_dir_all(&d).unwrap();
    }
}
