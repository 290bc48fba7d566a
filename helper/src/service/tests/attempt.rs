//! One counted attempt: the count on disk first, the lockout tiers, what is given back.

use super::*;

#[test]
fn a_wrong_pin_is_counted_and_a_success_resets_the_count() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let e = f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    assert!(
        e.message.contains("2 more tries before a waiting time"),
        "{}",
        e.message
    );
    assert_eq!(e.left_before_lock, Some(9));
    assert_eq!(f.status("alice").failed_attempts, 1);
    f.sign_in(ALICE, "alice", PIN).unwrap();
    assert_eq!(f.status("alice").failed_attempts, 0);
}

#[test]
fn lockout_tiers_follow_the_clock() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    for _ in 0..3 {
        assert_eq!(
            f.code(f.sign_in(ALICE, "alice", OTHER_PIN)),
            ErrorCode::WrongPin
        );
    }
    // The 4th wrong PIN starts the first delay (30 s).
    let e = f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    assert_eq!(e.retry_at, Some(T0 + 30));
    assert!(
        e.message.contains("Next try in 30 seconds"),
        "{}",
        e.message
    );
    // During the delay even the right PIN is refused, and nothing is counted.
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::Delayed);
    assert!(
        e.message.contains("try again in 30 seconds"),
        "{}",
        e.message
    );
    assert_eq!(f.status("alice").failed_attempts, 4);
    f.advance(29);
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::Delayed);
    f.advance(1);
    // 5th wrong → 60 s, and so on up to the hard lock at 10.
    let e = f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert_eq!(e.retry_at, Some(f.clock.load(Ordering::SeqCst) + 60));
    for _ in 5..9 {
        f.advance(3600);
        assert_eq!(
            f.code(f.sign_in(ALICE, "alice", OTHER_PIN)),
            ErrorCode::WrongPin
        );
    }
    f.advance(3600);
    let e = f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert!(
        e.message.contains("now locked after 10 wrong tries"),
        "{}",
        e.message
    );
    assert_eq!(e.left_before_lock, Some(0));
    f.advance(365 * 86_400);
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::Locked);
    assert!(e.message.contains("use your password"), "{}", e.message);
    assert_eq!(f.status("alice").gate, Gate::Locked);
    // Only the administrator or a reset with the account password lifts it.
    assert_eq!(
        f.code(f.call(
            ALICE,
            Request::AdminUnlock {
                user: "alice".into()
            }
        )),
        ErrorCode::Forbidden
    );
    f.call(
        ROOT,
        Request::AdminUnlock {
            user: "alice".into(),
        },
    )
    .unwrap();
    f.sign_in(ALICE, "alice", PIN).unwrap();
}

#[test]
fn the_attempt_is_on_disk_before_the_key_store_sees_the_pin() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    f.sign_in(ALICE, "alice", PIN).unwrap();
    let seen = lock(&f.seen).clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].contains("\"failures\": 1"),
        "first attempt: {}",
        seen[0]
    );
    assert!(
        seen[1].contains("\"failures\": 2"),
        "second attempt: {}",
        seen[1]
    );
    assert_eq!(f.status("alice").failed_attempts, 0);
}

#[test]
fn an_unavailable_key_store_gives_the_attempt_back() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    *lock(&f.fault) = Fault::Before;
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable);
    assert!(e.message.contains("use your password"), "{}", e.message);
    assert_eq!(f.status("alice").failed_attempts, 0);
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert_eq!(
        f.status("alice").failed_attempts,
        0,
        "not even a wrong PIN is judged"
    );
}

#[test]
fn an_answer_lost_after_the_pin_was_sent_keeps_the_attempt_counted() {
    let config = Config {
        lockout: LockoutPolicy {
            free_attempts: 1,
            delay_seconds: vec![0],
            max_attempts: 3,
        },
        ..Config::default()
    };
    let f = fixture_with(config, true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    // Whoever can break the reply after the TPM judged the PIN (bus tampering, restarting the
    // TPM or tabrmd) gets no free guesses: the right PIN and wrong ones alike stay counted.
    *lock(&f.fault) = Fault::After;
    for (i, pin) in [OTHER_PIN, PIN, "918273"].into_iter().enumerate() {
        let e = f.sign_in(ALICE, "alice", pin).unwrap_err();
        assert_eq!(e.code, ErrorCode::BackendUnavailable);
        assert!(
            e.message.contains("counts as a failed attempt"),
            "{}",
            e.message
        );
        assert_eq!(f.status("alice").failed_attempts, i as u32 + 1);
        // Where the count stands now, as after a wrong PIN: the last one locks.
        assert_eq!(e.left_before_lock, Some(2 - i as u32), "{}", e.message);
        assert_eq!(
            e.message
                .contains("alice's PIN is now locked after 3 failed tries"),
            i == 2,
            "{}",
            e.message
        );
    }
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::Locked);
    // The TPM counted the two wrong ones itself.
    assert_eq!(lock(&f.da).counter, 2);
    // A lockout reply the guard did not foresee is not trusted as "nothing judged" either.
    *lock(&f.fault) = Fault::Lockout;
    f.call(
        ROOT,
        Request::AdminUnlock {
            user: "alice".into(),
        },
    )
    .unwrap();
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", PIN)),
        ErrorCode::TpmLockout
    );
    assert_eq!(f.status("alice").failed_attempts, 1);
    *lock(&f.fault) = Fault::None;
    f.sign_in(ALICE, "alice", PIN).unwrap();
    assert_eq!(f.status("alice").failed_attempts, 0);
}

#[test]
fn empty_pins_cost_nothing() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    assert_eq!(f.code(f.sign_in(ALICE, "alice", "")), ErrorCode::BadRequest);
    assert_eq!(f.status("alice").failed_attempts, 0);
}

/// The reply to a right PIN leaves before the counter reset (one durable write fewer on the
/// person's wait), while the write-ahead count is already on disk; the reset follows before
/// the request ends, and a wrong PIN's reply comes after its count.
#[test]
fn a_sign_in_replies_before_the_reset_and_after_the_count() {
    struct Watching<'a> {
        store: &'a Store,
        seen: Vec<(bool, u32)>,
    }
    impl Client for Watching<'_> {
        fn progress(&mut self, _: FaceProgress) -> bool {
            true
        }
        fn reply(&mut self, response: Response) {
            let failures = self.store.load_attempts("alice").unwrap().failures;
            self.seen
                .push((matches!(response, Response::Signed { .. }), failures));
        }
    }
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let store = Store::open_unlocked(f.dir()).unwrap();
    let sign_in = |pin: &str| {
        let mut client = Watching {
            store: &store,
            seen: Vec::new(),
        };
        let request = Request::SignIn {
            user: "alice".into(),
            service: "test".into(),
            nonce: Nonce::random().unwrap(),
            pin: Secret::new(pin),
            vault: false,
        };
        f.service.handle(&ALICE, request, &mut client);
        client.seen
    };
    assert_eq!(sign_in(OTHER_PIN), vec![(false, 1)]);
    // Counted ahead (1 + 1) when the signature went out, reset right after.
    assert_eq!(sign_in(PIN), vec![(true, 2)]);
    assert_eq!(f.status("alice").failed_attempts, 0);
}
