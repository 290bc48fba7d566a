//! Who may act for whom.

use super::*;

#[test]
fn only_root_acts_for_others() {
    let f = fixture();
    assert_eq!(
        f.code(f.set(BOB, "alice", Some("bob-password"), PIN)),
        ErrorCode::Forbidden
    );
    f.set(ROOT, "alice", None, PIN).unwrap();
    assert_eq!(f.code(f.sign_in(BOB, "alice", PIN)), ErrorCode::Forbidden);
    assert_eq!(
        f.code(f.call(
            BOB,
            Request::Status {
                user: "alice".into()
            }
        )),
        ErrorCode::Forbidden
    );
    assert_eq!(
        f.code(f.call(
            BOB,
            Request::AdminRemove {
                user: "alice".into()
            }
        )),
        ErrorCode::Forbidden
    );
    // A refused request costs the victim nothing.
    assert_eq!(f.status("alice").failed_attempts, 0);
    assert_eq!(
        f.code(f.sign_in(ROOT, "mallory", PIN)),
        ErrorCode::UnknownUser
    );
    assert_eq!(
        f.code(f.sign_in(ROOT, "../etc", PIN)),
        ErrorCode::BadRequest
    );
}

/// A deleted account's name given to someone new (another uid) does not inherit the old
/// owner's key: alohad refuses it, says why, counts nothing, and the new owner can start over
/// with a PIN reset.
#[test]
fn a_reused_user_name_does_not_inherit_the_old_key() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    // The key was made when "alice" was uid 999; the user database now says 1000.
    let store = Store::open_unlocked(f.dir()).unwrap();
    let mut old = store.load_container("alice").unwrap().unwrap();
    old.uid = 999;
    store.save_container(&old).unwrap();

    let refused = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotEnrolled, "{refused:?}");
    assert!(refused.message.contains("uid 999"), "{}", refused.message);
    assert!(
        refused.message.contains("aloha pin reset"),
        "{}",
        refused.message
    );
    assert_eq!(f.status("alice").failed_attempts, 0, "nothing was tried");
    assert!(lock(&f.seen).is_empty(), "the key store was never asked");
    let changed = f.change(PIN, OTHER_PIN).unwrap_err();
    assert_eq!(changed.code, ErrorCode::NotEnrolled, "{changed:?}");

    // The new alice starts over with her password: a new key for her uid.
    f.call(
        ALICE,
        Request::PinReset {
            user: "alice".into(),
            password: Some(Secret::new("alice-password")),
            new_pin: Secret::new(OTHER_PIN),
        },
    )
    .unwrap();
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap();
    assert_eq!(
        registry::load(f.dir(), "alice", Some(1000)).unwrap().uid,
        1000
    );
}

/// A wrong account password earns a wait before the next check (doubling, capped), so alohad
/// is no faster a password oracle than su; the wait is the guesser's own, and the right
/// password clears it.
#[test]
fn wrong_account_passwords_earn_a_growing_wait() {
    use crate::service::password_checks::{FIRST_WAIT_SECONDS, MAX_WAIT_SECONDS};
    let f = fixture();
    let set = |caller, user: &str, password: &str| f.set(caller, user, Some(password), PIN);
    assert_eq!(
        f.code(set(ALICE, "alice", "guess-1")),
        ErrorCode::WrongPassword
    );
    // At once, even the right password waits: nothing is checked.
    let early = set(ALICE, "alice", "alice-password").unwrap_err();
    assert_eq!(early.code, ErrorCode::Delayed, "{early:?}");
    assert_eq!(early.retry_at, Some(T0 + FIRST_WAIT_SECONDS));
    assert!(
        early.message.contains("try again in 2 s"),
        "{}",
        early.message
    );
    assert!(!f.status("alice").enrolled);
    // Bob's checks are his own.
    set(BOB, "bob", "bob-password").unwrap();
    f.advance(FIRST_WAIT_SECONDS);
    assert_eq!(
        f.code(set(ALICE, "alice", "guess-2")),
        ErrorCode::WrongPassword
    );
    let second = set(ALICE, "alice", "guess-3").unwrap_err();
    assert_eq!(
        second.retry_at,
        Some(T0 + 3 * FIRST_WAIT_SECONDS),
        "doubled"
    );
    // Many wrong passwords later the wait stops growing.
    for _ in 0..10 {
        f.advance(MAX_WAIT_SECONDS);
        assert_eq!(
            f.code(set(ALICE, "alice", "guess")),
            ErrorCode::WrongPassword
        );
    }
    let capped = set(ALICE, "alice", "alice-password").unwrap_err();
    assert_eq!(
        capped.retry_at,
        Some(f.clock.load(std::sync::atomic::Ordering::SeqCst) + MAX_WAIT_SECONDS)
    );
    f.advance(MAX_WAIT_SECONDS);
    set(ALICE, "alice", "alice-password").unwrap();
    // Cleared: the next wrong password starts from the first wait again.
    let reset = |password: &str| {
        f.call(
            ALICE,
            Request::PinReset {
                user: "alice".into(),
                password: Some(Secret::new(password)),
                new_pin: Secret::new(OTHER_PIN),
            },
        )
    };
    assert_eq!(f.code(reset("wrong")), ErrorCode::WrongPassword);
    let after = reset("alice-password").unwrap_err();
    assert_eq!(
        after.retry_at,
        Some(f.clock.load(std::sync::atomic::Ordering::SeqCst) + FIRST_WAIT_SECONDS)
    );
}

/// Linux-PAM modules are not promised to be thread-safe: two users' password checks never
/// run at the same time.
#[test]
fn account_password_checks_run_one_at_a_time() {
    use std::sync::atomic::AtomicUsize;
    struct Overlap {
        now: AtomicUsize,
        most: AtomicUsize,
    }
    impl PasswordChecker for Arc<Overlap> {
        fn check(&self, user: &str, password: &Secret) -> Result<(), PasswordError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            // Long enough that unserialized checks would overlap.
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.now.fetch_sub(1, Ordering::SeqCst);
            FakePasswords.check(user, password)
        }
    }
    let overlap = Arc::new(Overlap {
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
    });
    let dir = TempDir::new();
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let service = Arc::new(Service::new(Components {
        config,
        store: Store::open_unlocked(&dir.0).unwrap(),
        software: Box::new(|| Box::new(Scripted::vault(Box::new(|| Ok(())), Box::new(|_| Ok(()))))),
        argon2_runs: 4,
        history_kdf: FAST_KDF,
        tpm: None,
        users: Box::new(FakeUsers),
        passwords: Box::new(overlap.clone()),
        clock: Box::new(FakeClock(Arc::new(AtomicU64::new(T0)))),
        recognition: Arc::new(scripted_face::ScriptedRecognition),
        cameras: Box::new(scripted_face::ScriptedCameras::default()),
    }));
    let threads: Vec<_> = [
        (ALICE, "alice"),
        (BOB, "bob"),
        (ALICE, "alice"),
        (BOB, "bob"),
    ]
    .into_iter()
    .map(|(caller, user)| {
        let service = service.clone();
        std::thread::spawn(move || {
            service.handle_quietly(
                &caller,
                Request::PinReset {
                    user: user.into(),
                    password: Some(Secret::new("wrong")),
                    new_pin: Secret::new(PIN),
                },
            )
        })
    })
    .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(overlap.most.load(Ordering::SeqCst), 1);
}
