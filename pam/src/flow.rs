//! What pam_aloha does, as ordinary Rust behind two traits: [`Host`] (the PAM handle in
//! production) and [`Daemon`] (config, key registry and alohad in production; see
//! [`crate::alohad`]). Tests script both. No policy lives here: alohad decides; this side
//! proves.
//!
//! 1. Remote sessions (non-local PAM_RHOST, or sshd) → PAM_IGNORE: a network attacker must not
//!    burn anyone's attempts.
//! 2. No registered key, daemon unreachable, config unreadable → fall through to the password
//!    (PAM_AUTHINFO_UNAVAIL, fprintd's convention); an unknown user → PAM_IGNORE. Either way
//!    with one log line saying why.
//! 3. Locked or waiting → say so ("use your password"), no prompt.
//! 4. Prompt `PIN:`; empty or cancelled → fall through, nothing counted.
//! 5. Our nonce + PIN to alohad; the signature that comes back is verified here against the
//!    registered public key. Only a verified signature is PAM_SUCCESS. Once the PIN has been
//!    sent, anything but a verifying signature or one of alohad's refusals (garbage, silence,
//!    a reply of the wrong kind) is PAM_AUTH_ERR: whoever took the PIN did not answer as
//!    alohad does.

use std::time::Duration;

use aloha::challenge;
use aloha::client::ClientError;
use aloha::config::ConfigError;
use aloha::frame::FrameError;
use aloha::lockout::{Gate, refusal_message, tpm_pause_reason};
use aloha::protocol::{BackendKind, ErrorCode, Response};
use aloha::registry::RegistryError;

use crate::alohad::Alohad;
use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

#[cfg(test)]
mod tests;

/// How a sign-in attempt ends, one per PAM return code this module uses (lib.rs maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// A wrong PIN, a forged or broken answer, a wait in force.
    AuthErr,
    /// The PIN is locked.
    MaxTries,
    /// Nothing to sign in with here (not enrolled, daemon down): the password decides.
    Unavailable,
    /// Not our business (remote session, unknown user, the user skipped the PIN).
    Ignore,
}

/// The least of `timeout=` that must be left for the sign-in before the PIN is asked for:
/// 2 s, or half of `timeout=` if that is shorter. With less, Argon2id or the TPM could still be
/// working when the time runs out, after the PIN was sent — a counted attempt that fails.
pub fn min_sign_in_time(timeout: Duration) -> Duration {
    Duration::from_secs(2).min(timeout / 2)
}

/// Is this PAM_RHOST the machine itself?
pub fn is_local(rhost: &str) -> bool {
    let host = rhost.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "localhost" || host == "::1" || host.starts_with("127.") {
        return true;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .is_some_and(|own| own.eq_ignore_ascii_case(host))
}

/// A reply's kind, for logs (a signature is not a secret, but it is noise).
fn kind(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "hello",
        Response::Status(_) => "status",
        Response::Done { .. } => "done",
        Response::Signed { .. } => "signed",
        Response::Error(_) => "error",
    }
}

/// One sign-in attempt against the real config, registry and alohad.
pub fn authenticate(host: &mut dyn Host, args: &Args) -> Verdict {
    authenticate_with(host, args, Alohad::open)
}

