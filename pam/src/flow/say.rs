//! What pam_aloha shows a person: one line each, no wider than [`MAX_LINE`], so a greeter shows
//! it under the entry and a terminal in one row. Each says what happened and that the password
//! works; why in full goes to the log, and `aloha status` explains the rest.

use aloha::lockout::{Gate, TpmPause};
use aloha::protocol::{ErrorCode, Failure};
use aloha::timefmt::wait;

use crate::host::MAX_LINE;

/// The waiting time before the prompt; `None` for an open gate.
pub(super) fn gate(gate: Gate, now: u64) -> Option<String> {
    match gate {
        Gate::Open { .. } => None,
        Gate::Delayed { until } => Some(delayed(Some(until), now)),
        Gate::Locked => Some(LOCKED.to_string()),
    }
}

const LOCKED: &str = "Your PIN is locked after too many wrong tries: use your password.";
pub(super) const EXPIRED: &str =
    "Your PIN has expired: use your password, then `aloha pin change`.";

fn delayed(until: Option<u64>, now: u64) -> String {
    match until {
        Some(t) => format!(
            "Too many wrong PINs: next try in {}. Use your password.",
            wait(t.saturating_sub(now))
        ),
        None => "Too many wrong PINs for now: use your password.".into(),
    }
}

/// The TPM guard's pause, which holds for every user.
pub(super) fn tpm_paused(pause: TpmPause, now: u64) -> String {
    match pause.until {
        Some(t) => format!(
            "PIN sign-in is paused for everyone for {}: use your password.",
            wait(t.saturating_sub(now))
        ),
        None => "PIN sign-in is paused for everyone: use your password.".into(),
    }
}

/// This user's share of the TPM's failure budget is used.
pub(super) fn tpm_share_used(next: Option<u64>, now: u64) -> String {
    match next {
        Some(t) => format!(
            "Your wrong PINs used your TPM share: next try in {}. Use your password.",
            wait(t.saturating_sub(now))
        ),
        None => "Your wrong PINs used your TPM share: use your password.".into(),
    }
}

pub(super) fn face_paused(failures: u32) -> String {
    format!("Face sign-in is off after {failures} failed tries: use your PIN or password.")
}

/// One of alohad's refusals: its own sentence where it fits one line (a wrong PIN's "Wrong
/// PIN. 2 more tries before the lock."), else the short form of its code.
pub(super) fn refusal(f: &Failure, now: u64) -> String {
    if fits(&f.message) {
        return f.message.clone();
    }
    match f.code {
        ErrorCode::WrongPin => match (f.left_before_lock, f.retry_at) {
            (Some(0), _) => "Wrong PIN. Your PIN is now locked: use your password.".into(),
            (_, Some(t)) => format!("Wrong PIN. Next try in {}.", wait(t.saturating_sub(now))),
            (Some(n), None) => format!("Wrong PIN. {n} more tries before the lock."),
            (None, None) => "Wrong PIN.".into(),
        },
        ErrorCode::Delayed | ErrorCode::TpmLockout => delayed(f.retry_at, now),
        ErrorCode::Locked => LOCKED.into(),
        ErrorCode::PinExpired => EXPIRED.into(),
        ErrorCode::FaceNoMatch => "Face not recognised.".into(),
        ErrorCode::FaceNotLive => {
            "That looked like a photo or a screen: show your own face.".into()
        }
        ErrorCode::FaceNotSeen => "No face seen.".into(),
        ErrorCode::FaceLocked => {
            "Face sign-in is off after failed tries: use your PIN or password.".into()
        }
        ErrorCode::FaceUnavailable => "Face sign-in cannot run now.".into(),
        _ => "Aloha cannot check a PIN now: use your password.".into(),
    }
}

fn fits(message: &str) -> bool {
    !message.contains('\n') && message.chars().count() <= MAX_LINE
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn every_sentence_fits_one_line_at_its_longest() {
        let long = Some(T0 + 99 * 86_400);
        let mut all = vec![
            gate(
                Gate::Delayed {
                    until: T0 + 99 * 86_400,
                },
                T0,
            )
            .unwrap(),
            gate(Gate::Locked, T0).unwrap(),
            EXPIRED.to_string(),
            tpm_paused(
                TpmPause {
                    in_lockout: true,
                    until: long,
                },
                T0,
            ),
            tpm_paused(
                TpmPause {
                    in_lockout: false,
                    until: None,
                },
                T0,
            ),
            tpm_share_used(long, T0),
            tpm_share_used(None, T0),
            face_paused(u32::MAX),
        ];
        let wordy = "x".repeat(MAX_LINE + 1);
        for code in [
            ErrorCode::WrongPin,
            ErrorCode::Delayed,
            ErrorCode::TpmLockout,
            ErrorCode::Locked,
            ErrorCode::PinExpired,
            ErrorCode::FaceNoMatch,
            ErrorCode::FaceNotLive,
            ErrorCode::FaceNotSeen,
            ErrorCode::FaceLocked,
            ErrorCode::FaceUnavailable,
            ErrorCode::BackendUnavailable,
            ErrorCode::StateCorrupt,
        ] {
            let mut f = Failure::new(code, wordy.clone());
            f.retry_at = long;
            f.left_before_lock = Some(u32::MAX);
            all.push(refusal(&f, T0));
            f.retry_at = None;
            all.push(refusal(&f, T0));
        }
        for m in &all {
            assert!(fits(m), "{m:?} is {} characters", m.chars().count());
        }
        assert_eq!(
            gate(
                Gate::Open {
                    left_before_delay: 1,
                    left_before_lock: 2
                },
                T0
            ),
            None
        );
    }

    #[test]
    fn alohad_s_own_sentence_is_kept_when_it_fits() {
        let f = Failure::new(
            ErrorCode::WrongPin,
            "Wrong PIN. 2 more tries before the lock.",
        );
        assert_eq!(refusal(&f, T0), f.message);
        let two_lines = Failure::new(ErrorCode::FaceNoMatch, "No match.\nTry again.");
        assert_eq!(refusal(&two_lines, T0), "Face not recognised.");
    }
}
