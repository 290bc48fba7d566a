//! The public-key registry: `state_dir/public/<user>.pub`, written by alohad at enrolment and
//! read by whoever verifies a sign-in (pam_aloha, `aloha verify`).
//!
//! This is what makes the proof independent of the socket: a process that pretends to be
//! alohad cannot write here (root-owned, not group/other-writable — checked on every read), so
//! it cannot make its own key look registered.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::protocol::BackendKind;

pub const REGISTRY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredKey {
    pub version: u32,
    pub user: String,
    pub uid: u32,
    pub backend: BackendKind,
    /// SEC1 uncompressed P-256 point.
    #[serde(with = "crate::hex::serde")]
    pub public_key: Vec<u8>,
}

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{user} has no Aloha PIN ({path} does not exist); `aloha pin set` creates one")]
    NotEnrolled { user: String, path: PathBuf },
    #[error("refusing {path}: {why}; it must be owned by root and writable by root only")]
    Insecure { path: PathBuf, why: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({reason}); an administrator should re-enrol the user")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} belongs to {found}, not to {expected}")]
    WrongOwner {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// A user name safe to use as a file name. Names come from PAM or the command line.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('.')
        && !name.starts_with('-')
        && name.chars().all(|c| !c.is_control() && c != '/')
}

pub fn public_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("public")
}

pub fn key_path(state_dir: &Path, user: &str) -> PathBuf {
    public_dir(state_dir).join(format!("{user}.pub"))
}

/// A registry entry is a few hundred bytes; anything larger is not one.
const MAX_ENTRY_LEN: u64 = 64 * 1024;

fn insecure(path: &Path, why: impl Into<String>) -> RegistryError {
    RegistryError::Insecure {
        path: path.into(),
        why: why.into(),
    }
}

/// Owner root, not writable by group or others.
fn check_owner_and_mode(path: &Path, meta: &fs::Metadata) -> Result<(), RegistryError> {
    if meta.uid() != 0 {
        return Err(insecure(path, format!("it is owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(insecure(
            path,
            format!("its mode {:o} lets others write", meta.mode() & 0o7777),
        ));
    }
    Ok(())
}

/// A directory on the way to an entry: not a symlink, owned by root, not writable by others.
fn check_trusted_dir(path: &Path) -> Result<(), RegistryError> {
    let meta = fs::symlink_metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            insecure(path, "it does not exist")
        } else {
            RegistryError::Io {
                path: path.into(),
                source,
            }
        }
    })?;
    if meta.file_type().is_symlink() {
        return Err(insecure(path, "it is a symlink"));
    }
    check_owner_and_mode(path, &meta)
}

/// Opens the entry without following a symlink (`O_NOFOLLOW`) and without waiting on a FIFO
/// (`O_NONBLOCK`), checks what was opened (`fstat` on the descriptor: a regular file, owned
/// by root, writable by root only, small), and only then reads it — so what is checked is
/// exactly what is read, whatever is renamed into place in between.
fn read_entry(path: &Path, user: &str) -> Result<String, RegistryError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| RegistryError::Io {
        path: path.into(),
        source,
    };
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(RegistryError::NotEnrolled {
                user: user.into(),
                path: path.into(),
            });
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(insecure(path, "it is a symlink"));
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(insecure(path, "it is not a regular file"));
    }
    check_owner_and_mode(path, &meta)?;
    if meta.len() > MAX_ENTRY_LEN {
        return Err(RegistryError::Corrupt {
            path: path.into(),
            reason: format!("{} bytes, more than an entry can be", meta.len()),
        });
    }
    let mut text = String::new();
    (&mut file)
        .take(MAX_ENTRY_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_ENTRY_LEN {
        return Err(RegistryError::Corrupt {
            path: path.into(),
            reason: "it grew while being read".into(),
        });
    }
    Ok(text)
}

/// Read `user`'s registered key, refusing anything a non-root process could have planted.
/// `expected_uid` (from the system's user database) guards against a recycled user name.
pub fn load(
    state_dir: &Path,
    user: &str,
    expected_uid: Option<u32>,
) -> Result<RegisteredKey, RegistryError> {
    let path = key_path(state_dir, user);
    if !valid_user_name(user) {
        return Err(RegistryError::NotEnrolled {
            user: user.into(),
            path,
        });
    }
    let text = read_entry(&path, user)?;
    check_trusted_dir(state_dir)?;
    check_trusted_dir(&public_dir(state_dir))?;
    parse_entry(&text, &path, user, expected_uid)
}

