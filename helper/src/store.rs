//! alohad's state on disk, under `state_dir`:
//!
//! ```text
//! state_dir/                 0755 root
//!   public/                  0755  <user>.pub — registered public keys (see aloha::registry)
//!   private/                 0700  nothing here is readable by anyone but root
//!     alohad.lock                  one daemon per state dir (flock)
//!     history.key            0600  HMAC key for PIN-history digests (software vault)
//!     history-key.tpm        0600  the TPM's PIN-history HMAC key (usable only in that TPM)
//!     users/<user>/          0700
//!       container.json       0600  the key container (public key, salt, protector blobs)
//!       attempts.json        0600  failed attempts (written and fsync'ed before each attempt)
//!       history.json         0600  salted, slow, keyed digests of previous PINs
//! ```
//! Every write is atomic (temp file, fsync, rename, fsync dir). A file that exists but cannot be
//! parsed is reported with its path and left untouched — never silently replaced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aloha::lockout::Attempts;
use aloha::protocol::BackendKind;
use aloha::registry::{self, REGISTRY_VERSION, RegisteredKey};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::backend::{KeyBlob, SALT_LEN};

pub const CONTAINER_VERSION: u32 = 1;
const STATE_VERSION: u32 = 1;
/// history.json version 1 held fast HMAC digests without a salt; version 2 is salted and slow.
const HISTORY_VERSION: u32 = 2;
const LEGACY_HISTORY_VERSION: u32 = 1;
pub const HISTORY_SALT_LEN: usize = 16;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path} is corrupt ({reason}); it was left untouched for an administrator to inspect")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}{}", disk_hint(.source))]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not safe to use: {why}")]
    Unsafe { path: PathBuf, why: String },
    #[error("another alohad already uses the state directory {0}")]
    InUse(PathBuf),
    /// A key that existing data was made with is gone; making a new one would silently
    /// invalidate that data.
    #[error("{path} is missing, although {needed_by} was made with it")]
    KeyMissing { path: PathBuf, needed_by: String },
}

fn disk_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            " — the disk is full; free some space and try again"
        }
        Some(libc::EROFS) => " — the file system is read-only",
        _ => "",
    }
}

/// A user's key container: one public key, one blob per protector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub version: u32,
    pub user: String,
    pub uid: u32,
    pub backend: BackendKind,
    /// Unix seconds.
    pub created_at: u64,
    /// When the current PIN was set (expiry counts from here).
    pub pin_set_at: u64,
    /// SEC1 uncompressed P-256 point.
    #[serde(with = "aloha::hex::serde")]
    pub public_key: Vec<u8>,
    /// Mixed into the PIN-derived authValue.
    #[serde(with = "aloha::hex::array")]
    pub pin_salt: [u8; SALT_LEN],
    pub protectors: Protectors,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protectors {
    pub pin: KeyBlob,
}

impl Container {
    pub fn protector_names(&self) -> Vec<String> {
        vec!["pin".to_string()]
    }

    pub fn registered_key(&self) -> RegisteredKey {
        RegisteredKey {
            version: REGISTRY_VERSION,
            user: self.user.clone(),
            uid: self.uid,
            backend: self.backend,
            public_key: self.public_key.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptsFile {
    version: u32,
    failures: u32,
    last_failure: u64,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryFile {
    version: u32,
    /// Which key made the digests (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<BackendKind>,
    /// The user's history salt (version 2).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "aloha::hex::serde"
    )]
    salt: Vec<u8>,
    /// Newest first, hex. Version 2: MAC(key, Argon2id(salt, user, PIN)); version 1:
    /// HMAC-SHA256(history.key, user, PIN).
    digests: Vec<String>,
}

/// A user's PIN history (newest first), salted and keyed; see `crate::history`.
#[derive(Clone, PartialEq, Eq)]
pub struct History {
    /// The key store whose key made the digests.
    pub key: BackendKind,
    pub salt: [u8; HISTORY_SALT_LEN],
    pub digests: Vec<String>,
}

/// What history.json holds.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredHistory {
    None,
    /// Version 1: unsalted fast digests, to be checked once and replaced.
    Legacy(Vec<String>),
    Current(History),
}

// Digests (and the salt that goes with them) are guessing material for the current and
// earlier PINs: Debug output, which may end up in a log, says only how many there are.
impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("key", &self.key)
            .field("digests", &self.digests.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for StoredHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredHistory::None => f.write_str("None"),
            StoredHistory::Legacy(d) => f.debug_tuple("Legacy").field(&d.len()).finish(),
            StoredHistory::Current(h) => f.debug_tuple("Current").field(h).finish(),
        }
    }
}

