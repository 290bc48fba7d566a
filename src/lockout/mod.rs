//! Per-user lockout arithmetic: free tries, then growing delays, then a hard lock; and the TPM
//! guard's arithmetic over the TPM's global dictionary-attack state.
//!
//! Pure functions of (policy, recorded attempts, now) so the rules are tested with an injected
//! clock. alohad persists [`Attempts`] write-ahead: the failure is counted and fsync'ed before
//! the PIN reaches the TPM, and a success resets it. What a refusal says is in [`messages`].

mod messages;
pub mod share;

pub use messages::{
    CountedReply, counted_failure_message, refusal_message, tpm_guard_message, tpm_pause_reason,
    tpm_share_message, wrong_pin_message,
};
pub use share::{TpmDebt, TpmShare, tpm_share};

use serde::{Deserialize, Serialize};

/// `[lockout]` in aloha.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutPolicy {
    /// Wrong PINs in a row that cost no waiting. Default 3.
    pub free_attempts: u32,
    /// Seconds to wait after each further wrong PIN; the last value repeats.
    /// Default [30, 60, 300, 900, 3600].
    pub delay_seconds: Vec<u64>,
    /// Wrong PINs in a row after which the PIN is locked until `aloha pin reset` (account
    /// password) or `aloha admin unlock`. Default 10. Keep it below the TPM's maxTries.
    pub max_attempts: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            free_attempts: 3,
            delay_seconds: vec![30, 60, 300, 900, 3600],
            max_attempts: 10,
        }
    }
}

/// What alohad records per user (root-only, fsync'ed before every attempt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempts {
    /// Wrong PINs in a row (including an attempt in flight, which counts until it succeeds).
    pub failures: u32,
    /// Unix seconds of the last counted attempt.
    pub last_failure: u64,
}

/// Whether the next attempt may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Gate {
    /// An attempt may go ahead now.
    Open {
        /// Wrong PINs that may still follow before the first delay.
        left_before_delay: u32,
        /// Wrong PINs that may still follow before the hard lock.
        left_before_lock: u32,
    },
    /// Too many recent failures: wait until `until` (unix seconds).
    Delayed { until: u64 },
    /// Hard lock: only a PIN reset with the account password or an administrator lifts it.
    Locked,
}

impl LockoutPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("lockout.max_attempts must be at least 1".into());
        }
        if self.free_attempts >= self.max_attempts {
            return Err(format!(
                "lockout.free_attempts = {} must be smaller than lockout.max_attempts = {}",
                self.free_attempts, self.max_attempts
            ));
        }
        if self.delay_seconds.is_empty() {
            return Err(
                "lockout.delay_seconds needs at least one value (use [0] for no delays)".into(),
            );
        }
        Ok(())
    }

    /// Seconds to wait after the `failures`-th wrong PIN in a row.
    pub fn delay_after(&self, failures: u32) -> u64 {
        if failures <= self.free_attempts {
            return 0;
        }
        let tier = usize::try_from(failures - self.free_attempts - 1).unwrap_or(usize::MAX);
        self.delay_seconds
            .get(tier)
            .or(self.delay_seconds.last())
            .copied()
            .unwrap_or(0)
    }

    pub fn gate(&self, attempts: &Attempts, now: u64) -> Gate {
        if attempts.failures >= self.max_attempts {
            return Gate::Locked;
        }
        let delay = self.delay_after(attempts.failures);
        // A clock set backwards must not stretch a wait beyond one delay from now.
        let until = attempts
            .last_failure
            .saturating_add(delay)
            .min(now.saturating_add(delay));
        if now < until {
            return Gate::Delayed { until };
        }
        Gate::Open {
            left_before_delay: self.free_attempts.saturating_sub(attempts.failures),
            left_before_lock: self.max_attempts - attempts.failures,
        }
    }
}

