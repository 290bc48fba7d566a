//! What the steps share: who the attempt is for ([`Attempt`]), what the check established for
//! the steps after it ([`Ready`]), and how the attempt ends ([`Verdict`]).

use std::path::PathBuf;

use aloha::client::ClientError;
use aloha::protocol::{Response, UserStatus};
use aloha::registry::RegisteredKey;
use aloha::untrusted::Untrusted;

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
pub(super) struct Attempt {
    pub(super) user: String,
    pub(super) service: String,
}

impl Attempt {
    /// One line `user=… service=… {what}`.
    pub(super) fn log(&self, host: &mut dyn Host, level: Level, what: &str) {
        host.log(
            level,
            &format!(
                "user={} service={} {what}",
                Untrusted(&self.user),
                Untrusted(&self.service)
            ),
        );
    }

    /// alohad could not be asked (or could not try): the password decides.
    pub(super) fn unavailable(&self, host: &mut dyn Host, e: &ClientError, now: u64) -> Verdict {
        if let ClientError::Refused(f) = e {
            // e.g. the TPM is in lockout, or the state is corrupt: the user should know.
            host.tell(&super::say::refusal(f, now));
        }
        self.log(host, Level::Notice, &format!("result=unavailable: {e}"));
        Verdict::Unavailable
    }
}

/// What the check established, for the steps after it: a local attempt by a user with a
/// registered key, and a daemon that will take one.
pub(super) struct Ready<D> {
    pub(super) attempt: Attempt,
    pub(super) daemon: D,
    /// The key the answer is checked against.
    pub(super) registered: RegisteredKey,
    /// Where `registered` was read from, for the debug log.
    pub(super) key_path: PathBuf,
    /// alohad's status for the user before anything was tried.
    pub(super) status: UserStatus,
}

/// A reply's kind, for logs (a signature is not a secret, but it is noise).
pub(super) fn kind(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "hello",
        Response::Status(_) => "status",
        Response::Done { .. } => "done",
        Response::Signed { .. } => "signed",
        Response::FaceProgress(_) => "face_progress",
        Response::FaceProfiles { .. } => "face_profiles",
        Response::Camera(_) => "camera",
        Response::Error(_) => "error",
    }
}
