//! A user's face: the face protector (the user's key under the face secret), the sealed face
//! secret and profile key, the sealed profiles, and the face failure counter (its own file,
//! written ahead of every attempt like the PIN's).

use aloha::lockout::Attempts;
use aloha::protocol::BackendKind;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::attempts::{load_counter, save_counter};
use super::files::{UserRecord, key_file, read_user_record, write_json};
use super::{Store, StoreError};
use crate::backend::KeyBlob;

pub const FACE_VERSION: u32 = 1;

/// The face secret and the profile key, as stored: sealed by the TPM, or (software vault)
/// encrypted under alohad's face key file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SealedSecret {
    /// A TPM data object under alohad's storage primary (usable only in that TPM).
    Tpm { blob: KeyBlob },
    /// XChaCha20-Poly1305 under `private/face.key`.
    Software {
        #[serde(with = "aloha::hex::serde")]
        nonce: Vec<u8>,
        #[serde(with = "aloha::hex::serde")]
        ciphertext: Vec<u8>,
    },
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealedSecret::Tpm { .. } => f.write_str("SealedSecret::Tpm"),
            SealedSecret::Software { .. } => f.write_str("SealedSecret::Software"),
        }
    }
}

/// One labelled profile as `aloha face list` shows it without unsealing anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceLabel {
    pub label: String,
    pub descriptors: u32,
    pub enrolled_at: u64,
}

/// `users/<user>/face.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceRecord {
    pub version: u32,
    pub user: String,
    /// The key store of the user's container when the protector was made.
    pub backend: BackendKind,
    /// The user's key (the container's public key) under the face secret.
    pub protector: KeyBlob,
    pub secret: SealedSecret,
    /// `ProfileSet::seal` under the profile key.
    #[serde(with = "aloha::hex::serde")]
    pub profiles: Vec<u8>,
    pub labels: Vec<FaceLabel>,
}

impl UserRecord for FaceRecord {
    const KIND: &'static str = "face";
    const VERSION: u32 = FACE_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
    fn user(&self) -> &str {
        &self.user
    }
}

impl Store {
    fn face_path(&self, user: &str) -> std::path::PathBuf {
        self.user_dir(user).join("face.json")
    }

    fn face_attempts_path(&self, user: &str) -> std::path::PathBuf {
        self.user_dir(user).join("face-attempts.json")
    }

    pub fn load_face(&self, user: &str) -> Result<Option<FaceRecord>, StoreError> {
        let path = self.face_path(user);
        let Some(record) = read_user_record::<FaceRecord>(path.clone(), user)? else {
            return Ok(None);
        };
        if record.protector.kind() != record.backend {
            return Err(StoreError::Corrupt {
                path,
                reason: "the face protector does not match the backend".into(),
            });
        }
        Ok(Some(record))
    }

    pub fn save_face(&self, record: &FaceRecord) -> Result<(), StoreError> {
        self.ensure_user_dir(&record.user)?;
        write_json(&self.face_path(&record.user), record, 0o600)
    }

    /// Forget the user's face (protector, secrets, profiles, counter). Whether one existed.
    pub fn remove_face(&self, user: &str) -> Result<bool, StoreError> {
        let existed = self.remove_user_file(&self.face_path(user))?;
        self.remove_user_file(&self.face_attempts_path(user))?;
        Ok(existed)
    }

    /// Failed face attempts in a row; a missing file means none.
    pub fn load_face_attempts(&self, user: &str) -> Result<Attempts, StoreError> {
        load_counter(&self.face_attempts_path(user))
    }

    /// Durably record failed face attempts (fsync'ed before this returns).
    pub fn save_face_attempts(&self, user: &str, attempts: &Attempts) -> Result<(), StoreError> {
        self.ensure_user_dir(user)?;
        save_counter(&self.face_attempts_path(user), attempts)
    }

    /// Users with a face enrolled: the `N` of the face decision's threshold.
    pub fn face_users(&self) -> Result<usize, StoreError> {
        let dir = self.private().join("users");
        let entries = std::fs::read_dir(&dir).map_err(|source| StoreError::Read {
            path: dir.clone(),
            source,
        })?;
        Ok(entries
            .flatten()
            .filter(|e| e.path().join("face.json").exists())
            .count())
    }

    pub fn face_key_path(&self) -> std::path::PathBuf {
        self.private().join("face.key")
    }

    /// The key that wraps face secrets where no TPM seals them, created on first use. Like
    /// the PIN-history key, it is never silently replaced once secrets depend on it.
    pub fn face_key(&self, may_create: bool) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        key_file(&self.face_key_path(), may_create, "a stored face secret")
    }
}
