//! PIN history: a new PIN must not be one of the user's last `pin.history` PINs. Only salted
//! Argon2id digests are kept, MAC'ed with a key only alohad can use (the TPM's, where there is
//! one), so a copied state directory does not give the current PIN away offline. The history
//! holds the current PIN, so it is checked only once the caller has proven itself.

use std::path::Path;

use aloha::Secret;
use aloha::protocol::{BackendKind, ErrorCode, Failure, Response};
use tracing::warn;

use super::failures::{random, store_failure};
use super::{Service, lock};
use crate::backend::BackendError;
use crate::history;
use crate::store::{History, StoreError, StoredHistory};

/// A new PIN that passed the history check: the history to store once it is set (`None`: keep
/// none), and anything the reply must tell.
#[derive(Debug, Default)]
pub(super) struct HistoryUpdate {
    history: Option<History>,
    note: Option<String>,
}

impl HistoryUpdate {
    /// The operation's reply, with the history's note if it has one.
    pub(super) fn reply(&self, message: String) -> Response {
        let message = match &self.note {
            Some(note) => format!("{message} {note}"),
            None => message,
        };
        Response::Done { message }
    }
}

impl Service {
    /// The key new histories are made with: the TPM's wherever alohad has one.
    fn preferred_history_key(&self) -> BackendKind {
        if self.tpm.is_some() {
            BackendKind::Tpm
        } else {
            BackendKind::Software
        }
    }

    fn history_failure(&self, user: &str, e: StoreError) -> Failure {
        match e {
            StoreError::Corrupt { .. } => Failure::new(
                ErrorCode::StateCorrupt,
                format!(
                    "{e}. New PINs for {user} are refused until it is fixed: an administrator \
                     restores it from a backup, or deletes it (`rm {}`) — which forgets {user}'s \
                     earlier PINs — and then {user} tries again.",
                    self.store.history_path(user).display()
                ),
            ),
            other => store_failure(user, other),
        }
    }

    fn history_key_failure(&self, user: &str, e: BackendError) -> Failure {
        match e {
            BackendError::BadBlob(m) => Failure::new(
                ErrorCode::StateCorrupt,
                format!(
                    "The TPM cannot use alohad's PIN-history key {} ({m}); the TPM was probably \
                     cleared or replaced, which makes every stored PIN history useless. An \
                     administrator deletes that file and {} (forgetting {user}'s earlier PINs); \
                     then {user} tries again.",
                    self.store.tpm_history_key_path().display(),
                    self.store.history_path(user).display()
                ),
            ),
            other => Failure::new(
                ErrorCode::BackendUnavailable,
                format!(
                    "{user}'s PIN history is kept with the TPM, which alohad cannot use now ({other}); \
                     try again when the TPM is back (see alohad's log). Giving the history up \
                     instead means deleting {}.",
                    self.store.history_path(user).display()
                ),
            ),
        }
    }

    /// A PIN-history key file that cannot be used (missing or corrupt). Unlock or a PIN reset
    /// does not help: only restoring the file, or giving up the histories made with it.
    fn history_key_file_failure(&self, user: &str, path: &Path, e: StoreError) -> Failure {
        let history = self.store.history_path(user);
        match e {
            StoreError::KeyMissing { .. } => Failure::new(
                ErrorCode::StateCorrupt,
                format!(
                    "{e}. New PINs for {user} are refused, because without that key the earlier \
                     PINs cannot be checked. An administrator restores {} from a backup, or runs \
                     `rm {}` (forgetting {user}'s earlier PINs); then {user} tries again.",
                    path.display(),
                    history.display()
                ),
            ),
            StoreError::Corrupt { .. } => Failure::new(
                ErrorCode::StateCorrupt,
                format!(
                    "{e}. New PINs for {user} are refused until it is fixed: an administrator \
                     restores it from a backup, or deletes it and {} (forgetting {user}'s earlier \
                     PINs; other users' histories need the same); then {user} tries again.",
                    history.display()
                ),
            ),
            other => store_failure(user, other),
        }
    }