impl std::fmt::Debug for HistoryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryFile")
            .field("version", &self.version)
            .field("key", &self.key)
            .field("digests", &self.digests.len())
            .finish_non_exhaustive()
    }
}

/// Handle on the state directory. Holds the single-daemon lock while alive.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: Option<Flock<File>>,
}

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
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        place(&tmp)?;
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
fn create_exclusive(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
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
fn read_optional(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
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
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    if bytes.is_empty() {
        return Err(StoreError::Corrupt {
            path: path.into(),
            reason: "the file is empty".into(),
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path: path.into(),
            reason: e.to_string(),
        })
}

fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Write {
        path: path.into(),
        source: io::Error::other(e.to_string()),
    })?;
    write_atomic(path, &Zeroizing::new(bytes), mode)
}

/// Create `dir` with `mode` if missing; insist it is a root-owned directory and set its mode.
fn ensure_dir(dir: &Path, mode: u32) -> Result<(), StoreError> {
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

impl Store {
    /// Open (creating if needed) the state directory without taking the daemon lock.
    pub fn open_unlocked(state_dir: &Path) -> Result<Store, StoreError> {
        ensure_dir(state_dir, 0o755)?;
        ensure_dir(&state_dir.join("private"), 0o700)?;
        ensure_dir(&state_dir.join("private/users"), 0o700)?;
        ensure_dir(&registry::public_dir(state_dir), 0o755)?;
        Ok(Store {
            root: state_dir.to_path_buf(),
            _lock: None,
        })
    }

    /// Open the state directory for the daemon: one alohad per state directory.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let mut store = Store::open_unlocked(state_dir)?;
        let lock_path = store.private().join("alohad.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StoreError::Write {
                path: lock_path.clone(),
                source,
            })?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::InUse(state_dir.to_path_buf()))?;
        store._lock = Some(lock);
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn private(&self) -> PathBuf {
        self.root.join("private")
    }

    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.private().join("users").join(user)
    }

    pub fn container_path(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("container.json")
    }

    pub fn attempts_path(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("attempts.json")
    }

    pub fn history_path(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("history.json")
    }

    fn ensure_user_dir(&self, user: &str) -> Result<(), StoreError> {
        ensure_dir(&self.user_dir(user), 0o700)
    }

    pub fn load_container(&self, user: &str) -> Result<Option<Container>, StoreError> {
        let path = self.container_path(user);
        let Some(container) = read_json::<Container>(&path)? else {
            return Ok(None);
        };
        if container.version != CONTAINER_VERSION {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("unknown container version {}", container.version),
            });
        }
        if container.user != user {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("it belongs to {:?}, not {user:?}", container.user),
            });
        }
        if container.protectors.pin.kind() != container.backend {
            return Err(StoreError::Corrupt {
                path,
                reason: "the PIN blob does not match the backend".into(),
            });
        }
        Ok(Some(container))
    }

    pub fn save_container(&self, container: &Container) -> Result<(), StoreError> {
        self.ensure_user_dir(&container.user)?;
        write_json(&self.container_path(&container.user), container, 0o600)
    }

    /// Publish the user's public key for verifiers (pam_aloha, `aloha verify`).
    pub fn publish_key(&self, key: &RegisteredKey) -> Result<(), StoreError> {
        write_json(&registry::key_path(&self.root, &key.user), key, 0o644)
    }

    /// Failed attempts; a missing file means none.
    pub fn load_attempts(&self, user: &str) -> Result<Attempts, StoreError> {
        let path = self.attempts_path(user);
        match read_json::<AttemptsFile>(&path)? {
            None => Ok(Attempts::default()),
            Some(f) if f.version == STATE_VERSION => Ok(Attempts {
                failures: f.failures,
                last_failure: f.last_failure,
            }),
            Some(f) => Err(StoreError::Corrupt {
                path,
                reason: format!("unknown version {}", f.version),
            }),
        }
    }

    /// Durably record attempts (fsync'ed before this returns).
    pub fn save_attempts(&self, user: &str, attempts: &Attempts) -> Result<(), StoreError> {
        self.ensure_user_dir(user)?;
        let file = AttemptsFile {
            version: STATE_VERSION,
            failures: attempts.failures,
            last_failure: attempts.last_failure,
        };
        write_json(&self.attempts_path(user), &file, 0o600)
    }

    pub fn load_history(&self, user: &str) -> Result<StoredHistory, StoreError> {
        let path = self.history_path(user);
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        match read_json::<HistoryFile>(&path)? {
            None => Ok(StoredHistory::None),
            Some(f) if f.version == LEGACY_HISTORY_VERSION => Ok(StoredHistory::Legacy(f.digests)),
            Some(f) if f.version == HISTORY_VERSION => {
                let key = f.key.ok_or_else(|| corrupt("it names no key".into()))?;
                let salt = <[u8; HISTORY_SALT_LEN]>::try_from(f.salt.as_slice())
                    .map_err(|_| corrupt(format!("its salt is {} bytes, not 16", f.salt.len())))?;
                Ok(StoredHistory::Current(History {
                    key,
                    salt,
                    digests: f.digests,
                }))
            }
            Some(f) => Err(corrupt(format!("unknown version {}", f.version))),
        }
    }

    pub fn save_history(&self, user: &str, history: &History) -> Result<(), StoreError> {
        self.ensure_user_dir(user)?;
        let file = HistoryFile {
            version: HISTORY_VERSION,
            key: Some(history.key),
            salt: history.salt.to_vec(),
            digests: history.digests.clone(),
        };
        write_json(&self.history_path(user), &file, 0o600)
    }

    /// Forget the user's PIN history (`history = 0` stores none).
    pub fn remove_history(&self, user: &str) -> Result<(), StoreError> {
        let path = self.history_path(user);
        match fs::remove_file(&path) {
            Ok(()) => File::open(self.user_dir(user))
                .and_then(|d| d.sync_all())
                .map_err(|source| StoreError::Write { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Write { path, source }),
        }
    }

    pub fn history_key_path(&self) -> PathBuf {
        self.private().join("history.key")
    }

    pub fn tpm_history_key_path(&self) -> PathBuf {
        self.private().join("history-key.tpm")
    }

    /// The software PIN-history key, created on first use. `may_create` is false when data
    /// made with the key exists: then a missing key is an error, never a fresh key.
    pub fn history_key(&self, may_create: bool) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let path = self.history_key_path();
        let parse = |bytes: Zeroizing<Vec<u8>>| {
            if bytes.len() == 32 {
                Ok(bytes)
            } else {
                Err(StoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("expected 32 bytes, found {}", bytes.len()),
                })
            }
        };
        if let Some(bytes) = read_optional(&path)? {
            return parse(bytes);
        }
        if !may_create {
            return Err(StoreError::KeyMissing {
                path,
                needed_by: "a stored PIN history".into(),
            });
        }
        let mut key = Zeroizing::new(vec![0u8; 32]);
        getrandom::fill(&mut key).map_err(|e| StoreError::Write {
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        create_exclusive(&path, &key, 0o600)?;
        // Whoever created it first won: everyone uses the file's key, never their own.
        let bytes = read_optional(&path)?.ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            reason: "it vanished right after it was created".into(),
        })?;
        parse(bytes)
    }

    /// The TPM's PIN-history key blob, created with `create` on first use; `may_create` as
    /// for [`Store::history_key`].
    pub fn tpm_history_key<E>(
        &self,
        may_create: bool,
        create: impl FnOnce() -> Result<KeyBlob, E>,
    ) -> Result<Result<KeyBlob, E>, StoreError> {
        let path = self.tpm_history_key_path();
        if let Some(blob) = read_json::<KeyBlob>(&path)? {
            return Ok(Ok(blob));
        }
        if !may_create {
            return Err(StoreError::KeyMissing {
                path,
                needed_by: "a stored PIN history".into(),
            });
        }
        let blob = match create() {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let bytes = serde_json::to_vec_pretty(&blob).map_err(|e| StoreError::Write {
            path: path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        create_exclusive(&path, &bytes, 0o600)?;
        let stored = read_json::<KeyBlob>(&path)?.ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            reason: "it vanished right after it was created".into(),
        })?;
        Ok(Ok(stored))
    }

    /// Delete everything alohad holds for `user`. Returns whether anything existed.
    pub fn remove_user(&self, user: &str) -> Result<bool, StoreError> {
        let mut existed = false;
        let public = registry::key_path(&self.root, user);
        match fs::remove_file(&public) {
            Ok(()) => existed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Write {
                    path: public,
                    source,
                });
            }
        }
        let dir = self.user_dir(user);
        match fs::remove_dir_all(&dir) {
            Ok(()) => existed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Write { path: dir, source }),
        }
        if existed {
            File::open(self.private().join("users"))
                .and_then(|d| d.sync_all())
                .and_then(|()| File::open(registry::public_dir(&self.root))?.sync_all())
                .map_err(|source| StoreError::Write {
                    path: self.root.clone(),
                    source,
                })?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::KdfParams;

    fn temp() -> PathBuf {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        std::env::temp_dir().join(format!("aloha-store-{}", aloha::hex::encode(&b)))
    }

    fn container(user: &str) -> Container {
        Container {
            version: CONTAINER_VERSION,
            user: user.into(),
            uid: 1000,
            backend: BackendKind::Software,
            created_at: 1,
            pin_set_at: 1,
            public_key: vec![4; 65],
            pin_salt: [1; SALT_LEN],
            protectors: Protectors {
                pin: KeyBlob::Software {
                    kdf: KdfParams {
                        memory_kib: 8,
                        passes: 1,
                        lanes: 1,
                    },
                    salt: vec![0; 16],
                    nonce: vec![0; 24],
                    ciphertext: vec![0; 48],
                },
            },
        }
    }

    #[test]
    fn layout_modes_and_round_trips() {
        let dir = temp();
        let store = Store::open(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join("private")), 0o700);
        assert_eq!(mode(&dir.join("public")), 0o755);
        assert_eq!(store.load_container("alice").unwrap(), None);
        store.save_container(&container("alice")).unwrap();
        assert_eq!(
            store.load_container("alice").unwrap(),
            Some(container("alice"))
        );
        assert_eq!(mode(&store.container_path("alice")), 0o600);
        assert_eq!(mode(&store.user_dir("alice")), 0o700);
        let a = Attempts {
            failures: 3,
            last_failure: 99,
        };
        store.save_attempts("alice", &a).unwrap();
        assert_eq!(store.load_attempts("alice").unwrap(), a);
        store
            .publish_key(&container("alice").registered_key())
            .unwrap();
        assert_eq!(mode(&registry::key_path(&dir, "alice")), 0o644);
        assert!(store.remove_user("alice").unwrap());
        assert!(!store.remove_user("alice").unwrap());
        assert_eq!(store.load_container("alice").unwrap(), None);
        // No temp files are left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.join("private/users")).unwrap().collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn one_daemon_per_state_dir() {
        let dir = temp();
        let first = Store::open(&dir).unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::InUse(_))));
        drop(first);
        assert!(Store::open(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_reported_with_their_path_and_left_untouched() {
        let dir = temp();
        let store = Store::open(&dir).unwrap();
        store.save_container(&container("bob")).unwrap();
        let good = fs::read(store.container_path("bob")).unwrap();
        for damaged in [
            &good[..good.len() / 2],
            b"",
            b"\x00\x01garbage",
            b"{\"version\":1}",
        ] {
            fs::write(store.container_path("bob"), damaged).unwrap();
            let err = store.load_container("bob").unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(
                err.to_string()
                    .contains(&store.container_path("bob").display().to_string())
            );
            assert_eq!(
                fs::read(store.container_path("bob")).unwrap(),
                damaged,
                "must not be rewritten"
            );
        }
        fs::write(store.attempts_path("bob"), b"{\"version\":1,\"failures\":").unwrap();
        assert!(matches!(
            store.load_attempts("bob"),
            Err(StoreError::Corrupt { .. })
        ));
        // A container filed under the wrong name is refused.
        store.save_container(&container("carol")).unwrap();
        fs::copy(store.container_path("carol"), store.container_path("bob")).unwrap();
        assert!(matches!(
            store.load_container("bob"),
            Err(StoreError::Corrupt { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failed_writes_leave_no_temp_file_and_reads_tell_missing_from_unreadable() {
        let dir = temp();
        fs::create_dir_all(dir.join("busy/inside")).unwrap();
        let leftovers = || {
            fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                .count()
        };
        // rename(2) cannot replace a non-empty directory.
        let e = write_atomic(&dir.join("busy"), b"x", 0o600).unwrap_err();
        assert!(matches!(e, StoreError::Write { .. }), "{e}");
        assert_eq!(leftovers(), 0);
        write_atomic(&dir.join("f"), b"old", 0o600).unwrap();
        create_exclusive(&dir.join("f"), b"new", 0o600).unwrap();
        assert_eq!(
            fs::read(dir.join("f")).unwrap(),
            b"old",
            "the first one stays"
        );
        assert_eq!(leftovers(), 0);
        assert!(read_optional(&dir.join("nothing")).unwrap().is_none());
        assert!(matches!(
            read_optional(&dir.join("busy")),
            Err(StoreError::Read { .. })
        ));
        assert!(matches!(
            read_json::<AttemptsFile>(&dir.join("busy")),
            Err(StoreError::Read { .. })
        ));
        assert!(
            read_json::<AttemptsFile>(&dir.join("nothing"))
                .unwrap()
                .is_none()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn history_key_is_stable() {
        let dir = temp();
        let store = Store::open(&dir).unwrap();
        let k1 = store.history_key(true).unwrap();
        let k2 = store.history_key(true).unwrap();
        assert_eq!(*k1, *k2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn concurrent_first_uses_agree_on_one_history_key() {
        let dir = temp();
        let store = std::sync::Arc::new(Store::open(&dir).unwrap());
        let keys: Vec<Vec<u8>> = (0..16)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || store.history_key(true).unwrap().to_vec())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "every thread got the same key"
        );
        assert_eq!(*store.history_key(true).unwrap(), keys[0]);
        let leftovers: Vec<_> = fs::read_dir(dir.join("private"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The TPM key file follows the same rule: the first blob stored wins.
        let blob = |n: u8| KeyBlob::Tpm {
            public: vec![0, 1, n],
            private: vec![0, 1, n],
        };
        let first = store
            .tpm_history_key(true, || Ok::<_, ()>(blob(1)))
            .unwrap()
            .unwrap();
        let second = store
            .tpm_history_key(true, || Ok::<_, ()>(blob(2)))
            .unwrap()
            .unwrap();
        assert_eq!(first, blob(1));
        assert_eq!(second, blob(1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_output_shows_no_digest_and_no_salt() {
        let h = History {
            key: BackendKind::Software,
            salt: [0xab; HISTORY_SALT_LEN],
            digests: vec!["5ec7e7d16e57".into()],
        };
        let file = HistoryFile {
            version: 2,
            key: Some(h.key),
            salt: h.salt.to_vec(),
            digests: h.digests.clone(),
        };
        for shown in [
            format!("{h:?}"),
            format!("{:?}", StoredHistory::Current(h.clone())),
            format!("{:?}", StoredHistory::Legacy(h.digests.clone())),
            format!("{file:?}"),
        ] {
            assert!(!shown.contains("5ec7e7d16e57"), "{shown}");
            assert!(!shown.contains("171"), "salt bytes: {shown}");
        }
    }

    #[test]
    fn legacy_and_current_history_are_told_apart() {
        let dir = temp();
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load_history("al").unwrap(), StoredHistory::None);
        fs::create_dir_all(store.user_dir("al")).unwrap();
        fs::write(
            store.history_path("al"),
            br#"{"version":1,"digests":["ab"]}"#,
        )
        .unwrap();
        assert_eq!(
            store.load_history("al").unwrap(),
            StoredHistory::Legacy(vec!["ab".into()])
        );
        let h = History {
            key: BackendKind::Tpm,
            salt: [7; HISTORY_SALT_LEN],
            digests: vec!["cd".into()],
        };
        store.save_history("al", &h).unwrap();
        assert_eq!(store.load_history("al").unwrap(), StoredHistory::Current(h));
        fs::write(store.history_path("al"), br#"{"version":2,"digests":[]}"#).unwrap();
        assert!(matches!(
            store.load_history("al"),
            Err(StoreError::Corrupt { .. })
        ));
        store.remove_history("al").unwrap();
        assert_eq!(store.load_history("al").unwrap(), StoredHistory::None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
