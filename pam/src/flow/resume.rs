//! After another module (the password) signed the user in. pam_sm_setcred runs in the root
//! PAM applications (sudo, su, login, the greeters) only after a successful authentication,
//! so when it finds that pam_aloha did not do it, it tells alohad: a face paused after failed
//! attempts is on again, as after a PIN sign-in (Windows Hello does the same). alohad believes
//! only root; a screen locker running as the user is not asked to.

use aloha::config::ConfigError;
use aloha::protocol::Response;
use aloha::untrusted::Untrusted;

use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

/// Tell alohad that `user` signed in by another module. Never fails the stack: the outcome is
/// logged (at debug level unless the face was paused).
pub fn resume_face<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) {
    if !args.face {
        return;
    }
    let Some(user) = host.user() else {
        return;
    };
    let mut daemon = match open(args) {
        Ok(d) => d,
        Err(e) => {
            host.log(Level::Debug, &format!("setcred: config: {e}"));
            return;
        }
    };
    // Users without a registered key have nothing to resume: no connection for them.
    let registered = host
        .uid_of(&user)
        .is_some_and(|uid| daemon.registered_key(&user, uid).is_ok());
    if !registered {
        return;
    }
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
    match daemon.face_resume(&user) {
        Ok(Response::Done { message }) => {
            host.log(
                Level::Notice,
                &format!("user={} setcred: {message}", Untrusted(&user)),
            );
        }
        Ok(_) => host.log(
            Level::Error,
            &format!("user={} setcred: unexpected reply", Untrusted(&user)),
        ),
        Err(CallError::NotSent(e) | CallError::Sent(e)) => host.log(
            Level::Notice,
            &format!(
                "user={} setcred: face sign-in stays paused: {e}",
                Untrusted(&user)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::resume_face;
    use crate::args::Args;
    use crate::scripted::{Face, FaceReply, Reply, ScriptedDaemon, ScriptedHost};

    fn run(daemon: &mut ScriptedDaemon, args: &[&str]) -> ScriptedHost {
        let mut host = ScriptedHost::new("sudo", None);
        resume_face(&mut host, &Args::parse(args.iter().copied()), |_| {
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
