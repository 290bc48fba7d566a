//! Account-password checks (a non-root user's `pin set` and `pin reset`): one PAM transaction
//! at a time, since Linux-PAM modules are not promised to be thread-safe, and a growing wait
//! after each wrong password, so alohad is never a faster way to guess a password than `su`
//! (pam_unix waits about 2 s after a failure).
//!
//! Only the user themself can have their password checked (root needs none), so the wait a
//! user earns slows only that user. It lives in memory: a restart forgets it, and only root
//! can restart alohad.

use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;

/// The wait after the first wrong password, in seconds; it doubles with each further one.
pub(super) const FIRST_WAIT_SECONDS: u64 = 2;
/// The longest wait.
pub(super) const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Default)]
pub(super) struct PasswordChecks {
    /// Held for the whole PAM transaction.
    serial: Mutex<()>,
    /// Per user: wrong passwords in a row, and when the next check may run (Unix seconds).
    failures: Mutex<HashMap<String, (u32, u64)>>,
}

impl PasswordChecks {
    /// When `user` may next have a password checked, if that is after `now`.
    pub(super) fn wait_until(&self, user: &str, now: u64) -> Option<u64> {
        lock(&self.failures)
            .get(user)
            .map(|&(_, until)| until)
            .filter(|&until| until > now)
    }

    /// Runs `check` alone (no other password check at the same time) and records its result
    /// for `user` at `now`. `check` answers whether the password was wrong (`Some(true)`),
    /// right (`Some(false)`), or could not be judged (`None`: nothing is recorded).
    pub(super) fn run<T>(
        &self,
        user: &str,
        now: u64,
        check: impl FnOnce() -> (T, Option<bool>),
    ) -> T {
        let (result, wrong) = {
            let _alone = lock(&self.serial);
            check()
        };
        let mut failures = lock(&self.failures);
        match wrong {
            Some(true) => {
                let entry = failures.entry(user.to_string()).or_insert((0, now));
                entry.0 = entry.0.saturating_add(1);
                let wait = FIRST_WAIT_SECONDS
                    .saturating_mul(1u64 << entry.0.saturating_sub(1).min(16))
                    .min(MAX_WAIT_SECONDS);
                entry.1 = now.saturating_add(wait);
            }
            Some(false) => {
                failures.remove(user);
            }
            None => {}
        }
        result
    }
}
