//! Step 3: the PIN prompt — if alohad would take a PIN attempt now (no waiting time or lock,
//! no TPM pause) and enough of `timeout=` is left for its answer. An empty or cancelled prompt
//! falls through to the password, with nothing counted (nothing has been sent).

use std::ops::ControlFlow;
use std::time::Duration;

use aloha::Secret;
use aloha::lockout::Gate;
use aloha::protocol::{BackendKind, UserStatus};

use super::attempt::{Attempt, Ready, Verdict};
use crate::args::Args;
use crate::daemon::Daemon;
use crate::host::{Host, Level};

/// May a PIN be asked for now? If not, say why, without a prompt.
pub(super) fn gate<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    ready: &Ready<D>,
) -> ControlFlow<Verdict> {
    may_try(host, &ready.attempt, &ready.daemon, &ready.status)?;
    enough_time(host, args, &ready.attempt, &ready.daemon)
}

/// The PIN the user typed, never empty.
pub(super) fn pin(host: &mut dyn Host, attempt: &Attempt) -> ControlFlow<Verdict, Secret> {
    attempt.log(host, Level::Debug, "asking for the PIN");
    match host.ask_secret("PIN: ") {
        Ok(pin) if !pin.is_empty() => ControlFlow::Continue(pin),
        Ok(_) => {
            attempt.log(
                host,
                Level::Info,
                "result=ignore: empty PIN, falling through to the password",
            );
            ControlFlow::Break(Verdict::Ignore)
        }
        Err(()) => {
            attempt.log(
                host,
                Level::Info,
                "result=ignore: PIN prompt cancelled or failed",
            );
            ControlFlow::Break(Verdict::Ignore)
        }
    }
}

/// The least of `timeout=` that must be left for the sign-in before the PIN is asked for:
/// 2 s, or half of `timeout=` if that is shorter. With less, Argon2id or the TPM could still be
/// working when the time runs out, after the PIN was sent — a counted attempt that fails.
pub(super) fn min_sign_in_time(timeout: Duration) -> Duration {
    Duration::from_secs(2).min(timeout / 2)
}

/// Would alohad take an attempt now? If not, say why, without a prompt.
fn may_try<D: Daemon>(
    host: &mut dyn Host,
    attempt: &Attempt,
    daemon: &D,
    status: &UserStatus,
) -> ControlFlow<Verdict> {
    if let Some(message) = super::say::gate(status.gate, daemon.now()) {
        host.tell(&message);
        let (verdict, what) = match status.gate {
            Gate::Locked => (Verdict::MaxTries, "locked"),
            _ => (Verdict::AuthErr, "waiting"),
        };
        attempt.log(
            host,
            Level::Notice,
            &format!("result={what}: not prompting"),
        );
        return ControlFlow::Break(verdict);
    }
    // An expired PIN is refused by alohad without being checked: say so instead of asking.
    if let Some(expired) = status.pin_expires_at.filter(|t| *t <= daemon.now()) {
        host.tell(super::say::EXPIRED);
        attempt.log(
            host,
            Level::Notice,
            &format!(
                "result=unavailable: the PIN expired at {}; not prompting",
                aloha::timefmt::utc(expired)
            ),
        );
        return ControlFlow::Break(Verdict::Unavailable);
    }
    // The TPM guard refuses every TPM-backed sign-in before the PIN is checked: say so instead
    // of asking for a PIN that cannot work.
    if let (Some(BackendKind::Tpm), Some(pause)) = (status.backend, status.tpm_pause) {
        host.tell(&super::say::tpm_paused(pause, daemon.now()));
        attempt.log(
            host,
            Level::Notice,
            "result=unavailable: the TPM guard pauses PIN sign-in; not prompting",
        );
        return ControlFlow::Break(Verdict::Unavailable);
    }
    // This user's own share of the TPM's failure budget is used: alohad would refuse the PIN.
    if let (Some(BackendKind::Tpm), Some(share)) = (status.backend, status.tpm_share)
        && share.used()
    {
        host.tell(&super::say::tpm_share_used(
            share.next_forgotten,
            daemon.now(),
        ));
        attempt.log(
            host,
            Level::Notice,
            "result=waiting: the user's share of the TPM's failure budget is used; not prompting",
        );
        return ControlFlow::Break(Verdict::AuthErr);
    }
    ControlFlow::Continue(())
}

/// Is enough of `timeout=` left after the status check for alohad to answer a sign-in?
fn enough_time<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    attempt: &Attempt,
    daemon: &D,
) -> ControlFlow<Verdict> {
    let left = daemon.time_left();
    if left < min_sign_in_time(args.timeout) {
        attempt.log(
            host,
            Level::Notice,
            &format!(
                "result=unavailable: only {:.1}s of timeout={}s left after the status check, \
                 too little for a sign-in; not prompting",
                left.as_secs_f64(),
                args.timeout.as_secs_f64()
            ),
        );
        return ControlFlow::Break(Verdict::Unavailable);
    }
    ControlFlow::Continue(())
}
