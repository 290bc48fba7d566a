//! `aloha status` and pam_aloha's check before it asks for a PIN: enrolment, the lockout gate,
//! the TPM's dictionary-attack state and the guard's pause, and what protects the key. A state
//! file that cannot be read is reported, not an error.

use aloha::lockout::{Attempts, TpmDebt};
use aloha::protocol::{BackendKind, Failure, UserStatus};

use super::{Caller, Service, lock};
use crate::store::Container;

impl Service {
    pub(super) fn status(&self, caller: &Caller, user: &str) -> Result<UserStatus, Failure> {
        let info = self.authorize(caller, user)?;
        let now = self.clock.now();
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let mut problems = Vec::new();
        let container = self.store.load_container(user).unwrap_or_else(|e| {
            problems.push(e.to_string());
            None
        });
        let (attempts, debt) = self.store.load_attempts_and_debt(user).unwrap_or_else(|e| {
            problems.push(e.to_string());
            let locked = Attempts {
                failures: self.config.lockout.max_attempts,
                last_failure: now,
            };
            (locked, TpmDebt::default())
        });
        let da = match &self.tpm {
            Some(m) => lock(m).dictionary_attack_state().unwrap_or_else(|e| {
                problems.push(format!("TPM: {e}"));
                None
            }),
            None => None,
        };
        let default_backend = self.default_backend();
        // The backend a sign-in (or, without a PIN, the next enrolment) would use.
        let backend = container.as_ref().map_or(default_backend, |c| c.backend);
        let (tpm_pause, tpm_share) = match (backend, da) {
            (BackendKind::Tpm, Some(d)) => (
                d.pause(self.config.tpm.da_headroom, now),
                Some(self.tpm_standing(debt, &d, now).1),
            ),
            _ => (None, None),
        };
        let face = self.face_status(user, &mut problems);
        let vault = self.vault_status(&info, container.as_ref());
        Ok(UserStatus {
            user: info.name,
            uid: info.uid,
            enrolled: container.is_some(),
            backend: container.as_ref().map(|c| c.backend),
            protectors: container
                .as_ref()
                .map(Container::protector_names)
                .unwrap_or_default(),
            pin_set_at: container.as_ref().map(|c| c.pin_set_at),
            pin_expires_at: container
                .as_ref()
                .and_then(|c| self.config.pin.expires_at(c.pin_set_at)),
            failed_attempts: attempts.failures,
            max_attempts: self.config.lockout.max_attempts,
            gate: self.config.lockout.gate(&attempts, now),
            tpm: da,
            tpm_pause,
            tpm_share,
            default_backend: Some(default_backend),
            protection: Some(backend.protection().to_string()),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
            face,
            vault,
        })
    }
}
