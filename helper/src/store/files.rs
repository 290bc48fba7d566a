//! The file operations every state file goes through: atomic writes (temp file, fsync, rename,
//! fsync of the directory), exclusive creation, and reads that tell a missing file from an
//! unreadable or corrupt one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use super::{StoreError, crash};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write `bytes` to a new temp file next to `path` (created with `mode`, fsync'ed), hand it
/// to `place`, then fsync the directory. The temp file is removed if anything fails.
fn via_temp(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    place: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        crash::point("create the temp file")?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // Exactly `mode`, whatever the umask (alohad.service runs with UMask=0077; public
        // keys must still be 0644).
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        crash::point("write the temp file")?;
        f.write_all(bytes)?;
        crash::point("fsync the temp file")?;
        f.sync_all()?;
        crash::point("put the file in place")?;
        place(&tmp)?;
        crash::point("fsync the directory")?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `bytes` to `path` atomically: a crash leaves either the old or the new file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    via_temp(path, bytes, mode, |tmp| fs::rename(tmp, path))
}

/// Create `path` with `bytes` unless it exists (then leave it alone): the fsync'ed temp file
/// is hard-linked into place, which fails if another writer got there first.
pub(super) fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    via_temp(path, bytes, mode, |tmp| {
        match fs::hard_link(tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        fs::remove_file(tmp)
    })
}

/// The bytes of `path` (zeroized when dropped: some are keys), `None` if it does not exist.
pub(super) fn read_optional(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(Zeroizing::new(b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            path: path.into(),
            source,
        }),
    }
}

/// Read and parse a JSON state file. `Ok(None)` if it does not exist.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    parse_json(path, &bytes).map(Some)
}

/// [`read_json`] for a state file with a `version`: one from a newer Aloha (above `latest`)
/// is refused as such before anything else in it is read (its fields may be ones this alohad
/// does not know, which would otherwise read as corruption).
pub(super) fn read_versioned<T: DeserializeOwned>(
    path: &Path,
    latest: u32,
) -> Result<Option<T>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Version {
        version: u32,
    }
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    if let Ok(Version { version }) = serde_json::from_slice::<Version>(&bytes)
        && version > latest
    {
        return Err(StoreError::Newer {
            path: path.into(),
            version,
            latest,
        });
    }
    parse_json(path, &bytes).map(Some)
}

/// A user's own state file (key container, face, vault): its format version and whose it is.
pub(super) trait UserRecord: DeserializeOwned {
    /// What the file holds, for errors: "container", "face", "vault".
    const KIND: &'static str;
    /// The one format version this alohad reads and writes.
    const VERSION: u32;
    fn version(&self) -> u32;
    fn user(&self) -> &str;
}

/// `user`'s record at `path`, if there is one: one from a newer Aloha is refused as such, one
/// of an older format or belonging to another user as corrupt (a file copied or renamed from
/// another user's directory is never theirs).
pub(super) fn read_user_record<T: UserRecord>(
    path: PathBuf,
    user: &str,
) -> Result<Option<T>, StoreError> {
    let Some(record) = read_versioned::<T>(&path, T::VERSION)? else {
        return Ok(None);
    };
    if record.version() != T::VERSION {
        return Err(StoreError::Corrupt {
            path,
            reason: format!(
                "{} format version {} is not one this alohad reads ({})",
                T::KIND,
                record.version(),
                T::VERSION
            ),
        });
    }
    if record.user() != user {
        return Err(StoreError::Corrupt {
            path,
            reason: format!("it belongs to {:?}, not {user:?}", record.user()),
        });
    }
    Ok(Some(record))
}

fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StoreError> {
    if bytes.is_empty() {
        return Err(StoreError::Corrupt {
            path: path.into(),
            reason: "the file is empty".into(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        path: path.into(),
        reason: e.to_string(),
    })
}

pub(super) fn write_json<T: Serialize>(
    path: &Path,
    value: &T,
    mode: u32,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Write {
        path: path.into(),
        source: io::Error::other(e.to_string()),
    })?;
    write_atomic(path, &Zeroizing::new(bytes), mode)
}

/// Create `dir` with `mode` if missing; insist it is a root-owned directory and set its mode.
pub(crate) fn ensure_dir(dir: &Path, mode: u32) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(StoreError::Write {
                path: dir.into(),
                source,
            });
        }
    }
    let meta = fs::symlink_metadata(dir).map_err(|source| StoreError::Read {
        path: dir.into(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(StoreError::Unsafe {
            path: dir.into(),
            why: "it is not a directory".into(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StoreError::Unsafe {
            path: dir.into(),
            why: format!(
                "it is owned by uid {}, not by alohad (uid {me})",
                meta.uid()
            ),
        });
    }
    if meta.mode() & 0o7777 != mode {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(|source| {
            StoreError::Write {
                path: dir.into(),
                source,
            }
        })?;
    }
    Ok(())
}

/// A 32-byte key file alohad makes for itself (`private/history.key`, `private/face.key`),
/// created on first use. `may_create` is false when data made with the key exists: then a
/// missing key is an error (naming `needed_by`), never a fresh key that would silently
/// invalidate that data.
pub(super) fn key_file(
    path: &Path,
    may_create: bool,
    needed_by: &str,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let parse = |bytes: Zeroizing<Vec<u8>>| {
        if bytes.len() == 32 {
            Ok(bytes)
        } else {
            Err(StoreError::Corrupt {
                path: path.into(),
                reason: format!("expected 32 bytes, found {}", bytes.len()),
            })
        }
    };
    if let Some(bytes) = read_optional(path)? {
        return parse(bytes);
    }
    if !may_create {
        return Err(StoreError::KeyMissing {
            path: path.into(),
            needed_by: needed_by.into(),
        });
    }
    let mut key = Zeroizing::new(vec![0u8; 32]);
    getrandom::fill(&mut key).map_err(|e| StoreError::Write {
        path: path.into(),
        source: io::Error::other(e.to_string()),
    })?;
    create_exclusive(path, &key, 0o600)?;
    // Whoever created it first won: everyone uses the file's key, never their own.
    let bytes = read_optional(path)?.ok_or_else(|| StoreError::Corrupt {
        path: path.into(),
        reason: "it vanished right after it was created".into(),
    })?;
    parse(bytes)
}
