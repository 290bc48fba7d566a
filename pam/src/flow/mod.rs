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
//!    - Locked or waiting → say so ("use your password"), no prompt.
//! 2. `ask`: prompt `PIN:`; empty or cancelled → fall through, nothing counted.
//! 3. `prove`: our nonce + PIN to alohad.
//! 4. `judge`: the signature that comes back is verified here against the registered public
//!    key. Only a verified signature is PAM_SUCCESS. Once the PIN has been sent, anything but
//!    a verifying signature or one of alohad's refusals (garbage, silence, a reply of the
//!    wrong kind) is PAM_AUTH_ERR: whoever took the PIN did not answer as alohad does.

mod ask;
mod check;
mod judge;
mod prove;
#[cfg(test)]
mod tests;

use std::ops::ControlFlow;
use std::path::PathBuf;

use aloha::client::ClientError;
use aloha::config::ConfigError;
use aloha::protocol::Response;
use aloha::registry::RegisteredKey;

use crate::alohad::Alohad;
use crate::args::Args;
use crate::daemon::Daemon;
use crate::host::{Host, Level};

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

/// Who signs in to which service: every line logged about the attempt starts with it.
struct Attempt {
    user: String,
    service: String,
}

impl Attempt {
    /// One line `user=… service=… {what}`.
    fn log(&self, host: &mut dyn Host, level: Level, what: &str) {
        host.log(
            level,
            &format!("user={} service={} {what}", self.user, self.service),
        );
    }

    /// alohad could not be asked (or could not try): the password decides.
    fn unavailable(&self, host: &mut dyn Host, e: &ClientError) -> Verdict {
        if let ClientError::Refused(f) = e {
            // e.g. the TPM is in lockout, or the state is corrupt: the user should know.
            host.tell(&f.message);
        }
        self.log(host, Level::Notice, &format!("result=unavailable: {e}"));
        Verdict::Unavailable
    }
}

/// What the check established, for the steps after it: a local attempt by a user with a
/// registered key, and a daemon that will take one.
struct Ready<D> {
    attempt: Attempt,
    daemon: D,
    /// The key the answer is checked against.
    registered: RegisteredKey,
    /// Where `registered` was read from, for the debug log.
    key_path: PathBuf,
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
    let pin = ask::pin(host, &ready.attempt)?;
    let exchange = prove::send(host, &mut ready, pin)?;
    ControlFlow::Continue(judge::reply(host, args, &ready, exchange))
}
