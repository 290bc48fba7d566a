//! Each user's share of the TPM's failure budget.
//!
//! The TPM counts every user's wrong PINs in one dictionary-attack counter that only time
//! empties (one failure forgotten per recoveryTime); a correct PIN does not lower it. Aloha's
//! per-user counter is reset by a correct PIN or a PIN reset, so without more, a user who
//! knows their own PIN could repeat "the free wrong PINs, then the right one" and walk the
//! TPM's counter up to the guard, pausing PIN sign-in for every user for hours.
//!
//! So each user carries a debt: the wrong PINs of theirs the TPM still remembers, by the
//! TPM's own rule — one more per wrong PIN the TPM judged, one less per recoveryTime, and
//! nothing forgiven by a success or a reset. A user whose debt has reached their share waits
//! for it to decay. The budget is the failures the guard allows,
//! `maxTries − da_headroom − 1`, and each TPM-enrolled user's share is an equal part of it
//! (at least 1), so however the users spend their own shares — alone or together — the TPM's
//! counter stays below the guard while there are no more users than the budget.

use serde::{Deserialize, Serialize};

/// One user's debt: wrong PINs the TPM is assumed to remember, as of `since`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmDebt {
    pub failures: u32,
    /// Unix seconds from which the next failure is forgotten after one recovery period.
    pub since: u64,
}

impl TpmDebt {
    /// The debt at `now`, one failure forgotten per whole `recovery_seconds` since `since`
    /// (0: the TPM forgets nothing). The part of a period already run is kept.
    pub fn at(self, now: u64, recovery_seconds: u32) -> TpmDebt {
        let period = u64::from(recovery_seconds);
        if self.failures == 0 {
            return TpmDebt {
                failures: 0,
                since: now,
            };
        }
        if period == 0 || now <= self.since {
            return self;
        }
        let periods = (now - self.since) / period;
        let forgotten = u32::try_from(periods).unwrap_or(u32::MAX);
        if forgotten >= self.failures {
            return TpmDebt {
                failures: 0,
                since: now,
            };
        }
        TpmDebt {
            failures: self.failures - forgotten,
            since: self.since + periods * period,
        }
    }

    /// One more failure at `now` (the debt already brought to `now`).
    pub fn plus_one(self, now: u64) -> TpmDebt {
        TpmDebt {
            failures: self.failures.saturating_add(1),
            since: if self.failures == 0 { now } else { self.since },
        }
    }

    /// When the debt next drops by one (`None`: never).
    pub fn next_forgotten(self, recovery_seconds: u32) -> Option<u64> {
        (recovery_seconds > 0 && self.failures > 0)
            .then(|| self.since.saturating_add(u64::from(recovery_seconds)))
    }
}

/// Where a user stands against their share, as `aloha status` shows it and pam_aloha checks it
/// before asking for a PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmShare {
    /// Wrong PINs of the user's the TPM still remembers.
    pub debt: u32,
    /// The user's share of the TPM's failure budget.
    pub share: u32,
    /// When the debt next drops by one (`None`: never, or no debt).
    pub next_forgotten: Option<u64>,
}

impl TpmShare {
    /// The share is used: TPM PIN attempts wait for the debt to decay.
    pub fn used(&self) -> bool {
        self.debt >= self.share
    }
}

/// Each TPM-enrolled user's share of the failure budget: `(maxTries − da_headroom − 1) / users`,
/// at least 1.
pub fn tpm_share(max_tries: u32, da_headroom: u32, users: usize) -> u32 {
    let budget = max_tries.saturating_sub(da_headroom).saturating_sub(1);
    let users = u32::try_from(users.max(1)).unwrap_or(u32::MAX);
    (budget / users).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;
    const H2: u32 = 7200;

    #[test]
    fn decays_like_the_tpm_and_keeps_the_part_of_a_period() {
        let d = TpmDebt::default().at(T0, H2).plus_one(T0).plus_one(T0 + 10);
        assert_eq!(
            d,
            TpmDebt {
                failures: 2,
                since: T0
            }
        );
        assert_eq!(d.at(T0 + 7199, H2).failures, 2);
        let one = d.at(T0 + 7200 + 100, H2);
        assert_eq!(
            one,
            TpmDebt {
                failures: 1,
                since: T0 + 7200
            }
        );
        assert_eq!(one.next_forgotten(H2), Some(T0 + 14400));
        assert_eq!(d.at(T0 + 14400, H2).failures, 0);
        assert_eq!(d.at(T0 + 10 * 14400, H2).failures, 0);
        // A TPM that forgets nothing: neither does the debt.
        assert_eq!(d.at(T0 + 10 * 14400, 0), d);
        assert_eq!(d.next_forgotten(0), None);
        // A clock set backwards forgives nothing.
        assert_eq!(d.at(T0 - 100_000, H2), d);
    }

    #[test]
    fn shares_never_add_up_to_the_guard() {
        // Windows-like TPM: 32 tries, headroom 2: 29 failures may be spent before the guard.
        assert_eq!(tpm_share(32, 2, 0), 29);
        assert_eq!(tpm_share(32, 2, 1), 29);
        assert_eq!(tpm_share(32, 2, 2), 14);
        assert_eq!(tpm_share(32, 2, 3), 9);
        for users in 1..=29 {
            let total = tpm_share(32, 2, users) * users as u32;
            assert!(total < 32 - 2, "{users} users: {total}");
        }
        // More users than the budget: one each (the guard is then the only backstop).
        assert_eq!(tpm_share(32, 2, 100), 1);
        assert_eq!(tpm_share(3, 2, 1), 1);
    }
}
