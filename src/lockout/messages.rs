//! What lockout refusals say: the gate's refusal, a wrong PIN's reply, a counted key-store
//! failure's reply, and the TPM guard's pause. alohad sends these; pam_aloha and `aloha status`
//! show the same sentences from the status alone. Every sentence says why and what to do.

use super::{Attempts, DaState, Gate, LockoutPolicy, TpmPause};
use crate::timefmt::{utc, wait};

/// A counted failure's reply: the sentence, the wait it started, the tries left before the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedReply {
    pub message: String,
    pub retry_at: Option<u64>,
    pub left_before_lock: u32,
}

/// The sentence shown when the gate refuses an attempt (alohad's replies, and pam_aloha's
/// check before it asks for a PIN). `None` when the gate is open.
pub fn refusal_message(user: &str, gate: Gate, failures: u32, now: u64) -> Option<String> {
    match gate {
        Gate::Open { .. } => None,
        Gate::Delayed { until } => Some(format!(
            "Too many wrong PINs: try again in {} (at {}), or use your password.",
            wait(until.saturating_sub(now)),
            utc(until)
        )),
        Gate::Locked => Some(format!(
            "{user}'s PIN is locked after {failures} wrong tries — use your password. \
             `aloha pin reset` (with the account password) or an administrator \
             (`aloha admin unlock`) lifts the lock."
        )),
    }
}

/// Why and until when the TPM guard pauses PIN sign-in for every TPM-backed user, as the tail
/// of a sentence ("PIN sign-in is paused for every user — …"): `aloha status`, and pam_aloha's
/// check before it asks for a PIN.
pub fn tpm_pause_reason(pause: TpmPause, now: u64) -> String {
    let why = if pause.in_lockout {
        "the TPM is in its dictionary-attack lockout"
    } else {
        "the TPM is close to its dictionary-attack lockout"
    };
    let until = match pause.until {
        Some(t) => format!(
            "next attempt in about {} (at {})",
            wait(t.saturating_sub(now)),
            utc(t)
        ),
        None => "until an administrator resets the TPM's dictionary-attack counter".into(),
    };
    format!("{why}; {until}. Use your password meanwhile.")
}

/// Why a user's TPM PIN attempts wait: their wrong PINs the TPM still remembers have used their
/// share of its failure budget (see [`super::share`]). `next` is when one is forgotten.
pub fn tpm_share_message(user: &str, debt: u32, share: u32, next: Option<u64>, now: u64) -> String {
    let when = match next {
        Some(t) => format!(
            "PIN sign-in for {user} resumes in about {} (at {}), when the TPM forgets one",
            wait(t.saturating_sub(now)),
            utc(t)
        ),
        None => format!(
            "this TPM forgets none by itself, so PIN sign-in for {user} resumes only when an \
             administrator resets its dictionary-attack counter"
        ),
    };
    format!(
        "The TPM still remembers {debt} wrong PINs of {user}'s, and {user}'s share of its \
         failure budget is {share} (the budget is shared by every user of this machine, and a \
         correct PIN does not clear it): {when}. Use your password meanwhile."
    )
}

/// The reply to a wrong PIN, once `counted` (which includes it) is on disk.
pub fn wrong_pin_message(
    user: &str,
    policy: &LockoutPolicy,
    counted: &Attempts,
    now: u64,
) -> CountedReply {
    counted_reply(Counted::WrongPin, user, policy, counted, now)
}

/// Where the count stands after a key-store failure that counted like a wrong PIN (the PIN was
/// sent and no trustworthy answer came back): the tail of the key-store failure's message.
pub fn counted_failure_message(
    user: &str,
    policy: &LockoutPolicy,
    counted: &Attempts,
    now: u64,
) -> CountedReply {
    counted_reply(Counted::Failure, user, policy, counted, now)
}

/// What was counted: a PIN the key store judged wrong, or an attempt with no trustworthy answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    WrongPin,
    Failure,
}

const LIFT: &str =
    "`aloha pin reset` (with the account password) or an administrator lifts the lock.";

