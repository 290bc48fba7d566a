//! `aloha status` in words.

use aloha::lockout::{Gate, tpm_pause_reason};
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
    // alohad says what the key store protects against; the CLI only shows it.
    let store = |b: aloha::protocol::BackendKind| match &s.protection {
        Some(words) => format!("{} — {words}", b.name()),
        None => b.name().to_string(),
    };
    match (s.backend, s.default_backend) {
        (Some(b), _) => line("Protected by:", store(b)),
        (None, Some(b)) => line("New PINs go to:", store(b)),
        (None, None) => {}
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
    if let Some(p) = s.tpm_pause {
        line(
            "PIN sign-in:",
            format!("PAUSED for every user — {}", tpm_pause_reason(p, now)),
        );
    }
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
    if let Some((key, value)) = tpm_share_line(s, now) {
        line(key, value);
    }
    match &s.face {
        None => line(
            "Face:",
            "not enrolled — `aloha face enroll` adds one".into(),
        ),
        Some(f) => {
            let labels: Vec<String> = f
                .profiles
                .iter()
                .map(|p| format!("{} ({} views)", p.label, p.descriptors))
                .collect();
            line("Face:", labels.join(", "));
            let state = if f.paused {
                format!(
                    "OFF after {} failed face attempts — a PIN or password sign-in turns it back on",
                    f.failures
                )
            } else if f.usable {
                format!(
                    "ready — {} failed face attempts of {} before it turns off",
                    f.failures, f.max_failures
                )
            } else {
                "not usable now (see Camera)".to_string()
            };
            line("Face sign-in:", state);
            line("Camera:", f.camera.clone());
            line("Face protected:", f.protection.clone());
        }
    }
    if s.enrolled {
        let v = &s.vault;
        let state = match (v.sealed_at, &v.problem) {
            (_, Some(p)) => format!("cannot be used: {p}"),
            (Some(t), None) => format!(
                "your password is kept sealed to your key (since {}); a PIN or face sign-in unlocks the login keyring — `aloha vault disable` forgets it",
                utc(t)
            ),
            (None, None) if v.allowed => {
                "off — `aloha vault enable` lets a PIN or face sign-in unlock the login keyring"
                    .to_string()
            }
            (None, None) => "not allowed here ([vault] in aloha.toml)".to_string(),
        };
        line("Password vault:", state);
    }
    if let Some(p) = &s.problem {
        line("PROBLEM:", p.clone());
    }
    out
}

/// The user's standing against their share of the TPM's failure budget, where alohad sent it.
fn tpm_share_line(s: &UserStatus, now: u64) -> Option<(&'static str, String)> {
    let share = s.tpm_share?;
    let remembered = format!(
        "{} of your {} remembered by the TPM (a correct PIN does not clear them)",
        share.debt, share.share
    );
    let state = match (share.used(), share.next_forgotten) {
        (false, Some(t)) => format!(
            "{remembered}; the next is forgotten in about {}",
            wait(t.saturating_sub(now))
        ),
        (false, None) => remembered,
        (true, Some(t)) => format!(
            "USED — {remembered}; PIN sign-in resumes in about {} (at {})",
            wait(t.saturating_sub(now)),
            utc(t)
        ),
        (true, None) => format!(
            "USED — {remembered}; PIN sign-in resumes when an administrator resets the \
             TPM's dictionary-attack counter"
        ),
    };
    Some(("TPM wrong PINs:", state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloha::lockout::{TpmPause, TpmShare};

    fn status() -> UserStatus {
        crate::cli::sample_status()
    }

    #[test]
    fn a_user_without_a_pin_is_told_where_new_pins_go() {
        let shown = render(&status(), 1_000);
        assert!(shown.contains("New PINs go to:   TPM 2.0"), "{shown}");
        assert!(!shown.contains("PAUSED"), "{shown}");
    }

    #[test]
    fn the_protection_shown_is_the_daemons() {
        let mut s = status();
        s.protection = Some("what alohad says".into());
        let shown = render(&s, 1_000);
        assert!(
            shown.contains("New PINs go to:   TPM 2.0 — what alohad says\n"),
            "{shown}"
        );
        s.protection = None;
        assert!(render(&s, 1_000).contains("New PINs go to:   TPM 2.0\n"));
    }

    #[test]
    fn the_tpm_pause_is_shown_with_when_it_ends() {
        let mut s = status();
        s.tpm_pause = Some(TpmPause {
            in_lockout: false,
            until: Some(1_000 + 7200),
        });
        let shown = render(&s, 1_000);
        assert!(shown.contains("PAUSED for every user"), "{shown}");
        assert!(shown.contains("next attempt in about 2 hours"), "{shown}");
        s.tpm_pause = Some(TpmPause {
            in_lockout: true,
            until: None,
        });
        let shown = render(&s, 1_000);
        assert!(
            shown.contains("is in its dictionary-attack lockout"),
            "{shown}"
        );
        assert!(shown.contains("until an administrator"), "{shown}");
    }

    #[test]
    fn the_users_share_of_the_tpm_budget_is_shown() {
        let mut s = status();
        s.tpm_share = Some(TpmShare {
            debt: 3,
            share: 14,
            next_forgotten: Some(1_000 + 3600),
        });
        let shown = render(&s, 1_000);
        assert!(
            shown.contains("3 of your 14 remembered by the TPM"),
            "{shown}"
        );
        assert!(
            shown.contains("next is forgotten in about 1 hour"),
            "{shown}"
        );
        assert!(!shown.contains("USED"), "{shown}");
        s.tpm_share = Some(TpmShare {
            debt: 14,
            share: 14,
            next_forgotten: Some(1_000 + 7200),
        });
        let shown = render(&s, 1_000);
        assert!(shown.contains("USED — 14 of your 14"), "{shown}");
        assert!(shown.contains("resumes in about 2 hours"), "{shown}");
    }
}
