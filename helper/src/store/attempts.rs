//! The per-user attempt counter, written and fsync'ed before every attempt.

use aloha::lockout::Attempts;
use serde::{Deserialize, Serialize};

use super::files::{read_json, write_json};
use super::{Store, StoreError};

const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttemptsFile {
    version: u32,
    failures: u32,
    last_failure: u64,
}

impl Store {
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
}
