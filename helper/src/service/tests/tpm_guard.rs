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
