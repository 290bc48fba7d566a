//! The face step in the whole flow: a verified face ends it; everything else goes on to the PIN
//! (or, with `nopin`, to the next module); an answer that does not verify ends it without ever
//! sending the PIN to whoever gave it.

use crate::args::Args;
use crate::flow::{Verdict, authenticate_with};
use crate::scripted::{Face, FaceReply, ScriptedDaemon, ScriptedHost, Status};

struct Run {
    verdict: Verdict,
    host: ScriptedHost,
    daemon: ScriptedDaemon,
}

fn run(face: Face, status: Status, args: &[&str]) -> Run {
    let mut host = ScriptedHost::new("sudo", None);
    let mut daemon = ScriptedDaemon {
        face,
        status,
        ..ScriptedDaemon::OPEN
    };
    let verdict = authenticate_with(&mut host, &Args::parse(args.iter().copied()), |_| {
        Ok(&mut daemon)
    });
    Run {
        verdict,
        host,
        daemon,
    }
}

const LOOKING: &str = "Looking for your face…";

#[test]
fn a_verified_face_signs_in_without_a_prompt() {
    let r = run(Face::Answers(FaceReply::Signed), Status::Open, &[]);
    assert_eq!(r.verdict, Verdict::Success);
    assert_eq!((r.host.asked, r.daemon.sign_ins), (0, 0));
    assert_eq!(r.daemon.face_sign_ins, 1);
    assert_eq!(r.host.noticed, [LOOKING]);
    assert!(
        r.host.logged().contains("result=success (face, TPM 2.0)"),
        "{:?}",
        r.host.logs
    );
    // The PIN's own locks do not stop the face.
    let r = run(Face::Answers(FaceReply::Signed), Status::Locked, &[]);
    assert_eq!(r.verdict, Verdict::Success);
}

#[test]
fn a_missed_face_goes_on_to_the_pin() {
    for (reply, told) in [
        (FaceReply::NoMatch, true),
        (FaceReply::NotLive, true),
        (FaceReply::NotSeen, false),
        (FaceReply::Silence, false),
        (FaceReply::Down, false),
    ] {
        let r = run(Face::Answers(reply), Status::Open, &[]);
        assert_eq!(r.verdict, Verdict::Success, "{reply:?}: the PIN signs in");
        assert_eq!((r.host.asked, r.daemon.sign_ins), (1, 1), "{reply:?}");
        assert_eq!(r.daemon.face_sign_ins, 1);
        assert_eq!(
            r.host.told.len(),
            usize::from(told),
            "{reply:?}: {:?}",
            r.host.told
        );
    }
}

#[test]
fn an_answer_that_does_not_verify_ends_it_before_the_pin() {
    for reply in [FaceReply::SignedByAnotherKey, FaceReply::Garbage] {
        let r = run(Face::Answers(reply), Status::Open, &[]);
        assert_eq!(r.verdict, Verdict::AuthErr, "{reply:?}");
        assert_eq!(
            (r.host.asked, r.daemon.sign_ins),
            (0, 0),
            "{reply:?}: no PIN sent"
        );
        assert!(
            r.host.logged().contains("after the face request was sent"),
            "{:?}",
            r.host.logs
        );
    }
}

#[test]
fn no_face_attempt_without_a_usable_face_or_with_noface() {
    for (face, args) in [
        (Face::None, &[][..]),
        (Face::NoCamera, &[][..]),
        (Face::Paused, &[][..]),
        (Face::Answers(FaceReply::Signed), &["noface"][..]),
    ] {
        let r = run(face, Status::Open, args);
        assert_eq!(r.daemon.face_sign_ins, 0, "{face:?} {args:?}");
        assert!(
            r.host.noticed.is_empty(),
            "{face:?}: the user is not told about a camera"
        );
        assert_eq!(r.verdict, Verdict::Success, "{face:?}: the PIN");
        assert_eq!(r.host.asked, 1);
    }
    let r = run(Face::Paused, Status::Open, &[]);
    assert!(
        r.host.told[0].contains("Face sign-in is off"),
        "{:?}",
        r.host.told
    );
}

#[test]
fn nopin_leaves_it_to_the_next_module() {
    let r = run(Face::Answers(FaceReply::NoMatch), Status::Open, &["nopin"]);
    assert_eq!(r.verdict, Verdict::AuthErr);
    assert_eq!((r.host.asked, r.daemon.sign_ins), (0, 0));
    let r = run(Face::None, Status::Open, &["nopin"]);
    assert_eq!(r.verdict, Verdict::Unavailable);
    assert_eq!(r.host.asked, 0);
    let r = run(Face::Answers(FaceReply::Signed), Status::Open, &["nopin"]);
    assert_eq!(r.verdict, Verdict::Success);
}
