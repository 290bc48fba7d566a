//! The key store an operation uses — the TPM's single owner, or a software vault of the caller's
//! own — and what a key store's failure tells the user.

use std::sync::MutexGuard;

use aloha::protocol::{BackendKind, ErrorCode, Failure};

use super::{Service, lock};
use crate::backend::{BackendError, KeyBackend};
use crate::semaphore::Permit;

/// A key store in use: the TPM's (shared, locked) or a software vault of one's own.
pub(super) enum KeyStoreGuard<'a> {
    Tpm(MutexGuard<'a, Box<dyn KeyBackend>>),
    /// A vault of its own, and the permit that bounds how many Argon2id runs overlap.
    Vault {
        backend: Box<dyn KeyBackend>,
        _permit: Permit<'a>,
    },
}

impl KeyStoreGuard<'_> {
    pub(super) fn get(&mut self) -> &mut dyn KeyBackend {
        match self {
            KeyStoreGuard::Tpm(guard) => &mut ***guard,
            KeyStoreGuard::Vault { backend, .. } => &mut **backend,
        }
    }
}

impl Service {
    /// The key store for `kind`: the TPM's single owner (one command sequence at a time), or a
    /// software vault of the caller's own (callers are serialized per user, and at most
    /// `argon2_runs` run at once, which bounds Argon2id's memory).
    pub(super) fn key_store(&self, kind: BackendKind) -> Result<KeyStoreGuard<'_>, Failure> {
        match kind {
            BackendKind::Software => {
                let permit = self.argon2_runs.acquire();
                Ok(KeyStoreGuard::Vault {
                    backend: (self.software)(),
                    _permit: permit,
                })
            }
            BackendKind::Tpm => self
                .tpm
                .as_ref()
                .map(|m| KeyStoreGuard::Tpm(lock(m)))
                .ok_or_else(|| {
                    Failure::new(
                        ErrorCode::BackendUnavailable,
                        "This PIN lives in the TPM, but alohad has no TPM available (see `alohad` \
                         logs and [tpm] in aloha.toml); use your password.",
                    )
                }),
        }
    }
}

/// What a key-store failure tells the user about `user`'s key.
pub(super) fn backend_failure(user: &str, e: BackendError) -> Failure {
    match e {
        BackendError::AuthFailed => Failure::new(ErrorCode::WrongPin, "Wrong PIN."),
        BackendError::Lockout => Failure::new(
            ErrorCode::TpmLockout,
            "The TPM is in its dictionary-attack lockout, which pauses PIN sign-in for every \
             user on this machine; use your password.",
        ),
        BackendError::BadBlob(m) => Failure::new(
            ErrorCode::StateCorrupt,
            format!(
                "{user}'s key cannot be used ({m}); this happens after a TPM was cleared or \
                 replaced. Set a new PIN with `aloha pin reset`; use your password meanwhile."
            ),
        ),
        BackendError::Unavailable(m) => Failure::new(
            ErrorCode::BackendUnavailable,
            format!("The key store is unavailable ({m}); use your password."),
        ),
        BackendError::Indeterminate(m) => Failure::new(
            ErrorCode::BackendUnavailable,
            format!(
                "The key store gave no trustworthy answer after the PIN was sent ({m}), so \
                 this counts as a failed attempt. Use your password; if it repeats, an \
                 administrator should check the TPM and its connection."
            ),
        ),
    }
}
