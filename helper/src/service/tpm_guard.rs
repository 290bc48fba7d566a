//! The TPM guard: the TPM's dictionary-attack lockout is global (one user's wrong PINs there
//! lock every user's keys), so alohad refuses TPM PIN attempts before the TPM's counter gets
//! within `tpm.da_headroom` of maxTries, and refuses them all while the per-user limit does not
//! fit below that. Each user's own TPM failures are held to their share of that budget, so no
//! user can bring the guard down on everyone.

use aloha::lockout::{DaState, TpmDebt, TpmShare, tpm_guard_message, tpm_share, tpm_share_message};
use aloha::protocol::{ErrorCode, Failure};
use tracing::{error, warn};

use super::Service;
use super::key_stores::backend_failure;
use crate::backend::KeyBackend;

/// The per-user limit must stay below the TPM guard, or one user's wrong PINs alone would
/// pause PIN sign-in for every user: `max_attempts + da_headroom < maxTries`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "lockout.max_attempts = {max_attempts} plus tpm.da_headroom = {da_headroom} is not below the \
     TPM's maxTries = {max_tries}: one user's wrong PINs alone would pause PIN sign-in for every \
     user. Either {}, or raise the TPM's maxTries (e.g. `tpm2_dictionarylockout -s -n 32`, with \
     the lockout hierarchy's authorization)",
    limits_fix(*.max_tries, *.da_headroom)
)]
pub struct TpmLimitsError {
    pub max_attempts: u32,
    pub da_headroom: u32,
    pub max_tries: u32,
}

fn limits_fix(max_tries: u32, da_headroom: u32) -> String {
    match max_tries.checked_sub(da_headroom.saturating_add(1)) {
        Some(most) if most > 0 => {
            format!("lower lockout.max_attempts to at most {most} in aloha.toml")
        }
        _ => "lower tpm.da_headroom in aloha.toml".to_string(),
    }
}

pub fn check_tpm_limits(
    max_attempts: u32,
    da_headroom: u32,
    da: &DaState,
) -> Result<(), TpmLimitsError> {
    match max_attempts.checked_add(da_headroom) {
        Some(needed) if needed < da.max_tries => Ok(()),
        _ => Err(TpmLimitsError {
            max_attempts,
            da_headroom,
            max_tries: da.max_tries,
        }),
    }
}

impl Service {
    /// Refuse attempts that could push the TPM into its global lockout, and all attempts while
    /// the limits do not fit the TPM (checked at start too, but the DA state may have been
    /// unreadable then, and maxTries can change while alohad runs).
    /// The TPM's dictionary-attack state when the attempt may go ahead (`None`: no TPM).
    pub(super) fn tpm_guard(
        &self,
        backend: &mut dyn KeyBackend,
        now: u64,
    ) -> Result<Option<DaState>, Failure> {
        let da = match backend.dictionary_attack_state() {
            Ok(Some(da)) => da,
            Ok(None) => return Ok(None),
            Err(e) => return Err(backend_failure("this user", e)),
        };
        let limits = &self.config;
        if let Err(e) = check_tpm_limits(limits.lockout.max_attempts, limits.tpm.da_headroom, &da) {
            error!(error = %e, "refusing TPM PIN attempts");
            return Err(Failure::new(
                ErrorCode::BackendUnavailable,
                format!("alohad refuses TPM PIN attempts: {e}. Use your password meanwhile."),
            ));
        }
        let Some(pause) = da.pause(self.config.tpm.da_headroom, now) else {
            return Ok(Some(da));
        };
        let mut f = Failure::new(ErrorCode::TpmLockout, tpm_guard_message(&da, pause, now));
        f.retry_at = pause.until;
        Err(f)
    }

    /// `user`'s debt to the TPM's failure budget at `now` (`recorded` brought up to date) and
    /// where it stands against the user's share (see [`aloha::lockout::share`]).
    pub(super) fn tpm_standing(
        &self,
        recorded: TpmDebt,
        da: &DaState,
        now: u64,
    ) -> (TpmDebt, TpmShare) {
        let debt = recorded.at(now, da.recovery_seconds);
        let share = tpm_share(
            da.max_tries,
            self.config.tpm.da_headroom,
            self.store.tpm_users(),
        );
        let standing = TpmShare {
            debt: debt.failures,
            share,
            next_forgotten: debt.next_forgotten(da.recovery_seconds),
        };
        (debt, standing)
    }

    /// `user`'s debt at `now`, refused while it has reached the user's share.
    pub(super) fn tpm_debt(
        &self,
        user: &str,
        recorded: TpmDebt,
        da: &DaState,
        now: u64,
    ) -> Result<TpmDebt, Failure> {
        let (debt, standing) = self.tpm_standing(recorded, da, now);
        if standing.used() {
            warn!(
                user,
                debt = standing.debt,
                share = standing.share,
                "TPM PIN attempt refused: the user's share of the TPM's failure budget is used"
            );
            return Err(Failure {
                retry_at: standing.next_forgotten,
                ..Failure::new(
                    ErrorCode::Delayed,
                    tpm_share_message(
                        user,
                        standing.debt,
                        standing.share,
                        standing.next_forgotten,
                        now,
                    ),
                )
            });
        }
        Ok(debt)
    }
}
