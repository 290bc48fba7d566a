//! The key container: one public key, the PIN's salt, one blob per protector.

use std::sync::PoisonError;

use aloha::protocol::BackendKind;
use aloha::registry::{self, REGISTRY_VERSION, RegisteredKey};
use serde::{Deserialize, Serialize};

use super::files::{UserRecord, read_user_record, write_json};
use super::{Store, StoreError};
use crate::backend::{KeyBlob, SALT_LEN};

pub const CONTAINER_VERSION: u32 = 1;

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

impl UserRecord for Container {
    const KIND: &'static str = "container";
    const VERSION: u32 = CONTAINER_VERSION;
    fn version(&self) -> u32 {
        self.version
    }
    fn user(&self) -> &str {
        &self.user
    }
}

impl Store {
    pub fn load_container(&self, user: &str) -> Result<Option<Container>, StoreError> {
        let path = self.container_path(user);
        let Some(container) = read_user_record::<Container>(path.clone(), user)? else {
            return Ok(None);
        };
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
        let written = write_json(&self.container_path(&container.user), container, 0o600);
        // Also after a failed write: it may have got as far as the rename.
        self.containers_changed();
        written
    }

    /// How many users have a key in the TPM (the share rule divides the budget among them). A
    /// container that cannot be read counts as one: better a smaller share than an overdrawn
    /// budget. Counted from disk once, then again only after alohad wrote or removed a
    /// container (it is the only writer of the state directory).
    pub fn tpm_users(&self) -> usize {
        let changes = {
            let cache = self
                .tpm_users
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match cache.counted {
                Some((at, n)) if at == cache.changes => return n,
                _ => cache.changes,
            }
        };
        let n = self.count_tpm_users();
        let mut cache = self
            .tpm_users
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A container written while counting makes the count stale: not kept.
        if cache.changes == changes {
            cache.counted = Some((changes, n));
        }
        n
    }

    /// A container was written or removed: [`Store::tpm_users`] counts again.
    pub(super) fn containers_changed(&self) {
        let mut cache = self
            .tpm_users
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.changes = cache.changes.wrapping_add(1);
    }

    fn count_tpm_users(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(self.private().join("users")) else {
            return 1;
        };
        entries
            .flatten()
            .filter(|e| {
                let user = e.file_name().to_string_lossy().into_owned();
                match self.load_container(&user) {
                    Ok(Some(c)) => c.backend == aloha::protocol::BackendKind::Tpm,
                    Ok(None) => false,
                    Err(_) => true,
                }
            })
            .count()
    }

    /// Publish the user's public key for verifiers (pam_aloha, `aloha verify`).
    pub fn publish_key(&self, key: &RegisteredKey) -> Result<(), StoreError> {
        write_json(&registry::key_path(&self.root, &key.user), key, 0o644)
    }
}
