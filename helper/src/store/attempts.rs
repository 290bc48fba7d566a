//! The per-user attempt counter, written and fsync'ed before every attempt.

use std::path::Path;

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

/// A counter file (the PIN's or the face's): a missing file means no failures.
pub(super) fn load_counter(path: &Path) -> Result<Attempts, StoreError> {
    match read_json::<AttemptsFile>(path)? {
        None => Ok(Attempts::default()),
        Some(f) if f.version == STATE_VERSION => Ok(Attempts {
            failures: f.failures,
            last_failure: f.last_failure,
        }),
        Some(f) => Err(StoreError::Corrupt {
            path: path.into(),
            reason: format!("unknown version {}", f.version),
        }),
    }
}

/// Durably record a counter (fsync'ed before this returns).
pub(super) fn save_counter(path: &Path, attempts: &Attempts) -> Result<(), StoreError> {
    let file = AttemptsFile {
        version: STATE_VERSION,
        failures: attempts.failures,
        last_failure: attempts.last_failure,
    };
    write_json(path, &file, 0o600)
}

impl Store {
    /// Failed attempts; a missing file means none.
    pub fn load_attempts(&self, user: &str) -> Result<Attempts, StoreError> {
        load_counter(&self.attempts_path(user))
    }

    /// Durably record attempts (fsync'ed before this returns).
    pub fn save_attempts(&self, user: &str, attempts: &Attempts) -> Result<(), StoreError> {
        self.ensure_user_dir(user)?;
        save_counter(&self.attempts_path(user), attempts)
    }
}