    fn history_digest(
        &self,
        user: &str,
        history: &History,
        pin: &Secret,
    ) -> Result<String, Failure> {
        let permit = self.argon2_runs.acquire();
        let stretched = history::stretch(&self.history_kdf, &history.salt, user, pin)
            .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
        drop(permit);
        // A history with digests was made with a key that must still exist: a fresh key would
        // make every earlier PIN pass the check without anyone noticing.
        let may_create = history.digests.is_empty();
        let mac = match history.key {
            BackendKind::Software => {
                let path = self.store.history_key_path();
                let k = self
                    .store
                    .history_key(may_create)
                    .map_err(|e| self.history_key_file_failure(user, &path, e))?;
                history::software_mac(&k, &stretched)
                    .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?
            }
            BackendKind::Tpm => {
                let Some(tpm) = &self.tpm else {
                    return Err(self.history_key_failure(
                        user,
                        BackendError::Unavailable("alohad has no TPM".into()),
                    ));
                };
                let mut backend = lock(tpm);
                let path = self.store.tpm_history_key_path();
                let blob = self
                    .store
                    .tpm_history_key(may_create, || match backend.create_history_key() {
                        Ok(Some(blob)) => Ok(blob),
                        Ok(None) => Err(BackendError::Unavailable(
                            "the TPM backend made no history key".into(),
                        )),
                        Err(e) => Err(e),
                    })
                    .map_err(|e| self.history_key_file_failure(user, &path, e))?
                    .map_err(|e| self.history_key_failure(user, e))?;
                backend
                    .history_mac(&blob, &stretched)
                    .map_err(|e| self.history_key_failure(user, e))?
            }
        };
        Ok(aloha::hex::encode(&mac))
    }

    /// The history check of a new PIN. The history holds the current PIN, so this answer is
    /// an oracle for it: only call it once the caller has proven itself (account password,
    /// current PIN, or root).
    pub(super) fn vet_history(&self, user: &str, pin: &Secret) -> Result<HistoryUpdate, Failure> {
        let keep = self.config.pin.history;
        if keep == 0 {
            return Ok(HistoryUpdate::default());
        }
        let reused = || {
            let v = aloha::policy::PolicyViolation::Reused { history: keep };
            Failure::new(ErrorCode::PolicyViolation, v.to_string())
        };
        let fresh = || -> Result<History, Failure> {
            Ok(History {
                key: self.preferred_history_key(),
                salt: random()?,
                digests: Vec::new(),
            })
        };
        let stored = self
            .store
            .load_history(user)
            .map_err(|e| self.history_failure(user, e))?;
        let (mut history, note) = match stored {
            StoredHistory::Current(h) => (h, None),
            StoredHistory::None => (fresh()?, None),
            StoredHistory::Legacy(old) => {
                // Honour the version-1 entries one last time, then drop them: their fast,
                // unsalted digests are what let the current PIN be recovered offline.
                let path = self.store.history_key_path();
                if path.exists() {
                    let key = self
                        .store
                        .history_key(false)
                        .map_err(|e| self.history_key_file_failure(user, &path, e))?;
                    let digest = history::legacy_digest(&key, user, pin)
                        .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
                    if old.iter().take(keep).any(|d| *d == digest) {
                        return Err(reused());
                    }
                }
                warn!(
                    user,
                    "replacing a version-1 PIN history with the salted format"
                );
                (
                    fresh()?,
                    Some(format!(
                        "(The PIN history moved to a stronger format: PINs {user} used before \
                         this one are no longer remembered.)"
                    )),
                )
            }
        };
        let digest = self.history_digest(user, &history, pin)?;
        if history.digests.iter().take(keep).any(|d| *d == digest) {
            return Err(reused());
        }
        history.digests.insert(0, digest);
        history.digests.truncate(keep);
        Ok(HistoryUpdate {
            history: Some(history),
            note,
        })
    }

    pub(super) fn save_history(
        &self,
        user: &str,
        update: &HistoryUpdate,
    ) -> Result<(), StoreError> {
        match &update.history {
            Some(h) => self.store.save_history(user, h),
            None => self.store.remove_history(user),
        }
    }
}
