//! Step 1: is there an attempt to make? A local session, a known user with a registered key and
//! a key container in alohad. Nothing secret is sent yet, so every way out here falls through
//! to the password. Whether a PIN may be asked for now is the PIN step's question (`ask`).

use std::ops::ControlFlow;
use std::path::PathBuf;

use aloha::config::ConfigError;
use aloha::protocol::{Response, UserStatus};
use aloha::registry::{RegisteredKey, RegistryError};
use aloha::untrusted::Untrusted;

use super::attempt::{Attempt, Ready, Verdict, kind};
use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

#[cfg(test)]
mod tests;

/// Ready to try the face or ask for the PIN, or the verdict that ends the attempt first.
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
    if !status.enrolled {
        attempt.log(
            host,
            Level::Info,
            "result=unavailable: registered key but no container (alohad)",
        );
        return ControlFlow::Break(Verdict::Unavailable);
    }
    ControlFlow::Continue(Ready {
        attempt,
        daemon,
        registered,
        key_path,
        status,
    })
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
        &format!(
            "service={} arguments: {}",
            Untrusted(&service),
            args.describe()
        ),
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
            return ControlFlow::Break(attempt.unavailable(host, &e, daemon.now()));
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
