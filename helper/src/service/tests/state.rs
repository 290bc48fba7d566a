//! State files: corrupt ones are reported and left alone; keys are republished from containers.

use super::*;

#[test]
fn corrupt_state_is_reported_and_left_alone() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let attempts = f.dir().join("private/users/alice/attempts.json");
    std::fs::write(&attempts, b"{\"version\":1,\"fail").unwrap();
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::StateCorrupt);
    assert!(
        e.message.contains(&attempts.display().to_string()),
        "{}",
        e.message
    );
    assert_eq!(std::fs::read(&attempts).unwrap(), b"{\"version\":1,\"fail");
    let s = f.status("alice");
    assert!(s.problem.unwrap().contains("attempts.json"));
    f.call(
        ROOT,
        Request::AdminUnlock {
            user: "alice".into(),
        },
    )
    .unwrap();
    f.sign_in(ALICE, "alice", PIN).unwrap();

    let container = f.dir().join("private/users/alice/container.json");
    let good = std::fs::read(&container).unwrap();
    std::fs::write(&container, &good[..good.len() / 3]).unwrap();
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", PIN)),
        ErrorCode::StateCorrupt
    );
    assert_eq!(
        f.code(f.set(ROOT, "alice", None, PIN)),
        ErrorCode::StateCorrupt,
        "never silently replaced"
    );
    // The explicit reset is the way out.
    f.call(
        ROOT,
        Request::PinReset {
            user: "alice".into(),
            password: None,
            new_pin: Secret::new(OTHER_PIN),
        },
    )
    .unwrap();
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap();
}

#[test]
fn remove_forgets_everything_and_a_missing_key_is_republished() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    std::fs::remove_file(registry::key_path(f.dir(), "alice")).unwrap();
    let again = f.rebuild(f.dir(), Config::default(), true);
    assert!(
        registry::load(f.dir(), "alice", Some(1000)).is_ok(),
        "republished at start"
    );
    drop(again);
    f.call(
        ROOT,
        Request::AdminRemove {
            user: "alice".into(),
        },
    )
    .unwrap();
    assert!(!f.status("alice").enrolled);
    assert!(registry::load(f.dir(), "alice", None).is_err());
    assert_eq!(
        f.code(f.call(
            ROOT,
            Request::AdminRemove {
                user: "alice".into()
            }
        )),
        ErrorCode::NotEnrolled
    );
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", PIN)),
        ErrorCode::NotEnrolled
    );
}

#[test]
fn a_corrupt_public_key_file_is_replaced_from_the_container_at_start() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let path = registry::key_path(f.dir(), "alice");
    std::fs::write(&path, b"{\"version\":1,\"us").unwrap();
    assert!(registry::load(f.dir(), "alice", Some(1000)).is_err());
    drop(f.rebuild(f.dir(), Config::default(), true));
    assert!(registry::load(f.dir(), "alice", Some(1000)).is_ok());
    f.sign_in(ALICE, "alice", PIN).unwrap();
}

/// After a downgrade, files a newer Aloha wrote (a higher `version`, fields this alohad does
/// not know) are refused as such — the user is told to use the password and the fix — and no
/// operation replaces them: not a sign-in, not an unlock, not a PIN reset.
#[test]
fn state_from_a_newer_aloha_is_refused_and_never_replaced() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let dir = f.dir().join("private/users/alice");
    let newer_attempts = br#"{"version":2,"failures":0,"last_failure":0,"pending":[]}"#;
    std::fs::write(dir.join("attempts.json"), newer_attempts).unwrap();
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::StateCorrupt);
    assert!(
        e.message
            .contains("written by a newer Aloha (format 2; this alohad reads up to 1)")
            && e.message.contains("signs in with the password"),
        "{}",
        e.message
    );
    let unlock = f.call(
        ROOT,
        Request::AdminUnlock {
            user: "alice".into(),
        },
    );
    assert!(unlock.is_err(), "{unlock:?}");
    assert_eq!(
        std::fs::read(dir.join("attempts.json")).unwrap(),
        newer_attempts
    );

    let newer_container = br#"{"version":7,"user":"alice","keys":{}}"#;
    std::fs::write(dir.join("container.json"), newer_container).unwrap();
    let e = f.reset_to(OTHER_PIN).unwrap_err();
    assert!(e.message.contains("newer Aloha (format 7"), "{}", e.message);
    assert_eq!(
        std::fs::read(dir.join("container.json")).unwrap(),
        newer_container,
        "a reset never replaces a newer Aloha's container"
    );
    assert!(f.status("alice").problem.unwrap().contains("newer Aloha"));
}