/// The TPM's global dictionary-attack state (read by alohad, shown by `aloha status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaState {
    /// TPM2_PT_LOCKOUT_COUNTER: failures not yet forgotten.
    pub counter: u32,
    /// TPM2_PT_MAX_AUTH_FAIL: failures at which the TPM locks every DA-protected key.
    pub max_tries: u32,
    /// TPM2_PT_LOCKOUT_INTERVAL: seconds after which one failure is forgotten (0: never).
    pub recovery_seconds: u32,
    /// TPMA_PERMANENT inLockout.
    pub in_lockout: bool,
}

/// The TPM guard's pause of PIN sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmPause {
    /// The TPM itself is in lockout (not only close to it).
    pub in_lockout: bool,
    /// When PIN sign-in is expected to resume (unix seconds); `None`: only when an administrator
    /// resets the TPM's dictionary-attack counter.
    pub until: Option<u64>,
}

impl DaState {
    /// Whether the TPM guard pauses PIN attempts: the counter is within `headroom` of maxTries,
    /// or the TPM is in lockout. The pause ends when enough failures are forgotten (never, if
    /// the TPM forgets none).
    pub fn pause(&self, headroom: u32, now: u64) -> Option<TpmPause> {
        let limit = self.max_tries.saturating_sub(headroom);
        if !self.in_lockout && self.counter < limit {
            return None;
        }
        let excess = u64::from(self.counter.saturating_sub(limit)) + 1;
        Some(TpmPause {
            in_lockout: self.in_lockout,
            until: (self.recovery_seconds > 0).then(|| {
                now.saturating_add(excess.saturating_mul(u64::from(self.recovery_seconds)))
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn after(failures: u32, at: u64) -> Attempts {
        Attempts {
            failures,
            last_failure: at,
        }
    }

    #[test]
    fn free_tries_then_growing_delays_then_lock() {
        let p = LockoutPolicy::default();
        assert_eq!(
            p.gate(&Attempts::default(), T0),
            Gate::Open {
                left_before_delay: 3,
                left_before_lock: 10
            }
        );
        assert_eq!(
            p.gate(&after(3, T0), T0),
            Gate::Open {
                left_before_delay: 0,
                left_before_lock: 7
            }
        );
        assert_eq!(p.gate(&after(4, T0), T0), Gate::Delayed { until: T0 + 30 });
        assert_eq!(
            p.gate(&after(5, T0), T0 + 10),
            Gate::Delayed { until: T0 + 60 }
        );
        assert_eq!(
            p.gate(&after(8, T0), T0),
            Gate::Delayed { until: T0 + 3600 }
        );
        // The last delay repeats.
        assert_eq!(
            p.gate(&after(9, T0), T0),
            Gate::Delayed { until: T0 + 3600 }
        );
        assert_eq!(p.gate(&after(10, T0), T0 + 1_000_000), Gate::Locked);
    }

    #[test]
    fn a_delay_expires_with_time() {
        let p = LockoutPolicy::default();
        let a = after(4, T0);
        assert_eq!(p.gate(&a, T0 + 29), Gate::Delayed { until: T0 + 30 });
        assert_eq!(
            p.gate(&a, T0 + 30),
            Gate::Open {
                left_before_delay: 0,
                left_before_lock: 6
            }
        );
    }

    #[test]
    fn clock_set_backwards_waits_at_most_one_delay() {
        let p = LockoutPolicy::default();
        let a = after(4, T0);
        assert_eq!(
            p.gate(&a, T0 - 10_000),
            Gate::Delayed {
                until: T0 - 10_000 + 30
            }
        );
    }

    #[test]
    fn validation() {
        assert!(LockoutPolicy::default().validate().is_ok());
        let p = LockoutPolicy {
            max_attempts: 0,
            ..Default::default()
        };
        assert!(p.validate().is_err());
        let p = LockoutPolicy {
            free_attempts: 10,
            ..Default::default()
        };
        assert!(p.validate().is_err());
        let p = LockoutPolicy {
            delay_seconds: vec![],
            ..Default::default()
        };
        assert!(p.validate().is_err());
    }

    #[test]
    fn zero_delays_mean_no_waiting() {
        let p = LockoutPolicy {
            delay_seconds: vec![0],
            ..Default::default()
        };
        assert!(matches!(p.gate(&after(6, T0), T0), Gate::Open { .. }));
    }
}
