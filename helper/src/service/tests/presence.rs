//! An application's presence question in the service: answered by the PIN or the face with a
//! signature over the question (never over a sign-in), counted like a sign-in, only for the
//! user themselves (or root, which aloha-presence is).

use aloha::presence::Ask;
use aloha::protocol::Gesture;

use super::scripted_face::{ALICE_FACE, BOB_FACE, Shot};
use super::*;

fn ask() -> Ask {
    Ask::new("Unlock the password database", vec![9u8; 32]).unwrap()
}

impl Fixture {
    fn presence(&self, caller: Caller, user: &str, gesture: Gesture) -> Result<Vec<u8>, Failure> {
        match self.call(
            caller,
            Request::Presence {
                user: user.into(),
                ask: ask(),
                gesture,
            },
        )? {
            Response::Signed {
                signature,
                password,
                ..
            } => {
                assert!(password.is_none(), "an application never gets the vault");
                Ok(signature)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn pin(p: &str) -> Gesture {
    Gesture::Pin {
        pin: Secret::new(p),
    }
}

#[test]
fn the_pin_answers_with_a_signature_over_the_question_only() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let key = registry::load(f.dir(), "alice", None).unwrap();
    let signature = f.presence(ROOT, "alice", pin(PIN)).unwrap();
    ask().verify(&key.public_key, "alice", &signature).unwrap();
    // Not a sign-in: no nonce of any sign-in verifies with it, nor another user's question.
    assert!(ask().verify(&key.public_key, "bob", &signature).is_err());
    let other = Ask::new("Something else", vec![9u8; 32]).unwrap();
    assert!(other.verify(&key.public_key, "alice", &signature).is_err());
    // The user may ask for themselves (the PIN proves them either way).
    f.presence(ALICE, "alice", pin(PIN)).unwrap();
}

#[test]
fn wrong_pins_count_as_at_sign_in_and_lock_both() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let e = f.presence(ROOT, "alice", pin(OTHER_PIN)).unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    assert_eq!(f.status("alice").failed_attempts, 1);
    // The same counter as sign-in: a presence answer is no way around the lockout.
    let max = f.status("alice").max_attempts;
    for _ in 1..max {
        let _ = f.presence(ROOT, "alice", pin(OTHER_PIN));
        f.advance(3600);
    }
    assert_eq!(
        f.code(f.presence(ROOT, "alice", pin(PIN))),
        ErrorCode::Locked
    );
    assert_eq!(f.code(f.sign_in(ROOT, "alice", PIN)), ErrorCode::Locked);
}

#[test]
fn nobody_asks_for_another_user() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.set(ROOT, "bob", None, OTHER_PIN).unwrap();
    // Bob knowing alice's PIN still gets nothing through alohad as himself...
    assert_eq!(
        f.code(f.presence(BOB, "alice", pin(PIN))),
        ErrorCode::Forbidden
    );
    // ...and his attempts cost alice nothing.
    assert_eq!(f.status("alice").failed_attempts, 0);
}

#[test]
fn the_face_answers_too_and_another_face_is_a_counted_failure() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
    f.enrol_face(ALICE, PIN).unwrap();
    let key = registry::load(f.dir(), "alice", None).unwrap();
    let face = Gesture::Face { timeout_ms: 400 };
    let signature = f.presence(ROOT, "alice", face.clone()).unwrap();
    ask().verify(&key.public_key, "alice", &signature).unwrap();
    f.cameras.show(Shot::Frames(vec![BOB_FACE]));
    assert_eq!(
        f.code(f.presence(ROOT, "alice", face)),
        ErrorCode::FaceNoMatch
    );
    assert_eq!(f.face_failures(), 1);
}

#[test]
fn a_question_out_of_bounds_never_reaches_the_key() {
    // Ask checks itself when read: a malformed question is refused as a malformed request.
    let request = |reason: &str| {
        format!(
            r#"{{"op":"presence","user":"alice","ask":{{"reason":"{reason}","challenge":"{}"}},"gesture":{{"by":"pin","pin":"1"}}}}"#,
            "ab".repeat(16)
        )
    };
    assert!(aloha::protocol::decode::<Request>(request("ok").as_bytes()).is_ok());
    assert!(aloha::protocol::decode::<Request>(request("a\\nb").as_bytes()).is_err());
    assert!(aloha::protocol::decode::<Request>(request("").as_bytes()).is_err());
}
