//! Step 1: is there an attempt to make? A local session, a known user with a registered key,
//! and an alohad that will take an attempt now, with time left to answer it. Nothing secret is
//! sent yet, so every way out here falls through to the password.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use aloha::config::ConfigError;
use aloha::lockout::{Gate, refusal_message, tpm_pause_reason};
use aloha::protocol::{BackendKind, Response, UserStatus};
use aloha::registry::{RegisteredKey, RegistryError};

use super::attempt::{Attempt, Ready, Verdict, kind};
use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

#[cfg(test)]
mod tests;

/// Ready to ask for the PIN, or the verdict that ends the attempt before any prompt.
pub(super) fn run<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) -> ControlFlow<Verdict, Ready<D>> {
    let attempt = local_attempt(host, args)?;
    let mut daemon = match open(args) {
        Ok(d) => d,
        Err(e) => {
            attempt.log(host, Level::Error, &format!("result=unavailable: {e}"));
            return ControlFlow::Break(Verdict::Unavailable);
        }
    };
    attempt.log(host, Level::Debug, &format!("using {}", daemon.describe()));
    let (registered, key_path) = registered_key(host, &attempt, &daemon)?;
    let status = status(host, &attempt, &mut daemon)?;
    may_try(host, &attempt, &daemon, &status)?;
    enough_time(host, args, &attempt, &daemon)?;
    ControlFlow::Continue(Ready {
        attempt,
        daemon,
        registered,
        key_path,
    })
}

/// The least of `timeout=` that must be left for the sign-in before the PIN is asked for:
/// 2 s, or half of `timeout=` if that is shorter. With less, Argon2id or the TPM could still be
/// working when the time runs out, after the PIN was sent — a counted attempt that fails.
pub(super) fn min_sign_in_time(timeout: Duration) -> Duration {
    Duration::from_secs(2).min(timeout / 2)
}

/// Is this PAM_RHOST the machine itself?
pub(super) fn is_local(rhost: &str) -> bool {
    let host = rhost.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "localhost" || host == "::1" || host.starts_with("127.") {
        return true;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .is_some_and(|own| own.eq_ignore_ascii_case(host))
}

/// Who signs in to what; only a local session is an attempt of ours.
fn local_attempt(host: &mut dyn Host, args: &Args) -> ControlFlow<Verdict, Attempt> {
    let service = host.service();
    host.log(
        Level::Debug,
        &format!("service={service} arguments: {}", args.describe()),
    );
    for arg in &args.unknown {
        host.log(
            Level::Notice,
            &format!("ignoring unknown module argument {arg:?}"),
        );
    }
    let Some(user) = host.user() else {
        host.log(Level::Notice, "no user name; leaving it to the next module");
        return ControlFlow::Break(Verdict::Ignore);
    };
    let attempt = Attempt { user, service };
    if attempt.service == "sshd" {
        attempt.log(host, Level::Info, "result=ignore: remote session (sshd)");
        return ControlFlow::Break(Verdict::Ignore);
    }
    if let Some(rhost) = host.rhost().filter(|r| !is_local(r)) {
        attempt.log(
            host,
            Level::Info,
            &format!("result=ignore: remote session from {rhost}"),
        );
        return ControlFlow::Break(Verdict::Ignore);
    }
    ControlFlow::Continue(attempt)
}

/// The user's registered public key (from the registry, never from the socket), and where it
/// was read from.
fn registered_key<D: Daemon>(
    host: &mut dyn Host,
    attempt: &Attempt,
    daemon: &D,
) -> ControlFlow<Verdict, (RegisteredKey, PathBuf)> {
    let Some(uid) = host.uid_of(&attempt.user) else {
        attempt.log(host, Level::Info, "result=ignore: no such user");
        return ControlFlow::Break(Verdict::Ignore);
    };
    let key_path = daemon.key_path(&attempt.user);
    attempt.log(
        host,
        Level::Debug,
        &format!("uid {uid}; registered key at {}", key_path.display()),
    );
    match daemon.registered_key(&attempt.user, uid) {
        Ok(key) => ControlFlow::Continue((key, key_path)),
        Err(RegistryError::NotEnrolled { .. }) => {
            attempt.log(
                host,
                Level::Info,
                "result=unavailable: no Aloha PIN enrolled",
            );
            ControlFlow::Break(Verdict::Unavailable)
        }
        Err(e) => {
            attempt.log(host, Level::Error, &format!("result=unavailable: {e}"));
            ControlFlow::Break(Verdict::Unavailable)
        }
    }
}

/// alohad's status for the user.
fn status<D: Daemon>(
    host: &mut dyn Host,
    attempt: &Attempt,
    daemon: &mut D,
) -> ControlFlow<Verdict, UserStatus> {
    let status = match daemon.status(&attempt.user) {
        Ok(Response::Status(s)) => s,
        Ok(other) => {
            attempt.log(
                host,
                Level::Error,
                &format!(
                    "result=unavailable: unexpected {} reply to a status request",
                    kind(&other)
                ),
            );
            return ControlFlow::Break(Verdict::Unavailable);
        }
        Err(CallError::NotSent(e) | CallError::Sent(e)) => {
            return ControlFlow::Break(attempt.unavailable(host, &e));
        }
    };
    attempt.log(
        host,
        Level::Debug,
        &format!(
            "alohad status: enrolled={} backend={} failed_attempts={} gate={:?}",
            status.enrolled,
            status.backend.map_or("none", |b| b.name()),
            status.failed_attempts,
            status.gate
        ),
    );
    ControlFlow::Continue(status)
}

/// Would alohad take an attempt now? If not, say why, without a prompt.
fn may_try<D: Daemon>(
    host: &mut dyn Host,
    attempt: &Attempt,
    daemon: &D,
    status: &UserStatus,
) -> ControlFlow<Verdict> {
    if !status.enrolled {
        attempt.log(
            host,
            Level::Info,
            "result=unavailable: registered key but no container (alohad)",
        );
        return ControlFlow::Break(Verdict::Unavailable);
    }
    if let Some(message) = refusal_message(
        &attempt.user,
        status.gate,
        status.failed_attempts,
        daemon.now(),
    ) {
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
    // The TPM guard refuses every TPM-backed sign-in before the PIN is checked: say so instead
    // of asking for a PIN that cannot work.
    if let (Some(BackendKind::Tpm), Some(pause)) = (status.backend, status.tpm_pause) {
        host.tell(&format!(
            "PIN sign-in is paused for every user — {}",
            tpm_pause_reason(pause, daemon.now())
        ));
        attempt.log(
            host,
            Level::Notice,
            "result=unavailable: the TPM guard pauses PIN sign-in; not prompting",
        );
        return ControlFlow::Break(Verdict::Unavailable);
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
