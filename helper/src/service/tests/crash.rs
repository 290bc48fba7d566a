//! Crash consistency: every operation that writes state is cut short at each of its write,
//! fsync, rename and removal steps in turn (the store's crash points, which stop the operation
//! there as kill -9 would), alohad is restarted on what is on disk, and the state must be the
//! old one or the new one: every file parses, no failure is lost, no guess is free, and the
//! user can still sign in with one of the PINs (or set one, if none was ever stored).

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::scripted_face::{ALICE_FACE, Shot};
use super::*;
use crate::store::crash;

/// How a step is cut short.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// The process dies there (kill -9): alohad restarts on what is on disk.
    Crash,
    /// The step fails with this errno (a full disk, a read-only file system): the operation
    /// must refuse clearly or finish, and alohad goes on.
    Fail(i32),
}

/// Runs `op` once to count its steps, then once per step on a fresh fixture prepared by
/// `setup`, cut short at that step; afterwards `check` judges the state. Returns how many
/// steps were exercised.
fn at_every_step(
    cut: Cut,
    setup: impl Fn(&Fixture),
    op: impl Fn(&Fixture) -> Result<(), Failure>,
    check: impl Fn(&Fixture, &str),
) -> usize {
    quiet_crashes();
    let counted = fixture();
    setup(&counted);
    crash::arm(None);
    let _ = op(&counted);
    let steps = crash::steps();
    assert!(steps > 0, "the operation wrote nothing");
    for at in 0..steps {
        let mut f = fixture();
        setup(&f);
        let when = match cut {
            Cut::Crash => {
                crash::arm(Some(at));
                let run = catch_unwind(AssertUnwindSafe(|| op(&f)));
                crash::arm(None);
                let what = match run {
                    Err(payload) => match payload.downcast::<crash::Crashed>() {
                        Ok(c) => c.0,
                        Err(other) => std::panic::resume_unwind(other),
                    },
                    Ok(_) => panic!("step {at} of {steps} was never reached"),
                };
                // alohad restarts on what is on disk.
                f.service = f.rebuild(&f.dir.0.clone(), Config::default(), true);
                format!("crash before step {at} of {steps} ({what})")
            }
            Cut::Fail(errno) => {
                crash::arm_error(at, errno);
                let result = op(&f);
                crash::arm(None);
                let when = format!("errno {errno} at step {at} of {steps}");
                if let Err(refusal) = result {
                    let clear = match errno {
                        libc::ENOSPC => "the disk is full",
                        _ => "read-only",
                    };
                    assert!(
                        refusal.message.contains(clear),
                        "{when}: an unclear refusal: {refusal:?}"
                    );
                }
                when
            }
        };
        every_file_parses(&f, &when);
        check(&f, &when);
    }
    steps
}

/// A simulated crash is expected: it is not printed (any other panic still is).
fn quiet_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<crash::Crashed>().is_none() {
                default(info);
            }
        }));
    });
}

/// Every operation below under each way of cutting it short.
const CUTS: [Cut; 3] = [Cut::Crash, Cut::Fail(libc::ENOSPC), Cut::Fail(libc::EROFS)];

/// Nothing alohad reads back is corrupt after a crash.
fn every_file_parses(f: &Fixture, when: &str) {
    let store = Store::open_unlocked(f.dir()).unwrap();
    store
        .load_container("alice")
        .unwrap_or_else(|e| panic!("{when}: {e}"));
    store
        .load_attempts("alice")
        .unwrap_or_else(|e| panic!("{when}: {e}"));
    store
        .load_history("alice")
        .unwrap_or_else(|e| panic!("{when}: {e}"));
    store
        .load_face("alice")
        .unwrap_or_else(|e| panic!("{when}: {e}"));
    store
        .load_face_attempts("alice")
        .unwrap_or_else(|e| panic!("{when}: {e}"));
    store
        .load_attempts_and_debt("alice")
        .unwrap_or_else(|e| panic!("{when}: {e}"));
}

/// Which of the PINs signs alice in now (trying the others counts as wrong PINs, which is
/// fine: the check is the last thing done with this fixture).
fn working_pin(f: &Fixture, pins: &[&str]) -> Option<String> {
    pins.iter().find(|p| signs_in(f, p)).map(|p| p.to_string())
}

/// alice signs in with `pin` as pam_aloha would judge it: a signature that verifies against
/// the registered public key.
fn signs_in(f: &Fixture, pin: &str) -> bool {
    let nonce = Nonce::random().unwrap();
    let Ok(Response::Signed { signature, .. }) = f.call(
        ALICE,
        Request::SignIn {
            user: "alice".into(),
            service: "test".into(),
            nonce,
            pin: Secret::new(pin),
            vault: false,
        },
    ) else {
        return false;
    };
    registry::load(f.dir(), "alice", None)
        .is_ok_and(|key| challenge::verify(&key.public_key, "alice", &nonce, &signature).is_ok())
}

fn enrolled(f: &Fixture) {
    f.set(ROOT, "alice", None, PIN).unwrap();
}

fn with_failures(n: usize) -> impl Fn(&Fixture) {
    move |f| {
        enrolled(f);
        for _ in 0..n {
            f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
        }
    }
}

#[test]
fn pin_set() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            |_| {},
            |f| f.set(ROOT, "alice", None, PIN).map(drop),
            |f, when| {
                if f.status("alice").enrolled {
                    assert_eq!(working_pin(f, &[PIN]).as_deref(), Some(PIN), "{when}");
                } else {
                    // Never stored: setting it again works (nothing half-made blocks it).
                    f.set(ROOT, "alice", None, PIN)
                        .unwrap_or_else(|e| panic!("{when}: {e:?}"));
                }
            },
        );
        eprintln!("pin set ({cut:?}): {n} steps");
    }
}

