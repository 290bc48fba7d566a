//! What pam_aloha does, as ordinary Rust behind two traits: [`Host`] (the PAM handle in
//! production) and [`Daemon`] (config, key registry and alohad in production; see
//! [`crate::alohad`]). Tests script both. No policy lives here: alohad decides; this side
//! proves.
//!
//! [`authenticate_with`] runs these steps in order, each in a module of its own; a step hands
//! the next one its input, or ends the attempt with a [`Verdict`]:
//!
//! 1. `check`: is there an attempt to make?
//!    - Remote sessions (non-local PAM_RHOST, or sshd) → PAM_IGNORE: a network attacker must
//!      not burn anyone's attempts.
//!    - No registered key, daemon unreachable, config unreadable → fall through to the
//!      password (PAM_AUTHINFO_UNAVAIL, fprintd's convention); an unknown user → PAM_IGNORE.
//!      Either way with one log line saying why.
//! 2. `face`: with a face enrolled and a camera, "Looking for your face…" and up to
//!    `face_timeout=` of alohad looking; a signature that verifies → PAM_SUCCESS; anything
//!    else → on to the PIN (with `nopin`: to the next module). Never a prompt.
//! 3. `ask`: PIN locked or waiting, TPM guard pausing → say so ("use your password"), no
//!    prompt; otherwise prompt `PIN:`; empty or cancelled → fall through, nothing counted.
//! 4. `prove`: our nonce + PIN to alohad.
//! 5. `judge`: the signature that comes back is verified here against the registered public
//!    key. Only a verified signature is PAM_SUCCESS. Once the PIN has been sent, anything but
//!    a verifying signature or one of alohad's refusals (garbage, silence, a reply of the
//!    wrong kind) is PAM_AUTH_ERR: whoever took the PIN did not answer as alohad does.

mod ask;
mod attempt;
mod check;
mod face;
mod judge;
mod prove;
mod resume;
mod say;
#[cfg(test)]
mod tests;

use std::ops::ControlFlow;

use aloha::config::ConfigError;

use crate::alohad::Alohad;
use crate::args::Args;
use crate::daemon::Daemon;
use crate::host::{Host, Level};

pub use attempt::Verdict;
pub use resume::{after_other_module_with, keep_password_with};

/// After another module signed the user in (pam_sm_setcred in a root application): a face
/// paused after failed attempts is on again.
pub fn after_other_module(host: &mut dyn Host, args: &Args) {
    after_other_module_with(host, args, Alohad::open);
}

/// The `keep_password` line after the password module (root applications only): the user's
/// password vault, if they keep one, gets the password the stack accepted.
pub fn keep_password(host: &mut dyn Host, args: &Args) {
    keep_password_with(host, args, Alohad::open);
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
    match steps(host, args, open) {
        ControlFlow::Break(early) => early,
        ControlFlow::Continue(judged) => judged,
    }
}

/// The steps in order; `?` ends the attempt early with a step's verdict.
fn steps<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) -> ControlFlow<Verdict, Verdict> {
    let mut ready = check::run(host, args, open)?;
    let tried = face::attempt(host, args, &mut ready)?;
    if !args.pin {
        ready.attempt.log(
            host,
            Level::Info,
            "result=no_pin: nopin, leaving it to the next module",
        );
        return ControlFlow::Break(tried.without_pin());
    }
    ask::gate(host, args, &ready)?;
    let pin = ask::pin(host, &ready.attempt)?;
    let exchange = prove::send(host, &mut ready, pin)?;
    ControlFlow::Continue(judge::reply(host, args, &ready, exchange))
}
