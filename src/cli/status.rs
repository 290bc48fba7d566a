//! `aloha status` in words.

use aloha::lockout::Gate;
use aloha::protocol::UserStatus;
use aloha::timefmt::{utc, wait};

pub fn render(s: &UserStatus, now: u64) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<17} {v}\n"));
    line("User:", format!("{} (uid {})", s.user, s.uid));
    if !s.enrolled {
        line("PIN:", "not set — `aloha pin set` creates one".into());
    } else {
        let set = s.pin_set_at.map(utc).unwrap_or_else(|| "unknown".into());
        let expiry = match s.pin_expires_at {
            None => "never expires".to_string(),
            Some(t) if t <= now => {
                format!("EXPIRED on {} — change it with `aloha pin change`", utc(t))
            }
            Some(t) => format!("expires {}", utc(t)),
        };
        line("PIN:", format!("set {set}, {expiry}"));
    }
    if let Some(b) = s.backend {
        line(
            "Protected by:",
            format!("{} — {}", b.name(), b.protection()),
        );
    }
    if !s.protectors.is_empty() {
        line("Protectors:", s.protectors.join(", "));
    }
    line(
        "Failed attempts:",
        format!(
            "{} (the PIN locks at {})",
            s.failed_attempts, s.max_attempts
        ),
    );
    let state = match s.gate {
        Gate::Open {
            left_before_delay,
            left_before_lock,
        } => format!(
            "ready — {left_before_delay} wrong PINs allowed before a waiting time, {left_before_lock} before the lock"
        ),
        Gate::Delayed { until } => {
            format!(
                "waiting — next attempt in {} (at {})",
                wait(until.saturating_sub(now)),
                utc(until)
            )
        }
        Gate::Locked => "LOCKED — use your password; `aloha pin reset` or an administrator \
                         (`aloha admin unlock`) lifts the lock"
            .into(),
    };
    line("Lockout:", state);
    if let Some(t) = s.tpm {
        let lock = if t.in_lockout {
            "IN LOCKOUT (every user's PIN paused)"
        } else {
            "not in lockout"
        };
        line(
            "TPM lockout:",
            format!(
                "{} of {} failures counted, {lock}; one failure is forgotten every {}",
                t.counter,
                t.max_tries,
                wait(u64::from(t.recovery_seconds))
            ),
        );
    }
    if let Some(p) = &s.problem {
        line("PROBLEM:", p.clone());
    }
    out
}