#[test]
fn a_wrong_pin() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            with_failures(1),
            |f| f.sign_in(ALICE, "alice", OTHER_PIN),
            |f, when| {
                let failures = f.status("alice").failed_attempts;
                // The key store judged the PIN only after the count was on disk: a guess the
                // store saw is always counted.
                let judged = lock(&f.seen).len() > 1;
                let want: &[u32] = if judged { &[2] } else { &[1, 2] };
                assert!(
                    want.contains(&failures),
                    "{when}: {failures} failures, judged {judged}"
                );
                assert!(working_pin(f, &[PIN]).is_some(), "{when}");
            },
        );
        eprintln!("a wrong PIN ({cut:?}): {n} steps");
    }
}

#[test]
fn a_right_pin_after_failures() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            with_failures(2),
            |f| f.sign_in(ALICE, "alice", PIN),
            |f, when| {
                // 2 (cut before the write-ahead count), 3 (counted, cut before the reset: the
                // right PIN costs a try, never the reverse) or 0 (done).
                let failures = f.status("alice").failed_attempts;
                assert!([0, 2, 3].contains(&failures), "{when}: {failures}");
            },
        );
        eprintln!("a right PIN ({cut:?}): {n} steps");
    }
}

#[test]
fn pin_change() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            enrolled,
            |f| f.change(PIN, OTHER_PIN).map(drop),
            |f, when| {
                assert!(
                    working_pin(f, &[PIN, OTHER_PIN]).is_some(),
                    "{when}: neither PIN works"
                );
            },
        );
        eprintln!("pin change ({cut:?}): {n} steps");
    }
}

#[test]
fn pin_reset() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            with_failures(2),
            |f| f.reset_to(OTHER_PIN).map(drop),
            |f, when| {
                assert!(
                    working_pin(f, &[PIN, OTHER_PIN]).is_some(),
                    "{when}: neither PIN works"
                );
            },
        );
        eprintln!("pin reset ({cut:?}): {n} steps");
    }
}

#[test]
fn admin_unlock() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            with_failures(3),
            |f| {
                f.call(
                    ROOT,
                    Request::AdminUnlock {
                        user: "alice".into(),
                    },
                )
                .map(drop)
            },
            |f, when| {
                let failures = f.status("alice").failed_attempts;
                assert!([0, 3].contains(&failures), "{when}: {failures}");
            },
        );
        eprintln!("admin unlock ({cut:?}): {n} steps");
    }
}

#[test]
fn admin_remove() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            with_failures(2),
            |f| {
                f.call(
                    ROOT,
                    Request::AdminRemove {
                        user: "alice".into(),
                    },
                )
                .map(drop)
            },
            |f, when| {
                let s = f.status("alice");
                if s.enrolled {
                    // Not removed yet: everything is still there, the count included.
                    assert_eq!(s.failed_attempts, 2, "{when}");
                    assert!(working_pin(f, &[PIN]).is_some(), "{when}");
                } else {
                    // After a restart no public key is left without its container (one left
                    // by a removal that failed part-way is harmless meanwhile: alohad answers
                    // that alice has no PIN, and pam_aloha leaves it to the password).
                    assert!(
                        !when.starts_with("crash")
                            || registry::load(f.dir(), "alice", None).is_err(),
                        "{when}: a public key without a container"
                    );
                    f.set(ROOT, "alice", None, OTHER_PIN)
                        .unwrap_or_else(|e| panic!("{when}: {e:?}"));
                }
            },
        );
        eprintln!("admin remove ({cut:?}): {n} steps");
    }
}

fn face_enrolled(f: &Fixture) {
    enrolled(f);
    f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
    f.enrol_face(ALICE, PIN).unwrap();
}

#[test]
fn face_enrolment() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            |f| {
                enrolled(f);
                f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
            },
            |f| f.enrol_face(ALICE, PIN).map(drop),
            |f, when| {
                assert!(working_pin(f, &[PIN]).is_some(), "{when}");
                if f.status("alice").face.is_some() {
                    f.face(ALICE).unwrap_or_else(|e| panic!("{when}: {e:?}"));
                }
            },
        );
        eprintln!("face enrolment ({cut:?}): {n} steps");
    }
}

#[test]
fn a_failed_face_attempt_and_face_removal() {
    for cut in CUTS {
        let n = at_every_step(
            cut,
            face_enrolled,
            |f| {
                f.cameras
                    .show(Shot::Frames(vec![super::scripted_face::BOB_FACE]));
                f.face(ALICE)
            },
            |f, when| {
                let failures = f.face_failures();
                assert!([0, 1].contains(&failures), "{when}: {failures}");
            },
        );
        eprintln!("failed face attempt ({cut:?}): {n} steps");
    }
    for cut in CUTS {
        let n = at_every_step(
            cut,
            face_enrolled,
            |f| {
                f.call(
                    ALICE,
                    Request::FaceRemove {
                        user: "alice".into(),
                        label: None,
                    },
                )
                .map(drop)
            },
            |f, when| {
                assert!(working_pin(f, &[PIN]).is_some(), "{when}");
                if f.status("alice").face.is_some() {
                    f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
                    f.face(ALICE).unwrap_or_else(|e| panic!("{when}: {e:?}"));
                }
            },
        );
        eprintln!("face removal ({cut:?}): {n} steps");
    }
}
