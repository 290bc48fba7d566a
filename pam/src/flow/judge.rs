//! Step 4: alohad's reply → the verdict. Only a signature over our nonce that verifies against
//! the registered key is PAM_SUCCESS; alohad's refusals say what they say; anything else once
//! the PIN has been sent is PAM_AUTH_ERR.

use aloha::challenge::{self, Nonce};
use aloha::client::ClientError;
use aloha::frame::FrameError;
use aloha::protocol::{BackendKind, ErrorCode, Failure, Response};

use super::attempt::{Attempt, Ready, Verdict, kind};
use super::prove::Exchange;
use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

pub(super) fn reply<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    ready: &Ready<D>,
    exchange: Exchange,
) -> Verdict {
    let attempt = &ready.attempt;
    log_reply(host, attempt, &exchange.reply);
    match exchange.reply {
        Ok(Response::Signed {
            signature,
            backend,
            password,
        }) => signed(
            host,
            ready,
            &exchange.nonce,
            &signature,
            backend,
            password,
            "pin",
        ),
        Ok(other) => denied(
            host,
            ready,
            &format!("an unexpected {} reply", kind(&other)),
            "the PIN",
        ),
        Err(CallError::Sent(ClientError::Refused(f))) => {
            refused(host, attempt, &f, ready.daemon.now())
        }
        // Silence is what a slow alohad looks like too (Argon2id, a busy TPM): not a sign of
        // impersonation, but the attempt may have been counted, so still no success.
        Err(CallError::Sent(ClientError::Frame(FrameError::Timeout))) => {
            host.tell("Aloha did not answer in time; use your password.");
            attempt.log(
                host,
                Level::Error,
                &format!(
                    "result=denied: no answer within timeout={}s after the PIN was sent",
                    args.timeout.as_secs_f64()
                ),
            );
            Verdict::AuthErr
        }
        Err(CallError::Sent(e)) => denied(host, ready, &format!("no valid reply ({e})"), "the PIN"),
        Err(CallError::NotSent(e)) => {
            host.tell("Aloha did not answer; use your password.");
            attempt.unavailable(host, &e, ready.daemon.now())
        }
    }
}

/// The reply's kind (or why there was none), for the debug log.
fn log_reply(host: &mut dyn Host, attempt: &Attempt, reply: &Result<Response, CallError>) {
    let line = match reply {
        Ok(r) => format!("reply: {}", kind(r)),
        Err(CallError::Sent(ClientError::Refused(f))) => format!("reply: refused ({:?})", f.code),
        Err(CallError::NotSent(e) | CallError::Sent(e)) => format!("no reply: {e}"),
    };
    attempt.log(host, Level::Debug, &line);
}

/// A signature: success only if it is the registered key's, over this user and our nonce.
/// `factor` ("pin", "face") says what released the key, for the log.
fn verdict_of_signature<D: Daemon>(
    host: &mut dyn Host,
    ready: &Ready<D>,
    nonce: &Nonce,
    signature: &[u8],
    backend: BackendKind,
    factor: &str,
) -> Verdict {
    let Ready {
        attempt,
        registered,
        key_path,
        ..
    } = ready;
    let verified = challenge::verify(&registered.public_key, &attempt.user, nonce, signature)
        .or_else(|e| {
            // alohad republishes a public key that fell out of step with the user's key (a
            // PIN reset cut short by a full disk) when it loads that key — during this very
            // sign-in. The registry is as trusted the second time as the first.
            match ready.daemon.registered_key(&attempt.user, registered.uid) {
                Ok(fresh) if fresh.public_key != registered.public_key => {
                    attempt.log(
                        host,
                        Level::Debug,
                        "the registered key changed during the sign-in; verifying against the new one",
                    );
                    challenge::verify(&fresh.public_key, &attempt.user, nonce, signature)
                }
                _ => Err(e),
            }
        });
    match verified {
        Ok(()) => {
            attempt.log(
                host,
                Level::Debug,
                &format!("the signature verifies against {}", key_path.display()),
            );
            let line = match factor {
                "pin" => format!("result=success ({})", backend.name()),
                _ => format!("result=success ({factor}, {})", backend.name()),
            };
            attempt.log(host, Level::Info, &line);
            Verdict::Success
        }
        Err(e) => {
            attempt.log(
                host,
                Level::Debug,
                &format!(
                    "the signature does not verify against {}",
                    key_path.display()
                ),
            );
            denied(
                host,
                ready,
                &format!("an answer that does not verify ({e})"),
                if factor == "pin" {
                    "the PIN"
                } else {
                    "the face request"
                },
            )
        }
    }
}

/// alohad's `signed` reply, PIN or face: the verdict on the signature, and after a verified
/// one, the password from the user's vault goes to PAM_AUTHTOK, where pam_gnome_keyring (or
/// KWallet's module) later in the stack finds it and unlocks the keyring. Nothing is set for
/// anything but a verified success.
#[allow(clippy::too_many_arguments)] // the reply's fields, as it came
pub(super) fn signed<D: Daemon>(
    host: &mut dyn Host,
    ready: &Ready<D>,
    nonce: &Nonce,
    signature: &[u8],
    backend: BackendKind,
    password: Option<aloha::Secret>,
    factor: &str,
) -> Verdict {
    let verdict = verdict_of_signature(host, ready, nonce, signature, backend, factor);
    if verdict == Verdict::Success
        && let Some(password) = password
    {
        hand_over(host, &ready.attempt, &password);
    }
    verdict
}

fn hand_over(host: &mut dyn Host, attempt: &Attempt, password: &aloha::Secret) {
    match host.set_authtok(password) {
        Ok(()) => attempt.log(
            host,
            Level::Info,
            "the password vault opened: PAM_AUTHTOK is set for the keyring",
        ),
        Err(()) => attempt.log(host, Level::Error, "cannot set PAM_AUTHTOK from the vault"),
    }
}

/// One of alohad's refusals: its message says why, and its code decides the verdict.
fn refused(host: &mut dyn Host, attempt: &Attempt, f: &Failure, now: u64) -> Verdict {
    host.tell(&super::say::refusal(f, now));
    let (verdict, what) = match f.code {
        ErrorCode::WrongPin if f.left_before_lock == Some(0) => {
            (Verdict::MaxTries, "wrong_pin_now_locked")
        }
        ErrorCode::WrongPin => (Verdict::AuthErr, "wrong_pin"),
        ErrorCode::Delayed => (Verdict::AuthErr, "waiting"),
        ErrorCode::Locked => (Verdict::MaxTries, "locked"),
        // alohad could not try (TPM lockout, key store down, busy...): its message says why,
        // and the password decides.
        _ => (Verdict::Unavailable, "unavailable"),
    };
    attempt.log(
        host,
        Level::Notice,
        &format!("result={what} ({:?})", f.code),
    );
    verdict
}

/// After `sent` (the PIN, the face request) went out, an answer alohad would not give:
/// whoever took it is not alohad, or alohad is broken.
pub(super) fn denied<D: Daemon>(
    host: &mut dyn Host,
    ready: &Ready<D>,
    why: &str,
    sent: &str,
) -> Verdict {
    host.tell("Aloha's answer was not valid; use your password.");
    ready.attempt.log(
        host,
        Level::Error,
        &format!(
            "result=denied: {why} from {} after {sent} was sent; is something impersonating \
             alohad?",
            ready.daemon.socket().display()
        ),
    );
    Verdict::AuthErr
}
