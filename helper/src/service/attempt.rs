//! One counted attempt against a user's key: the lockout gate, the TPM guard, the write-ahead
//! count, the key-store operation, then the reset on success or the reply that says where the
//! count now stands.

use aloha::lockout::{
    Attempts, CountedReply, Gate, counted_failure_message, refusal_message, wrong_pin_message,
};
use aloha::protocol::{BackendKind, ErrorCode, Failure};
use tracing::{error, warn};

use super::Service;
use super::failures::store_failure;
use super::key_stores::backend_failure;
use crate::backend::{BackendError, KeyBackend};
use crate::store::Container;
use crate::users::UserInfo;

fn with_count(mut f: Failure, reply: CountedReply) -> Failure {
    f.retry_at = f.retry_at.or(reply.retry_at);
    f.left_before_lock = Some(reply.left_before_lock);
    f
}

impl Service {
    /// One PIN attempt against `container`'s key: gate, TPM guard, write-ahead count, the
    /// operation, then reset on success. The caller holds the user's lock.
    pub(super) fn attempt<T>(
        &self,
        user: &str,
        container: &Container,
        op: impl FnOnce(&mut dyn KeyBackend) -> Result<T, BackendError>,
    ) -> Result<T, Failure> {
        self.attempt_replying(user, container, op, |_| {})
    }

    /// [`Service::attempt`] that hands a success to `succeeded` before the counter reset, so
    /// a sign-in's reply does not wait for that durable write. The reset needs no durability
    /// of its own on the reply's path: a crash before it leaves the attempt counted, one
    /// failure too many, never a free guess; and the caller still holds the user's lock, so
    /// no other attempt for the user sees the counted state in between.
    pub(super) fn attempt_replying<T>(
        &self,
        user: &str,
        container: &Container,
        op: impl FnOnce(&mut dyn KeyBackend) -> Result<T, BackendError>,
        succeeded: impl FnOnce(&T),
    ) -> Result<T, Failure> {
        let now = self.clock.now();
        let (attempts, recorded_debt) = self
            .store
            .load_attempts_and_debt(user)
            .map_err(|e| store_failure(user, e))?;
        self.gate(user, &attempts, now)?;
        let mut guard = self.key_store(container.backend)?;
        let backend = guard.get();
        // In the TPM, the user's debt to its failure budget, brought up to date.
        let debt = match self.tpm_guard(backend, now)? {
            Some(da) => self.tpm_debt(user, recorded_debt, &da, now)?,
            None => recorded_debt,
        };
        let in_tpm = container.backend == BackendKind::Tpm;
        // Write-ahead, in one durable write: the attempt is counted on disk (and, in the TPM,
        // in the user's debt) before the PIN reaches the key store, so a crash or kill
        // mid-attempt never yields a free guess.
        let counted = Attempts {
            failures: attempts.failures.saturating_add(1),
            last_failure: now,
        };
        let counted_debt = if in_tpm { debt.plus_one(now) } else { debt };
        self.store
            .save_attempts_and_debt(user, &counted, &counted_debt)
            .map_err(|e| {
                Failure::new(
                    ErrorCode::Internal,
                    format!("alohad cannot record the attempt, so it refuses it: {e}"),
                )
            })?;
        let outcome = op(backend);
        // The key store is free for other users before the bookkeeping below.
        drop(guard);
        match outcome {
            Ok(value) => {
                succeeded(&value);
                // The TPM counted nothing for a right PIN: the debt goes back to what it was
                // (earlier failures stay).
                if let Err(e) = self
                    .store
                    .save_attempts_and_debt(user, &Attempts::default(), &debt)
                {
                    error!(user, error = %e, "cannot reset the attempt counter after a success");
                }
                // The PIN proved the user: face sign-in, if it was paused, is on again.
                self.forget_face_failures(user);
                Ok(value)
            }
            Err(BackendError::AuthFailed) => {
                let reply = wrong_pin_message(user, &self.config.lockout, &counted, now);
                let message = reply.message.clone();
                Err(with_count(
                    Failure::new(ErrorCode::WrongPin, message),
                    reply,
                ))
            }
            Err(e @ (BackendError::Unavailable(_) | BackendError::BadBlob(_))) => {
                // The key store never judged the PIN (it refused before the PIN-carrying
                // command): give the attempt back.
                if let Err(e) = self.store.save_attempts_and_debt(user, &attempts, &debt) {
                    error!(user, error = %e, "cannot restore the attempt counter");
                }
                Err(backend_failure(user, e))
            }
            Err(e @ (BackendError::Indeterminate(_) | BackendError::Lockout)) => {
                // The PIN reached the key store and the answer cannot be trusted (a TPM error
                // response is not authenticated; the guard above already refuses a TPM it saw
                // in lockout): the attempt stays counted.
                warn!(user, error = %e, "no trustworthy answer after the PIN was sent; the attempt counts");
                let mut f = backend_failure(user, e);
                let reply = counted_failure_message(user, &self.config.lockout, &counted, now);
                f.message = format!("{} {}", f.message, reply.message);
                Err(with_count(f, reply))
            }
        }
    }

    /// Refuse while the lockout gate is closed (a waiting time, or the hard lock).
    fn gate(&self, user: &str, attempts: &Attempts, now: u64) -> Result<(), Failure> {
        let gate = self.config.lockout.gate(attempts, now);
        let Some(message) = refusal_message(user, gate, attempts.failures, now) else {
            return Ok(());
        };
        let (code, retry_at) = match gate {
            Gate::Delayed { until } => (ErrorCode::Delayed, Some(until)),
            _ => (ErrorCode::Locked, None),
        };
        Err(Failure {
            code,
            message,
            retry_at,
            left_before_lock: Some(
                self.config
                    .lockout
                    .max_attempts
                    .saturating_sub(attempts.failures),
            ),
        })
    }

    /// `user`'s key container, or why there is none to use. A container made for another uid
    /// (the account was deleted and its name given to someone new) is never used: the new
    /// owner of the name must not inherit the old owner's key.
    pub(super) fn load_container(&self, user: &UserInfo) -> Result<Container, Failure> {
        let name = &user.name;
        let container = self
            .store
            .load_container(name)
            .map_err(|e| store_failure(name, e))?
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::NotEnrolled,
                    format!("{name} has no Aloha PIN; set one with `aloha pin set`."),
                )
            })?;
        if container.uid != user.uid {
            warn!(
                user = %name,
                key_uid = container.uid,
                uid = user.uid,
                "refusing a key made for another uid: the user name was reused"
            );
            return Err(Failure::new(
                ErrorCode::NotEnrolled,
                format!(
                    "{name}'s Aloha key was made for uid {}, but {name} is now uid {}: the account \
                     was re-created, so the old key cannot sign in. Start over with `aloha pin \
                     reset` (asks for the account password), or an administrator removes it with \
                     `aloha admin remove {name}`.",
                    container.uid, user.uid
                ),
            ));
        }
        self.republish_if_drifted(&container);
        Ok(container)
    }
}
