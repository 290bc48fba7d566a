//! The per-user attempt counter, written and fsync'ed before every attempt, and in the same
//! file (so one durable write counts both) the user's debt to the TPM's failure budget
//! (`aloha::lockout::share`), which nothing but time forgives: every write that resets the
//! counter keeps it.

use std::path::Path;

use aloha::lockout::{Attempts, TpmDebt};
use serde::{Deserialize, Serialize};

use super::files::{read_versioned, write_json};
use super::{Store, StoreError};

const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttemptsFile {
    version: u32,
    failures: u32,
    last_failure: u64,
    /// Only in the PIN's counter, and only once the user has had a wrong PIN in the TPM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tpm_debt: Option<TpmDebt>,
}

/// A counter file (the PIN's or the face's) and the TPM debt it holds: a missing file means
/// no failures and no debt.
fn load_file(path: &Path) -> Result<(Attempts, TpmDebt), StoreError> {
    match read_versioned::<AttemptsFile>(path, STATE_VERSION)? {
        None => Ok((Attempts::default(), TpmDebt::default())),
        Some(f) if f.version == STATE_VERSION => Ok((
            Attempts {
                failures: f.failures,
                last_failure: f.last_failure,
            },
            f.tpm_debt.unwrap_or_default(),
        )),
        Some(f) => Err(StoreError::Corrupt {
            path: path.into(),
            reason: format!("unknown version {}", f.version),
        }),
    }
}

/// Durably record a counter and a debt (fsync'ed before this returns).
fn save_file(path: &Path, attempts: &Attempts, debt: &TpmDebt) -> Result<(), StoreError> {
    let file = AttemptsFile {
        version: STATE_VERSION,
        failures: attempts.failures,
        last_failure: attempts.last_failure,
        tpm_debt: (debt.failures > 0).then_some(*debt),
    };
    write_json(path, &file, 0o600)
}

/// A counter file without a debt (the face's).
pub(super) fn load_counter(path: &Path) -> Result<Attempts, StoreError> {
    load_file(path).map(|(a, _)| a)
}

/// Durably record a counter without a debt (the face's).
pub(super) fn save_counter(path: &Path, attempts: &Attempts) -> Result<(), StoreError> {
    save_file(path, attempts, &TpmDebt::default())
}

impl Store {
    /// Failed attempts; a missing file means none.
    pub fn load_attempts(&self, user: &str) -> Result<Attempts, StoreError> {
        load_counter(&self.attempts_path(user))
    }

    /// Failed attempts and the user's TPM debt (as recorded, not yet decayed).
    pub fn load_attempts_and_debt(&self, user: &str) -> Result<(Attempts, TpmDebt), StoreError> {
        load_file(&self.attempts_path(user))
    }

    /// Durably record attempts (fsync'ed before this returns), keeping the recorded TPM debt:
    /// a reset of the counter (a PIN reset, an unlock) forgives nothing the TPM remembers.
    pub fn save_attempts(&self, user: &str, attempts: &Attempts) -> Result<(), StoreError> {
        self.ensure_user_dir(user)?;
        let path = self.attempts_path(user);
        // A corrupt file is being replaced (an unlock is how an administrator recovers from
        // one); its debt is unknowable. A newer Aloha's file is never replaced.
        let debt = match load_file(&path) {
            Ok((_, debt)) => debt,
            Err(e @ StoreError::Newer { .. }) => return Err(e),
            Err(_) => TpmDebt::default(),
        };
        save_file(&path, attempts, &debt)
    }

    /// Durably record attempts and the TPM debt in one write.
    pub fn save_attempts_and_debt(
        &self,
        user: &str,
        attempts: &Attempts,
        debt: &TpmDebt,
    ) -> Result<(), StoreError> {
        self.ensure_user_dir(user)?;
        save_file(&self.attempts_path(user), attempts, debt)
    }
}