/// The checks on an entry's text once the file is trusted: its format and version, and that it
/// names `user` (and `expected_uid`). `path` is for messages.
pub fn parse_entry(
    text: &str,
    path: &Path,
    user: &str,
    expected_uid: Option<u32>,
) -> Result<RegisteredKey, RegistryError> {
    let path = path.to_path_buf();
    let key: RegisteredKey = serde_json::from_str(text).map_err(|e| RegistryError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if key.version != REGISTRY_VERSION {
        return Err(RegistryError::Corrupt {
            path,
            reason: format!("unknown version {}", key.version),
        });
    }
    if key.user != user {
        return Err(RegistryError::WrongOwner {
            path,
            expected: user.into(),
            found: key.user,
        });
    }
    if let Some(uid) = expected_uid
        && uid != key.uid
    {
        return Err(RegistryError::WrongOwner {
            path,
            expected: format!("uid {uid}"),
            found: format!("uid {}", key.uid),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn setup() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "aloha-registry-{}-{}",
            std::process::id(),
            crate::hex::encode(&crate::challenge::Nonce::random().unwrap().0[..6])
        ));
        fs::create_dir_all(public_dir(&dir)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(public_dir(&dir), fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn write(dir: &Path, user: &str, body: &str, mode: u32) {
        let p = key_path(dir, user);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn record(user: &str, uid: u32) -> String {
        serde_json::to_string(&RegisteredKey {
            version: 1,
            user: user.into(),
            uid,
            backend: BackendKind::Software,
            public_key: vec![4; 65],
        })
        .unwrap()
    }

    #[test]
    fn names() {
        assert!(valid_user_name("alice"));
        assert!(valid_user_name("first.last@corp"));
        for bad in ["", ".", "..", "a/b", "-x", "a\nb", ".hidden"] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn reads_checks_and_refuses() {
        let is_root = nix::unistd::geteuid().is_root();
        let dir = setup();
        assert!(matches!(
            load(&dir, "alice", None),
            Err(RegistryError::NotEnrolled { .. })
        ));
        write(&dir, "alice", &record("alice", 1000), 0o644);
        if is_root {
            assert_eq!(load(&dir, "alice", Some(1000)).unwrap().uid, 1000);
            assert!(matches!(
                load(&dir, "alice", Some(1001)),
                Err(RegistryError::WrongOwner { .. })
            ));
            write(&dir, "bob", &record("alice", 1000), 0o644);
            assert!(matches!(
                load(&dir, "bob", None),
                Err(RegistryError::WrongOwner { .. })
            ));
            write(&dir, "carol", "{not json", 0o644);
            assert!(matches!(
                load(&dir, "carol", None),
                Err(RegistryError::Corrupt { .. })
            ));
            write(&dir, "dave", &record("dave", 7), 0o666);
            assert!(matches!(
                load(&dir, "dave", None),
                Err(RegistryError::Insecure { .. })
            ));
            // What is opened is what is checked: a symlink to a good entry, a FIFO (reading
            // it would wait for a writer) and a device (reading /dev/zero never ends) are
            // refused from the open descriptor, without reading.
            std::os::unix::fs::symlink(key_path(&dir, "alice"), key_path(&dir, "erin")).unwrap();
            let e = load(&dir, "erin", None).unwrap_err();
            assert!(e.to_string().contains("symlink"), "{e}");
            nix::unistd::mkfifo(
                &key_path(&dir, "fred"),
                nix::sys::stat::Mode::from_bits_truncate(0o644),
            )
            .unwrap();
            let e = load(&dir, "fred", None).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
            std::os::unix::fs::symlink("/dev/zero", key_path(&dir, "gina")).unwrap();
            assert!(matches!(
                load(&dir, "gina", None),
                Err(RegistryError::Insecure { .. })
            ));
            // Larger than any entry: refused before reading it.
            write(&dir, "hank", &" ".repeat(100_000), 0o644);
            let e = load(&dir, "hank", None).unwrap_err();
            assert!(matches!(e, RegistryError::Corrupt { .. }), "{e}");
        } else {
            // Files made by a non-root test runner are not trusted.
            assert!(matches!(
                load(&dir, "alice", None),
                Err(RegistryError::Insecure { .. })
            ));
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
