//! alohad's state on disk, under `state_dir`:
//!
//! ```text
//! state_dir/                 0755 root
//!   public/                  0755  <user>.pub — registered public keys (see aloha::registry)
//!   private/                 0700  nothing here is readable by anyone but root
//!     alohad.lock                  one daemon per state dir (flock)
//!     history.key            0600  HMAC key for PIN-history digests (software vault)
//!     history-key.tpm        0600  the TPM's PIN-history HMAC key (usable only in that TPM)
//!     face.key               0600  wraps face secrets where no TPM seals them
//!     tpm-primary.json       0600  the TPM storage key's name, recorded at first use
//!     camera/                0700
//!       emitter.json         0600  the IR-emitter control `aloha camera --probe` found
//!     users/<user>/          0700
//!       container.json       0600  the key container (public key, salt, protector blobs)
//!       attempts.json        0600  failed attempts (written and fsync'ed before each attempt)
//!                                  and the user's TPM debt (wrong PINs the TPM remembers)
//!       history.json         0600  salted, slow, keyed digests of previous PINs
//!       face.json            0600  the face protector, the sealed face secret, sealed profiles
//!       face-attempts.json   0600  failed face attempts (written ahead like attempts.json)
//!       vault.json           0600  the account password sealed to the user's key (opt-in)
//! ```
//! Every write is atomic (temp file, fsync, rename, fsync dir). A file that exists but cannot be
//! parsed is reported with its path and left untouched — never silently replaced.
//!
//! One file per kind of state: [`container`], [`attempts`], [`history`], [`face`], [`vault`]; [`files`] holds the
//! atomic writes and checked reads they all use.

mod attempts;
mod container;
pub mod crash;
mod face;
mod files;
mod history;
mod vault;

#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aloha::registry;
use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

pub use container::{CONTAINER_VERSION, Container, Protectors};
pub use face::{FACE_VERSION, FaceLabel, FaceRecord, SealedSecret};
pub use files::write_atomic;
pub use history::{HISTORY_SALT_LEN, History, StoredHistory};
pub use vault::{VAULT_VERSION, VaultRecord};

pub(crate) use files::ensure_dir;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path} is corrupt ({reason}); it was left untouched for an administrator to inspect")]
    Corrupt { path: PathBuf, reason: String },
    /// Written by a newer Aloha (a downgrade): never read as something else, never replaced.
    #[error(
        "{path} was written by a newer Aloha (format {version}; this alohad reads up to \
         {latest}); it was left untouched. Install that Aloha version (or a newer one) again"
    )]
    Newer {
        path: PathBuf,
        version: u32,
        latest: u32,
    },
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

/// Handle on the state directory. Holds the single-daemon lock while alive.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    _lock: Option<Flock<File>>,
    /// [`Store::tpm_users`], counted once and kept until a container is written or removed
    /// (every status request and TPM attempt needs it; counting reads every container).
    tpm_users: Mutex<TpmUsers>,
}

/// The cached count and the number of container changes it was counted after.
#[derive(Debug, Default)]
struct TpmUsers {
    changes: u64,
    counted: Option<(u64, usize)>,
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
            tpm_users: Mutex::default(),
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

    pub(super) fn private(&self) -> PathBuf {
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

    /// The TPM storage primary's name, recorded at first use (see `backend::tpm`).
    pub fn tpm_primary_path(&self) -> PathBuf {
        self.private().join("tpm-primary.json")
    }

    pub fn history_path(&self, user: &str) -> PathBuf {
        self.user_dir(user).join("history.json")
    }

    pub(super) fn ensure_user_dir(&self, user: &str) -> Result<(), StoreError> {
        ensure_dir(&self.user_dir(user), 0o700)
    }

    /// Remove one of `user`'s files durably (the directory fsync'ed). Whether it existed.
    pub(super) fn remove_user_file(&self, path: &Path) -> Result<bool, StoreError> {
        match crash::point("remove a file").and_then(|()| fs::remove_file(path)) {
            Ok(()) => path
                .parent()
                .map_or(Ok(()), |dir| {
                    crash::point("fsync the directory after a removal")?;
                    File::open(dir).and_then(|d| d.sync_all())
                })
                .map(|()| true)
                .map_err(|source| StoreError::Write {
                    path: path.into(),
                    source,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Write {
                path: path.into(),
                source,
            }),
        }
    }

    /// Delete everything alohad holds for `user`. Returns whether anything existed. The key
    /// container goes first, durably: a removal cut short (a crash, a read-only file system)
    /// leaves either the whole user or no key — never a key whose attempt counter or history is
    /// already gone, nor a container without its public key. A public key left behind is
    /// removed when alohad next starts (registry_sync).
    pub fn remove_user(&self, user: &str) -> Result<bool, StoreError> {
        let removed = self.remove_user_file(&self.container_path(user));
        self.containers_changed();
        let mut existed = removed?;
        let public = registry::key_path(&self.root, user);
        match crash::point("remove the public key").and_then(|()| fs::remove_file(&public)) {
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
        match crash::point("remove the user's directory").and_then(|()| fs::remove_dir_all(&dir)) {
            Ok(()) => existed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Write { path: dir, source }),
        }
        if existed {
            crash::point("fsync the directories after a removal")
                .and_then(|()| File::open(self.private().join("users")))
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
