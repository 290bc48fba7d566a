//! PIN histories and the keys their digests are made with (a key file for the software vault,
//! a TPM-resident HMAC key's blob otherwise).

use std::io;
use std::path::PathBuf;

use aloha::protocol::BackendKind;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::files::{create_exclusive, key_file, read_json, read_versioned, write_json};
use super::{Store, StoreError};
use crate::backend::KeyBlob;

/// history.json version 1 held fast HMAC digests without a salt; version 2 is salted and slow.
const HISTORY_VERSION: u32 = 2;
const LEGACY_HISTORY_VERSION: u32 = 1;
pub const HISTORY_SALT_LEN: usize = 16;

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryFile {
    pub(super) version: u32,
    /// Which key made the digests (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) key: Option<BackendKind>,
    /// The user's history salt (version 2).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "aloha::hex::serde"
    )]
    pub(super) salt: Vec<u8>,
    /// Newest first, hex. Version 2: MAC(key, Argon2id(salt, user, PIN)); version 1:
    /// HMAC-SHA256(history.key, user, PIN).
    pub(super) digests: Vec<String>,
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

impl Store {
    pub fn load_history(&self, user: &str) -> Result<StoredHistory, StoreError> {
        let path = self.history_path(user);
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        match read_versioned::<HistoryFile>(&path, HISTORY_VERSION)? {
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
        self.remove_user_file(&self.history_path(user)).map(|_| ())
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
        key_file(&self.history_key_path(), may_create, "a stored PIN history")
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
}