/// One sign-in attempt; `open` makes the daemon side once the session is known to be local.
/// Never panics; every way out is logged once (and each step at debug level).
pub fn authenticate_with<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) -> Verdict {
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
        return Verdict::Ignore;
    };
    let says = |host: &mut dyn Host, level: Level, why: &str| {
        host.log(level, &format!("user={user} service={service} {why}"));
    };

    if service == "sshd" {
        says(host, Level::Info, "result=ignore: remote session (sshd)");
        return Verdict::Ignore;
    }
    if let Some(rhost) = host.rhost().filter(|r| !is_local(r)) {
        says(
            host,
            Level::Info,
            &format!("result=ignore: remote session from {rhost}"),
        );
        return Verdict::Ignore;
    }

    let mut aloha = match open(args) {
        Ok(a) => a,
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Verdict::Unavailable;
        }
    };
    says(host, Level::Debug, &format!("using {}", aloha.describe()));

    let Some(uid) = host.uid_of(&user) else {
        says(host, Level::Info, "result=ignore: no such user");
        return Verdict::Ignore;
    };
    let key_path = aloha.key_path(&user);
    says(
        host,
        Level::Debug,
        &format!("uid {uid}; registered key at {}", key_path.display()),
    );
    let registered = match aloha.registered_key(&user, uid) {
        Ok(k) => k,
        Err(RegistryError::NotEnrolled { .. }) => {
            says(
                host,
                Level::Info,
                "result=unavailable: no Aloha PIN enrolled",
            );
            return Verdict::Unavailable;
        }
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Verdict::Unavailable;
        }
    };

    // Before asking for a PIN: is an attempt possible at all? Nothing secret is sent yet, so
    // any failure here falls through.
    let status = match aloha.status(&user) {
        Ok(Response::Status(s)) => s,
        Ok(other) => {
            says(
                host,
                Level::Error,
                &format!(
                    "result=unavailable: unexpected {} reply to a status request",
                    kind(&other)
                ),
            );
            return Verdict::Unavailable;
        }
        Err(CallError::NotSent(e) | CallError::Sent(e)) => {
            return unavailable(host, &user, &service, &e);
        }
    };
    says(
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
    if !status.enrolled {
        says(
            host,
            Level::Info,
            "result=unavailable: registered key but no container (alohad)",
        );
        return Verdict::Unavailable;
    }
    if let Some(message) = refusal_message(&user, status.gate, status.failed_attempts, aloha.now())
    {
        host.tell(&message);
        let (verdict, what) = match status.gate {
            Gate::Locked => (Verdict::MaxTries, "locked"),
            _ => (Verdict::AuthErr, "waiting"),
        };
        says(
            host,
            Level::Notice,
            &format!("result={what}: not prompting"),
        );
        return verdict;
    }

    // The TPM guard refuses every TPM-backed sign-in before the PIN is checked: say so instead
    // of asking for a PIN that cannot work.
    if let (Some(BackendKind::Tpm), Some(pause)) = (status.backend, status.tpm_pause) {
        host.tell(&format!(
            "PIN sign-in is paused for every user — {}",
            tpm_pause_reason(pause, aloha.now())
        ));
        says(
            host,
            Level::Notice,
            "result=unavailable: the TPM guard pauses PIN sign-in; not prompting",
        );
        return Verdict::Unavailable;
    }

    let left = aloha.time_left();
    if left < min_sign_in_time(args.timeout) {
        says(
            host,
            Level::Notice,
            &format!(
                "result=unavailable: only {:.1}s of timeout={}s left after the status check, \
                 too little for a sign-in; not prompting",
                left.as_secs_f64(),
                args.timeout.as_secs_f64()
            ),
        );
        return Verdict::Unavailable;
    }

    says(host, Level::Debug, "asking for the PIN");
    let pin = match host.ask_secret("PIN: ") {
        Ok(pin) if !pin.is_empty() => pin,
        Ok(_) => {
            says(
                host,
                Level::Info,
                "result=ignore: empty PIN, falling through to the password",
            );
            return Verdict::Ignore;
        }
        Err(()) => {
            says(
                host,
                Level::Info,
                "result=ignore: PIN prompt cancelled or failed",
            );
            return Verdict::Ignore;
        }
    };

    let nonce = match aloha.nonce() {
        Ok(n) => n,
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Verdict::Unavailable;
        }
    };
    says(
        host,
        Level::Debug,
        "sending the nonce and the PIN to alohad",
    );
    let reply = aloha.sign_in(&user, &service, nonce, pin);
    match &reply {
        Ok(r) => says(host, Level::Debug, &format!("reply: {}", kind(r))),
        Err(CallError::Sent(ClientError::Refused(f))) => says(
            host,
            Level::Debug,
            &format!("reply: refused ({:?})", f.code),
        ),
        Err(CallError::NotSent(e) | CallError::Sent(e)) => {
            says(host, Level::Debug, &format!("no reply: {e}"))
        }
    }
    let socket = aloha.socket().display().to_string();
    let denied = |host: &mut dyn Host, why: &str| {
        host.tell("Aloha's answer was not valid; use your password.");
        host.log(
            Level::Error,
            &format!(
                "user={user} service={service} result=denied: {why} from {socket} after the PIN \
                 was sent; is something impersonating alohad?"
            ),
        );
        Verdict::AuthErr
    };
    match reply {
        Ok(Response::Signed { signature, backend }) => {
            match challenge::verify(&registered.public_key, &user, &nonce, &signature) {
                Ok(()) => {
                    says(
                        host,
                        Level::Debug,
                        &format!("the signature verifies against {}", key_path.display()),
                    );
                    says(
                        host,
                        Level::Info,
                        &format!("result=success ({})", backend.name()),
                    );
                    Verdict::Success
                }
                Err(e) => {
                    says(
                        host,
                        Level::Debug,
                        &format!(
                            "the signature does not verify against {}",
                            key_path.display()
                        ),
                    );
                    denied(host, &format!("an answer that does not verify ({e})"))
                }
            }
        }
        Ok(other) => denied(host, &format!("an unexpected {} reply", kind(&other))),
        Err(CallError::Sent(ClientError::Refused(f))) => {
            host.tell(&f.message);
            let (verdict, what) = match f.code {
                ErrorCode::WrongPin if f.left_before_lock == Some(0) => {
                    (Verdict::MaxTries, "wrong_pin_now_locked")
                }
                ErrorCode::WrongPin => (Verdict::AuthErr, "wrong_pin"),
                ErrorCode::Delayed => (Verdict::AuthErr, "waiting"),
                ErrorCode::Locked => (Verdict::MaxTries, "locked"),
                // alohad could not try (TPM lockout, key store down, busy...): its message
                // says why, and the password decides.
                _ => (Verdict::Unavailable, "unavailable"),
            };
            says(
                host,
                Level::Notice,
                &format!("result={what} ({:?})", f.code),
            );
            verdict
        }
        // Silence is what a slow alohad looks like too (Argon2id, a busy TPM): not a sign of
        // impersonation, but the attempt may have been counted, so still no success.
        Err(CallError::Sent(ClientError::Frame(FrameError::Timeout))) => {
            host.tell("Aloha did not answer in time; use your password.");
            host.log(
                Level::Error,
                &format!(
                    "user={user} service={service} result=denied: no answer within timeout={}s \
                     after the PIN was sent",
                    args.timeout.as_secs_f64()
                ),
            );
            Verdict::AuthErr
        }
        Err(CallError::Sent(e)) => denied(host, &format!("no valid reply ({e})")),
        Err(CallError::NotSent(e)) => {
            host.tell("Aloha did not answer; use your password.");
            unavailable(host, &user, &service, &e)
        }
    }
}

fn unavailable(host: &mut dyn Host, user: &str, service: &str, e: &ClientError) -> Verdict {
    if let ClientError::Refused(f) = e {
        // e.g. the TPM is in lockout, or the state is corrupt: the user should know.
        host.tell(&f.message);
    }
    host.log(
        Level::Notice,
        &format!("user={user} service={service} result=unavailable: {e}"),
    );
    Verdict::Unavailable
}
