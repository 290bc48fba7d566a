//! After another module (the password) signed the user in. pam_sm_setcred runs in the root
//! PAM applications (sudo, su, login, the greeters) only after a successful authentication,
//! so when it finds that pam_aloha did not do it, it tells alohad two things: a face paused
//! after failed attempts is on again, as after a PIN sign-in (Windows Hello does the same); and,
//! for a user who keeps a password vault, the password the stack just accepted (PAM_AUTHTOK)
//! is sealed again, so a password changed elsewhere is picked up at the next password sign-in.
//! alohad believes only root; a screen locker running as the user is not asked to.

use aloha::config::ConfigError;
use aloha::protocol::Response;
use aloha::untrusted::Untrusted;

use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

/// Tell alohad that `user` signed in by another module. Never fails the stack: the outcome is
/// logged (at debug level unless the face was paused).
pub fn after_other_module_with<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) {
    if !args.face {
        return;
    }
    let Some((user, mut daemon)) = registered_user(host, args, open) else {
        return;
    };
    // Only a paused face needs it: one status request, and a second only then.
    let paused = matches!(
        daemon.status(&user),
        Ok(Response::Status(s)) if s.face.as_ref().is_some_and(|f| f.paused)
    );
    if !paused {
        host.log(
            Level::Debug,
            &format!("user={} setcred: face not paused", Untrusted(&user)),
        );
        return;
    }
    say(
        host,
        &user,
        "face sign-in stays paused",
        daemon.face_resume(&user),
    );
}

/// The `keep_password` line, after the password module in the auth stack: a user who keeps a
/// password vault gets the password the stack just accepted (PAM_AUTHTOK) sealed again, so a
/// password changed elsewhere is picked up at the next password sign-in. Never fails the
/// stack.
pub fn keep_password_with<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) {
    let Some(password) = host.authtok().filter(|p| !p.is_empty()) else {
        return;
    };
    let Some((user, mut daemon)) = registered_user(host, args, open) else {
        return;
    };
    let keeps = matches!(
        daemon.status(&user),
        Ok(Response::Status(s)) if s.vault.sealed_at.is_some()
    );
    if keeps {
        say(
            host,
            &user,
            "the password vault keeps the old password",
            daemon.vault_capture(&user, password),
        );
    }
}

/// The user and the daemon side, for a user with a registered key (no connection for others).
fn registered_user<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) -> Option<(String, D)> {
    let user = host.user()?;
    let daemon = match open(args) {
        Ok(d) => d,
        Err(e) => {
            host.log(Level::Debug, &format!("setcred: config: {e}"));
            return None;
        }
    };
    let registered = host
        .uid_of(&user)
        .is_some_and(|uid| daemon.registered_key(&user, uid).is_ok());
    registered.then_some((user, daemon))
}

/// Log alohad's answer to one of setcred's requests; `failed` says what a failure means.
fn say(host: &mut dyn Host, user: &str, failed: &str, reply: Result<Response, CallError>) {
    match reply {
        Ok(Response::Done { message }) => {
            host.log(
                Level::Notice,
                &format!("user={} setcred: {message}", Untrusted(user)),
            );
        }
        Ok(_) => host.log(
            Level::Error,
            &format!("user={} setcred: unexpected reply", Untrusted(user)),
        ),
        Err(CallError::NotSent(e) | CallError::Sent(e)) => host.log(
            Level::Notice,
            &format!("user={} setcred: {failed}: {e}", Untrusted(user)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{after_other_module_with, keep_password_with};
    use crate::args::Args;
    use crate::scripted::{Face, FaceReply, Reply, ScriptedDaemon, ScriptedHost};

    fn run(daemon: &mut ScriptedDaemon, args: &[&str]) -> ScriptedHost {
        let mut host = ScriptedHost::new("sudo", None);
        after_other_module_with(&mut host, &Args::parse(args.iter().copied()), |_| {
            Ok(&mut *daemon)
        });
        host
    }

    #[test]
    fn a_paused_face_is_resumed_and_nothing_else_is_asked() {
        let mut paused = ScriptedDaemon {
            face: Face::Paused,
            ..ScriptedDaemon::OPEN
        };
        let host = run(&mut paused, &[]);
        assert_eq!(paused.face_resumes, 1);
        assert!(host.logged().contains("on again"), "{:?}", host.logs);
        // Nothing is shown: pam_setcred is no conversation.
        assert!(host.told.is_empty() && host.noticed.is_empty());

        for mut d in [
            ScriptedDaemon {
                face: Face::Answers(FaceReply::Signed),
                ..ScriptedDaemon::OPEN
            },
            ScriptedDaemon::OPEN,
            ScriptedDaemon {
                face: Face::Paused,
                enrolled: false,
                ..ScriptedDaemon::OPEN
            },
        ] {
            run(&mut d, &[]);
            assert_eq!(d.face_resumes, 0, "{d:?}");
        }
        let mut off = ScriptedDaemon {
            face: Face::Paused,
            ..ScriptedDaemon::OPEN
        };
        run(&mut off, &["noface"]);
        assert_eq!(off.face_resumes, 0);
    }

    #[test]
    fn a_kept_vault_gets_the_password_the_stack_accepted() {
        let run_with = |daemon: &mut ScriptedDaemon, authtok: Option<&str>| {
            let mut host = ScriptedHost::new("sudo", None);
            host.authtok = authtok.map(Into::into);
            keep_password_with(&mut host, &Args::parse(["keep_password"]), |_| {
                Ok(&mut *daemon)
            });
            host
        };
        let mut keeps = ScriptedDaemon {
            vault: true,
            ..ScriptedDaemon::OPEN
        };
        let host = run_with(&mut keeps, Some("new password 8"));
        assert_eq!(keeps.captured, ["new password 8"]);
        assert!(
            host.logged().contains("holds the password"),
            "{:?}",
            host.logs
        );
        assert!(!host.logged().contains("new password 8"));
        // Nothing to keep: no vault, no password in the handle, an empty one.
        let mut none = ScriptedDaemon::OPEN;
        run_with(&mut none, Some("new password 8"));
        assert!(none.captured.is_empty());
        let mut keeps = ScriptedDaemon {
            vault: true,
            ..ScriptedDaemon::OPEN
        };
        run_with(&mut keeps, None);
        run_with(&mut keeps, Some(""));
        assert!(keeps.captured.is_empty());
    }

    #[test]
    fn alohad_down_is_logged_and_nothing_fails() {
        let mut down = ScriptedDaemon {
            face: Face::Paused,
            reply: Reply::Down,
            ..ScriptedDaemon::OPEN
        };
        let host = run(&mut down, &[]);
        assert!(host.logged().contains("stays paused"), "{:?}", host.logs);
    }
}
