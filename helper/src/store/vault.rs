//! A user's password vault (`users/<user>/vault.json`): their account password sealed to their
//! key ([`crate::vault`]), kept only after they opted in.

use serde::{Deserialize, Serialize};

use super::files::{UserRecord, read_user_record, write_json};
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

impl UserRecord for VaultRecord {
    const KIND: &'static str = "vault";
    const VERSION: u32 = VAULT_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
    fn user(&self) -> &str {
        &self.user
    }
}

impl Store {
    fn vault_path(&self, user: &str) -> std::path::PathBuf {
        self.user_dir(user).join("vault.json")
    }

    pub fn load_vault(&self, user: &str) -> Result<Option<VaultRecord>, StoreError> {
        read_user_record(self.vault_path(user), user)
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
