//! Every user's debt to the TPM's failure budget (`private/tpm-debts.json`), in one file: the
//! share rule compares users, and TPM attempts are serialized anyway. Kept apart from the user
//! directories on purpose: a PIN reset, which replaces a user's key, must not forgive the
//! wrong PINs the TPM still remembers.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aloha::lockout::TpmDebt;
use serde::{Deserialize, Serialize};

use super::files::{read_json, write_json};
use super::{Store, StoreError};

const DEBTS_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DebtsFile {
    version: u32,
    users: BTreeMap<String, TpmDebt>,
}

impl Store {
    pub fn tpm_debts_path(&self) -> PathBuf {
        self.private().join("tpm-debts.json")
    }

    /// Every user's debt; a missing file means none.
    pub fn load_tpm_debts(&self) -> Result<BTreeMap<String, TpmDebt>, StoreError> {
        let path = self.tpm_debts_path();
        match read_json::<DebtsFile>(&path)? {
            None => Ok(BTreeMap::new()),
            Some(f) if f.version == DEBTS_VERSION => Ok(f.users),
            Some(f) => Err(StoreError::Corrupt {
                path,
                reason: format!("unknown version {}", f.version),
            }),
        }
    }

    /// Durably record every user's debt (fsync'ed before this returns). Users with none are
    /// left out.
    pub fn save_tpm_debts(&self, debts: &BTreeMap<String, TpmDebt>) -> Result<(), StoreError> {
        let users = debts
            .iter()
            .filter(|(_, d)| d.failures > 0)
            .map(|(u, d)| (u.clone(), *d))
            .collect();
        write_json(
            &self.tpm_debts_path(),
            &DebtsFile {
                version: DEBTS_VERSION,
                users,
            },
            0o600,
        )
    }

    /// How many users have a key in the TPM (the share rule divides the budget among them). A
    /// container that cannot be read counts as one: better a smaller share than an overdrawn
    /// budget.
    pub fn tpm_users(&self) -> usize {
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
}