fn counted_reply(
    kind: Counted,
    user: &str,
    policy: &LockoutPolicy,
    counted: &Attempts,
    now: u64,
) -> CountedReply {
    let left = policy.max_attempts.saturating_sub(counted.failures);
    let failures = counted.failures;
    let gate = policy.gate(counted, now);
    let next_try = |until: u64| {
        format!(
            "Next try in {} (at {})",
            wait(until.saturating_sub(now)),
            utc(until)
        )
    };
    let message = match (gate, kind) {
        (Gate::Locked, Counted::WrongPin) => format!(
            "Wrong PIN. {user}'s PIN is now locked after {failures} wrong tries — use your \
             password; {LIFT}"
        ),
        (Gate::Locked, Counted::Failure) => {
            format!("{user}'s PIN is now locked after {failures} failed tries; {LIFT}")
        }
        (Gate::Delayed { until }, Counted::WrongPin) => format!(
            "Wrong PIN. {}; {left} more wrong PINs lock it.",
            next_try(until)
        ),
        (Gate::Delayed { until }, Counted::Failure) => {
            format!("{}; {left} more failed tries lock it.", next_try(until))
        }
        (Gate::Open { .. }, Counted::Failure) => format!("{left} more failed tries lock it."),
        (
            Gate::Open {
                left_before_delay, ..
            },
            Counted::WrongPin,
        ) if left_before_delay > 0 => format!(
            "Wrong PIN. {left_before_delay} more {} before a waiting time.",
            if left_before_delay == 1 {
                "try"
            } else {
                "tries"
            }
        ),
        (Gate::Open { .. }, Counted::WrongPin)
            if policy.delay_after(failures + 1) > 0 && left > 1 =>
        {
            format!("Wrong PIN. Another wrong PIN starts a waiting time; {left} more lock it.")
        }
        (Gate::Open { .. }, Counted::WrongPin) => format!(
            "Wrong PIN. {left} more wrong {} lock it.",
            if left == 1 { "PIN would" } else { "PINs" }
        ),
    };
    CountedReply {
        message,
        retry_at: match gate {
            Gate::Delayed { until } => Some(until),
            _ => None,
        },
        left_before_lock: left,
    }
}

/// The TPM guard's refusal: how far the TPM's counter is, and when sign-in resumes.
pub fn tpm_guard_message(da: &DaState, pause: TpmPause, now: u64) -> String {
    format!(
        "The TPM counted {} of {} wrong PINs on this machine: PIN sign-in is paused for every \
         user — {}",
        da.counter,
        da.max_tries,
        tpm_pause_reason(pause, now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn refusals_say_why_and_when() {
        assert_eq!(
            refusal_message(
                "al",
                Gate::Open {
                    left_before_delay: 1,
                    left_before_lock: 2
                },
                0,
                T0
            ),
            None
        );
        let m = refusal_message("al", Gate::Delayed { until: T0 + 240 }, 5, T0).unwrap();
        assert!(
            m.contains("try again in 4 minutes") && m.contains("use your password"),
            "{m}"
        );
        let m = refusal_message("al", Gate::Locked, 10, T0).unwrap();
        assert!(
            m.contains("locked after 10 wrong tries — use your password"),
            "{m}"
        );
    }

    #[test]
    fn counted_replies_say_where_the_count_stands() {
        let p = LockoutPolicy::default();
        let at = |failures| Attempts {
            failures,
            last_failure: T0,
        };
        let r = wrong_pin_message("al", &p, &at(1), T0);
        assert_eq!(r.message, "Wrong PIN. 2 more tries before a waiting time.");
        assert_eq!((r.retry_at, r.left_before_lock), (None, 9));
        let r = wrong_pin_message("al", &p, &at(3), T0);
        assert!(
            r.message
                .contains("Another wrong PIN starts a waiting time; 7 more"),
            "{}",
            r.message
        );
        let r = wrong_pin_message("al", &p, &at(4), T0);
        assert!(
            r.message.starts_with("Wrong PIN. Next try in 30 seconds"),
            "{}",
            r.message
        );
        assert_eq!(r.retry_at, Some(T0 + 30));
        let r = wrong_pin_message("al", &p, &at(10), T0);
        assert!(
            r.message
                .contains("now locked after 10 wrong tries — use your password"),
            "{}",
            r.message
        );
        assert_eq!((r.retry_at, r.left_before_lock), (None, 0));
        let r = counted_failure_message("al", &p, &at(2), T0);
        assert_eq!(r.message, "8 more failed tries lock it.");
        let r = counted_failure_message("al", &p, &at(5), T0);
        assert!(
            r.message.starts_with("Next try in 1 minute"),
            "{}",
            r.message
        );
        let r = counted_failure_message("al", &p, &at(10), T0);
        assert!(
            r.message
                .starts_with("al's PIN is now locked after 10 failed tries;"),
            "{}",
            r.message
        );
    }
}
