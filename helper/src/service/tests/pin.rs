//! Setting, changing and resetting a PIN.

use super::*;

#[test]
fn set_then_sign_in_with_a_signature_that_verifies() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.sign_in(ALICE, "alice", PIN).unwrap();
    f.sign_in(ROOT, "alice", PIN).unwrap();
    let s = f.status("alice");
    assert!(s.enrolled);
    assert_eq!(s.backend, Some(BackendKind::Tpm));
    assert_eq!(s.protectors, vec!["pin".to_string()]);
    assert_eq!(s.failed_attempts, 0);
}

#[test]
fn non_root_enrolment_needs_the_account_password() {
    let f = fixture();
    let e = f.set(ALICE, "alice", None, PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPassword);
    assert!(e.message.contains("password is needed"), "{}", e.message);
    assert_eq!(
        f.code(f.set(ALICE, "alice", Some("guess"), PIN)),
        ErrorCode::WrongPassword
    );
    assert!(!f.status("alice").enrolled);
    // A wrong password earns a short wait (access::wrong_account_passwords_earn_a_growing_wait).
    f.advance(crate::service::password_checks::FIRST_WAIT_SECONDS);
    f.set(ALICE, "alice", Some("alice-password"), PIN).unwrap();
    assert_eq!(
        f.code(f.set(ALICE, "alice", Some("alice-password"), PIN)),
        ErrorCode::AlreadyEnrolled
    );
    // Reset: password again, new key.
    let old = registry::load(f.dir(), "alice", None).unwrap();
    let reset = |pw: Option<&str>| {
        f.call(
            ALICE,
            Request::PinReset {
                user: "alice".into(),
                password: pw.map(Secret::new),
                new_pin: Secret::new(OTHER_PIN),
            },
        )
    };
    assert_eq!(f.code(reset(Some("nope"))), ErrorCode::WrongPassword);
    f.advance(crate::service::password_checks::FIRST_WAIT_SECONDS);
    reset(Some("alice-password")).unwrap();
    let new = registry::load(f.dir(), "alice", None).unwrap();
    assert_ne!(old.public_key, new.public_key, "a reset makes a new key");
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::WrongPin);
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap();
}

#[test]
fn reset_lifts_a_hard_lock() {
    let config = Config {
        lockout: LockoutPolicy {
            free_attempts: 1,
            delay_seconds: vec![0],
            max_attempts: 2,
        },
        ..Config::default()
    };
    let f = fixture_with(config, true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::Locked);
    f.call(
        ALICE,
        Request::PinReset {
            user: "alice".into(),
            password: Some(Secret::new("alice-password")),
            new_pin: Secret::new("918273"),
        },
    )
    .unwrap();
    f.sign_in(ALICE, "alice", "918273").unwrap();
}

#[test]
fn change_needs_the_current_pin_and_counts_it() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let change = |cur: &str, new: &str| {
        f.call(
            ALICE,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(cur),
                new_pin: Secret::new(new),
            },
        )
    };
    assert_eq!(f.code(change(OTHER_PIN, "918273")), ErrorCode::WrongPin);
    assert_eq!(f.status("alice").failed_attempts, 1);
    // A policy violation is refused before any attempt is spent.
    let e = change(PIN, "123456").unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
    assert!(e.message.contains("straight run"), "{}", e.message);
    assert_eq!(f.status("alice").failed_attempts, 1);
    let key_before = registry::load(f.dir(), "alice", None).unwrap();
    change(PIN, "918273").unwrap();
    assert_eq!(
        registry::load(f.dir(), "alice", None).unwrap(),
        key_before,
        "same key, new PIN"
    );
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::WrongPin);
    f.sign_in(ALICE, "alice", "918273").unwrap();
}

#[test]
fn an_expired_pin_must_be_changed() {
    let mut config = Config::default();
    config.pin.expiry_days = 30;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.advance(29 * 86_400);
    f.sign_in(ALICE, "alice", PIN).unwrap();
    f.advance(86_400);
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::PinExpired);
    assert!(e.message.contains("aloha pin change"), "{}", e.message);
    assert_eq!(f.status("alice").pin_expires_at, Some(T0 + 30 * 86_400));
    f.call(
        ALICE,
        Request::PinChange {
            user: "alice".into(),
            current_pin: Secret::new(PIN),
            new_pin: Secret::new("918273"),
        },
    )
    .unwrap();
    f.sign_in(ALICE, "alice", "918273").unwrap();
}

#[test]
fn software_containers_keep_working_when_the_default_is_the_tpm() {
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let f = fixture_with(config, true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    assert_eq!(f.status("alice").backend, Some(BackendKind::Software));
    let again = f.rebuild(f.dir(), Config::default(), true);
    assert_eq!(again.default_backend(), BackendKind::Tpm);
    let nonce = Nonce::random().unwrap();
    let r = again.handle_quietly(
        &ALICE,
        Request::SignIn {
            user: "alice".into(),
            service: "t".into(),
            nonce,
            pin: Secret::new(PIN),
            vault: false,
        },
    );
    assert!(
        matches!(
            r,
            Response::Signed {
                backend: BackendKind::Software,
                ..
            }
        ),
        "{r:?}"
    );
}
