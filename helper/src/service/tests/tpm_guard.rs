//! The TPM guard: the TPM's global dictionary-attack lockout stays out of reach.

use super::*;

#[test]
fn the_tpm_guard_keeps_the_global_lockout_out_of_reach() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    // 32 maxTries, headroom 2: attempts stop at a counter of 30.
    lock(&f.da).counter = 29;
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", OTHER_PIN)),
        ErrorCode::WrongPin
    );
    assert_eq!(lock(&f.da).counter, 30);
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::TpmLockout);
    assert!(e.message.contains("every user"), "{}", e.message);
    assert_eq!(e.retry_at, Some(T0 + 7200));
    assert!(
        !lock(&f.da).in_lockout,
        "Aloha never drives the TPM into lockout"
    );
    assert_eq!(
        f.status("alice").failed_attempts,
        1,
        "a guarded refusal is not an attempt"
    );
    // A TPM already in lockout (someone else's doing) is reported as such.
    *lock(&f.da) = DaState {
        counter: 32,
        max_tries: 32,
        recovery_seconds: 7200,
        in_lockout: true,
    };
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert!(
        e.message.contains("is in its dictionary-attack lockout"),
        "{}",
        e.message
    );
    assert_eq!(f.status("alice").tpm.map(|t| t.in_lockout), Some(true));
}

#[test]
fn per_user_limits_must_stay_below_the_tpm_guard() {
    let da = |max_tries| DaState {
        counter: 0,
        max_tries,
        recovery_seconds: 7200,
        in_lockout: false,
    };
    assert!(check_tpm_limits(10, 2, &da(32)).is_ok());
    assert!(check_tpm_limits(29, 2, &da(32)).is_ok());
    let e = check_tpm_limits(30, 2, &da(32)).unwrap_err().to_string();
    assert!(
        e.contains("lockout.max_attempts = 30")
            && e.contains("tpm.da_headroom = 2")
            && e.contains("maxTries = 32")
            && e.contains("at most 29"),
        "{e}"
    );
    // No overflow, whatever the numbers.
    let e = check_tpm_limits(u32::MAX, u32::MAX, &da(32))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lower tpm.da_headroom"), "{e}");
    // swtpm's default maxTries of 3 leaves one attempt with headroom 1, none with 2.
    assert!(check_tpm_limits(1, 1, &da(3)).is_ok());
    let e = check_tpm_limits(1, 2, &da(3)).unwrap_err().to_string();
    assert!(e.contains("lower tpm.da_headroom"), "{e}");
}

#[test]
fn a_max_tries_lowered_while_alohad_runs_refuses_tpm_attempts() {
    let f = fixture_with(Config::default(), true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.sign_in(ALICE, "alice", PIN).unwrap();
    // Someone runs `tpm2_dictionarylockout -s -n 8`: the default limits no longer fit below it.
    lock(&f.da).max_tries = 8;
    let seen_before = lock(&f.seen).len();
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable, "{}", e.message);
    let want = check_tpm_limits(
        Config::default().lockout.max_attempts,
        Config::default().tpm.da_headroom,
        &lock(&f.da).clone(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.message.contains(&want), "{}", e.message);
    assert_eq!(f.status("alice").failed_attempts, 0, "nothing was counted");
    assert_eq!(
        lock(&f.seen).len(),
        seen_before,
        "the PIN never reached the TPM"
    );
    lock(&f.da).max_tries = 32;
    f.sign_in(ALICE, "alice", PIN).unwrap();
}

#[test]
fn status_shows_the_tpm_pause_and_the_default_backend() {
    let f = fixture();
    let s = f.status("bob");
    assert!(!s.enrolled);
    assert_eq!(s.default_backend, Some(BackendKind::Tpm));
    assert_eq!(s.protection.as_deref(), Some(BackendKind::Tpm.protection()));
    assert_eq!(s.tpm_pause, None);
    f.set(ROOT, "alice", None, PIN).unwrap();
    lock(&f.da).counter = 30;
    let s = f.status("alice");
    assert_eq!(
        s.tpm_pause,
        Some(TpmPause {
            in_lockout: false,
            until: Some(T0 + 7200)
        })
    );
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::TpmLockout);
    assert_eq!(e.retry_at, s.tpm_pause.and_then(|p| p.until));
    // A software-vault user is not paused by the TPM.
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let g = fixture_with(config, true);
    g.set(ROOT, "alice", None, PIN).unwrap();
    lock(&g.da).counter = 31;
    let s = g.status("alice");
    assert_eq!(s.tpm_pause, None);
    assert_eq!(
        s.protection.as_deref(),
        Some(BackendKind::Software.protection())
    );
    g.sign_in(ALICE, "alice", PIN).unwrap();
}

