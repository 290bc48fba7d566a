//! A user's password vault (`users/<user>/vault.json`): their account password sealed to their
//! key ([`crate::vault`]), kept only after they opted in.

use serde::{Deserialize, Serialize};

use super::files::{read_versioned, write_json};
use super::{Store, StoreError};
use crate::vault::SealedPassword;

pub const VAULT_VERSION: u32 = 1;

/// `users/<user>/vault.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultRecord {
    pub version: u32,
    pub user: String,
    pub uid: u32,
    /// The public key (SEC1, hex) the password is sealed to: a vault for an older key is stale.
    #[serde(with = "aloha::hex::serde")]
    pub public_key: Vec<u8>,
    /// When the password was last sealed (unix seconds): at `aloha vault enable`, then at each
    /// password sign-in.
    pub sealed_at: u64,
    pub password: SealedPassword,
}

impl Store {
    fn vault_path(&self, user: &str) -> std::path::PathBuf {
        self.user_dir(user).join("vault.json")
    }

    pub fn load_vault(&self, user: &str) -> Result<Option<VaultRecord>, StoreError> {
        let path = self.vault_path(user);
        let Some(record) = read_versioned::<VaultRecord>(&path, VAULT_VERSION)? else {
            return Ok(None);
        };
        if record.version != VAULT_VERSION {
            return Err(StoreError::Corrupt {
                path,
                reason: format!(
                    "vault format version {} is not one this alohad reads ({VAULT_VERSION})",
                    record.version
                ),
            });
        }
        if record.user != user {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("it belongs to {:?}, not {user:?}", record.user),
            });
        }
        Ok(Some(record))
    }

    pub fn save_vault(&self, record: &VaultRecord) -> Result<(), StoreError> {
        self.ensure_user_dir(&record.user)?;
        write_json(&self.vault_path(&record.user), record, 0o600)
    }

    /// Forget the user's vault. Whether one existed.
    pub fn remove_vault(&self, user: &str) -> Result<bool, StoreError> {
        self.remove_user_file(&self.vault_path(user))
    }
}
