//! Step 2: the face, when the user has one enrolled and alohad has a camera for it. The user is
//! told "Looking for your face…" (even under PAM_SILENT: a camera looking at someone is
//! something they must know), alohad looks for at most `face_timeout=`, and a signature over
//! our nonce that verifies against the registered key ends the attempt with success. Anything
//! else goes on to the PIN prompt, so the password is never more than `face_timeout=` away.
//! The face path never prompts.

use std::ops::ControlFlow;

use aloha::client::ClientError;
use aloha::frame::FrameError;
use aloha::protocol::{ErrorCode, Response};

use super::attempt::{Ready, Verdict, kind};
use super::judge;
use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

#[cfg(test)]
mod tests;

/// What the PIN step follows, when a face sign-in did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tried {
    /// No face attempt ran (none enrolled, no camera, `noface`, face paused).
    No,
    /// A face attempt ran and failed.
    Failed,
}

impl Tried {
    /// The verdict when no PIN follows (`nopin`).
    pub(super) fn without_pin(self) -> Verdict {
        match self {
            Tried::No => Verdict::Unavailable,
            Tried::Failed => Verdict::AuthErr,
        }
    }
}

pub(super) fn attempt<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    ready: &mut Ready<D>,
) -> ControlFlow<Verdict, Tried> {
    let Some(face) = &ready.status.face else {
        return ControlFlow::Continue(Tried::No);
    };
    let why_not = if !args.face {
        Some("off (noface)".to_string())
    } else if face.paused {
        host.tell(&super::say::face_paused(face.failures));
        Some("paused after failed attempts".to_string())
    } else if !face.usable {
        Some(format!("not usable now ({})", face.camera))
    } else {
        None
    };
    if let Some(why) = why_not {
        ready
            .attempt
            .log(host, Level::Debug, &format!("face sign-in {why}"));
        return ControlFlow::Continue(Tried::No);
    }
    let nonce = match ready.daemon.nonce() {
        Ok(n) => n,
        Err(e) => {
            ready
                .attempt
                .log(host, Level::Error, &format!("face: no nonce: {e}"));
            return ControlFlow::Continue(Tried::No);
        }
    };
    host.notice("Looking for your face…");
    ready.attempt.log(
        host,
        Level::Debug,
        &format!(
            "asking alohad for a face sign-in ({}s)",
            args.face_timeout.as_secs_f64()
        ),
    );
    let Ready {
        attempt, daemon, ..
    } = ready;
    let vault = ready.status.vault.sealed_at.is_some();
    let reply = daemon.face_sign_in(
        &attempt.user,
        &attempt.service,
        nonce,
        args.face_timeout,
        vault,
    );
    match reply {
        Ok(Response::Signed {
            signature,
            backend,
            password,
        }) => ControlFlow::Break(judge::signed(
            host, ready, &nonce, &signature, backend, password, "face",
        )),
        Ok(other) => ControlFlow::Break(judge::denied(
            host,
            ready,
            &format!("an unexpected {} reply", kind(&other)),
            "the face request",
        )),
        Err(CallError::Sent(ClientError::Refused(f))) => {
            let (tried, level) = match f.code {
                ErrorCode::FaceNoMatch | ErrorCode::FaceNotLive => {
                    host.tell(&super::say::refusal(&f, ready.daemon.now()));
                    (Tried::Failed, Level::Notice)
                }
                ErrorCode::FaceLocked => {
                    host.tell(&super::say::refusal(&f, ready.daemon.now()));
                    (Tried::No, Level::Notice)
                }
                _ => (Tried::No, Level::Info),
            };
            ready.attempt.log(
                host,
                level,
                &format!("face: {:?}, going on to the PIN", f.code),
            );
            ControlFlow::Continue(tried)
        }
        Err(CallError::Sent(ClientError::Frame(FrameError::Timeout))) => {
            // The attempt may have been counted; alohad is slow, not necessarily forged.
            ready.attempt.log(
                host,
                Level::Error,
                &format!(
                    "face: no answer within face_timeout={}s and its margin",
                    args.face_timeout.as_secs_f64()
                ),
            );
            ControlFlow::Continue(Tried::Failed)
        }
        Err(CallError::Sent(e)) => ControlFlow::Break(judge::denied(
            host,
            ready,
            &format!("no valid reply ({e})"),
            "the face request",
        )),
        Err(CallError::NotSent(e)) => {
            ready.attempt.log(
                host,
                Level::Info,
                &format!("face: alohad not reached ({e})"),
            );
            ControlFlow::Continue(Tried::No)
        }
    }
}