/// Finding 1 of the hardening review: a user who knows their own PIN repeats "the free wrong
/// PINs, then the right one". Aloha's per-user counter starts over each time, but the TPM's
/// counter does not: without shares this walks it up to the guard and pauses PIN sign-in for
/// every user. With shares the attacker stops at their own share; the other user signs in.
#[test]
fn one_user_cannot_spend_the_tpm_failure_budget_of_everyone() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.set(ROOT, "bob", None, PIN).unwrap();
    // 32 maxTries, headroom 2, two TPM users: 29 failures to share, 14 each.
    let mut refused = None;
    'attack: for _round in 0..20 {
        for _ in 0..3 {
            match f.sign_in(ALICE, "alice", OTHER_PIN) {
                Err(e) if e.code == ErrorCode::WrongPin => {}
                Err(e) => {
                    refused = Some(e);
                    break 'attack;
                }
                Ok(()) => panic!("a wrong PIN signed in"),
            }
        }
        f.sign_in(ALICE, "alice", PIN).unwrap();
    }
    let e = refused.expect("the attack was never stopped");
    assert_eq!(e.code, ErrorCode::Delayed, "{e:?}");
    assert!(
        e.message.contains("14 wrong PINs of alice's"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("a correct PIN does not clear"),
        "{}",
        e.message
    );
    assert_eq!(
        e.retry_at,
        Some(T0 + 7200),
        "the first of them is forgotten first"
    );
    assert_eq!(
        lock(&f.da).counter,
        14,
        "the TPM's counter stopped at alice's share"
    );
    // Even her right PIN waits (the TPM must not be asked), and nothing was counted for it.
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::Delayed);
    // Her status says so before any prompt (pam_aloha refuses there without asking).
    let share = f
        .status("alice")
        .tpm_share
        .expect("alice's key is in the TPM");
    assert_eq!(
        (share.debt, share.share, share.used(), share.next_forgotten),
        (14, 14, true, Some(T0 + 7200))
    );
    // Bob is untouched: no pause for everyone, and nothing of his is remembered.
    f.sign_in(BOB, "bob", PIN).unwrap();
    assert_eq!(f.status("bob").tpm_pause, None);
    let bob = f.status("bob").tpm_share.expect("bob's key is in the TPM");
    assert_eq!((bob.debt, bob.used()), (0, false));
    // A PIN reset makes a new key but forgives nothing the TPM remembers.
    f.reset_to(OTHER_PIN).unwrap();
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", OTHER_PIN)),
        ErrorCode::Delayed
    );
    // One recovery period later the TPM has forgotten one of hers: one more attempt.
    f.advance(7200);
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap();
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::WrongPin);
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", OTHER_PIN)),
        ErrorCode::Delayed
    );
    // The debts survive a restart (they are on disk, written ahead).
    let again = f.rebuild(f.dir(), Config::default(), true);
    let r = again.handle_quietly(
        &ALICE,
        Request::SignIn {
            user: "alice".into(),
            service: "test".into(),
            nonce: Nonce::random().unwrap(),
            pin: Secret::new(OTHER_PIN),
            vault: false,
        },
    );
    assert!(
        matches!(r, Response::Error(ref e) if e.code == ErrorCode::Delayed),
        "{r:?}"
    );
}

/// The debt is written ahead like the attempt: a key store that never judged the PIN gives
/// it back, one that judged it and then failed (the answer lost) keeps it.
#[test]
fn the_tpm_debt_is_written_ahead_and_given_back_only_when_nothing_was_judged() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let debt = || {
        let store = Store::open_unlocked(f.dir()).unwrap();
        store.load_attempts_and_debt("alice").unwrap().1.failures
    };
    *lock(&f.fault) = Fault::Before;
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err();
    assert_eq!(debt(), 0, "never judged: given back");
    *lock(&f.fault) = Fault::After;
    f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(debt(), 1, "judged, answer lost: it stays");
    *lock(&f.fault) = Fault::None;
    f.sign_in(ALICE, "alice", PIN).unwrap();
    assert_eq!(debt(), 1, "a success forgives nothing earlier");
    assert_eq!(
        f.code(f.sign_in(ALICE, "alice", OTHER_PIN)),
        ErrorCode::WrongPin
    );
    assert_eq!(debt(), 2);
}

/// The share follows enrolments and removals at once (the count of TPM users is kept between
/// requests and counted again after a container is written or removed).
#[test]
fn the_share_follows_enrolments_and_removals() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let share = |f: &Fixture| f.status("alice").tpm_share.expect("a TPM key").share;
    // 32 maxTries, headroom 2: 29 to share.
    assert_eq!(share(&f), 29);
    f.set(ROOT, "bob", None, PIN).unwrap();
    assert_eq!(share(&f), 14);
    f.call(ROOT, Request::AdminRemove { user: "bob".into() })
        .unwrap();
    assert_eq!(share(&f), 29);
}
