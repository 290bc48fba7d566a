use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use aloha::challenge;
use aloha::lockout::LockoutPolicy;

use super::*;
use crate::backend::software::SoftwareVault;
use crate::backend::{KdfParams, KeyBlob, NewKey};

const T0: u64 = 1_800_000_000;
const ALICE: Caller = Caller { uid: 1000, pid: 1 };
const BOB: Caller = Caller { uid: 1001, pid: 2 };
const ROOT: Caller = Caller { uid: 0, pid: 3 };
const PIN: &str = "482915";
const OTHER_PIN: &str = "739164";

#[derive(Clone)]
struct FakeClock(Arc<AtomicU64>);
impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct FakeUsers;
impl UserDb for FakeUsers {
    fn by_name(&self, name: &str) -> Result<Option<UserInfo>, String> {
        Ok(match name {
            "alice" => Some(UserInfo {
                name: name.into(),
                uid: 1000,
            }),
            "bob" => Some(UserInfo {
                name: name.into(),
                uid: 1001,
            }),
            "root" => Some(UserInfo {
                name: name.into(),
                uid: 0,
            }),
            _ => None,
        })
    }
}

struct FakePasswords;
impl PasswordChecker for FakePasswords {
    fn check(&self, user: &str, password: &Secret) -> Result<(), PasswordError> {
        if password.expose() == format!("{user}-password") {
            Ok(())
        } else {
            Err(PasswordError::Wrong)
        }
    }
}

const FAST_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    passes: 1,
    lanes: 1,
};

fn fast_vault() -> SoftwareVault {
    SoftwareVault::with_kdf(FAST_KDF)
}

/// How the TPM stand-in misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Unreachable before the PIN-carrying command (nothing judged).
    Before,
    /// The PIN was judged (and counted by DA if wrong), then the answer was lost or forged.
    After,
    /// A lockout reply although the DA state read just before showed none.
    Lockout,
}

/// A TPM stand-in over the software vault: global DA counter, lockout, a PIN-history key that
/// lives only inside it, and a probe that records the attempt counter on disk at the moment the
/// key store is asked.
struct DaBackend {
    inner: SoftwareVault,
    da: Arc<Mutex<DaState>>,
    probe: Option<(PathBuf, Arc<Mutex<Vec<String>>>)>,
    fault: Arc<Mutex<Fault>>,
    history_key: [u8; 32],
}

impl DaBackend {
    fn before(&self) -> Result<(), BackendError> {
        if let Some((path, seen)) = &self.probe {
            lock(seen).push(std::fs::read_to_string(path).unwrap_or_default());
        }
        match *lock(&self.fault) {
            Fault::Before => return Err(BackendError::Unavailable("TPM unplugged".into())),
            Fault::Lockout => return Err(BackendError::Lockout),
            Fault::None | Fault::After => {}
        }
        if lock(&self.da).in_lockout {
            return Err(BackendError::Lockout);
        }
        Ok(())
    }
    fn count<T>(&self, r: Result<T, BackendError>) -> Result<T, BackendError> {
        if matches!(r, Err(BackendError::AuthFailed)) {
            let mut da = lock(&self.da);
            da.counter += 1;
            da.in_lockout = da.counter >= da.max_tries;
        }
        if *lock(&self.fault) == Fault::After {
            return Err(BackendError::Indeterminate("response HMAC wrong".into()));
        }
        r
    }
}

impl KeyBackend for DaBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tpm
    }
    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError> {
        let mut k = self.inner.create(auth)?;
        k.blob = to_tpm(k.blob);
        Ok(k)
    }
    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        self.before()?;
        let r = self.inner.sign(&from_tpm(blob), auth, digest);
        self.count(r)
    }
    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        self.before()?;
        let r = self
            .inner
            .change_auth(&from_tpm(blob), old, new)
            .map(to_tpm);
        self.count(r)
    }
    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        Ok(Some(*lock(&self.da)))
    }
    fn create_history_key(&mut self) -> Result<Option<KeyBlob>, BackendError> {
        Ok(Some(KeyBlob::Tpm {
            public: vec![1],
            private: vec![2],
        }))
    }
    fn history_mac(&mut self, key: &KeyBlob, data: &[u8; 32]) -> Result<[u8; 32], BackendError> {
        if *lock(&self.fault) == Fault::Before {
            return Err(BackendError::Unavailable("TPM unplugged".into()));
        }
        match key {
            KeyBlob::Tpm { public, private } if *public == [1] && *private == [2] => {
                Ok(history::software_mac(&self.history_key, data).unwrap())
            }
            _ => Err(BackendError::BadBlob("not our history key".into())),
        }
    }
}

// The stand-in keeps the software blob inside a "TPM" blob so containers look like TPM ones.
fn to_tpm(b: KeyBlob) -> KeyBlob {
    KeyBlob::Tpm {
        public: vec![],
        private: serde_json::to_vec(&b).unwrap(),
    }
}
fn from_tpm(b: &KeyBlob) -> KeyBlob {
    match b {
        KeyBlob::Tpm { private, .. } => serde_json::from_slice(private).unwrap(),
        other => other.clone(),
    }
}

struct Fixture {
    dir: PathBuf,
    clock: Arc<AtomicU64>,
    da: Arc<Mutex<DaState>>,
    seen: Arc<Mutex<Vec<String>>>,
    fault: Arc<Mutex<Fault>>,
    service: Service,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A temp dir removed when dropped, a failed assert included.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        TempDir(temp_dir())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> PathBuf {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    std::env::temp_dir().join(format!("aloha-service-{}", aloha::hex::encode(&b)))
}

fn fixture_with(config: Config, with_tpm: bool) -> Fixture {
    let dir = temp_dir();
    let clock = Arc::new(AtomicU64::new(T0));
    let da = Arc::new(Mutex::new(DaState {
        counter: 0,
        max_tries: 32,
        recovery_seconds: 7200,
        in_lockout: false,
    }));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fault = Arc::new(Mutex::new(Fault::None));
    let service = build(&dir, config, with_tpm, &clock, &da, &seen, &fault);
    Fixture {
        dir,
        clock,
        da,
        seen,
        fault,
        service,
    }
}

fn build(
    dir: &std::path::Path,
    config: Config,
    with_tpm: bool,
    clock: &Arc<AtomicU64>,
    da: &Arc<Mutex<DaState>>,
    seen: &Arc<Mutex<Vec<String>>>,
    fault: &Arc<Mutex<Fault>>,
) -> Service {
    let store = Store::open_unlocked(dir).unwrap();
    let probe = Some((store.attempts_path("alice"), seen.clone()));
    let tpm: Option<Box<dyn KeyBackend>> = with_tpm.then(|| {
        Box::new(DaBackend {
            inner: fast_vault(),
            da: da.clone(),
            probe,
            fault: fault.clone(),
            history_key: [9; 32],
        }) as Box<dyn KeyBackend>
    });
    Service::new(Parts {
        config,
        store,
        software: Box::new(|| Box::new(fast_vault())),
        argon2_slots: 4,
        history_kdf: FAST_KDF,
        tpm,
        users: Box::new(FakeUsers),
        passwords: Box::new(FakePasswords),
        clock: Box::new(FakeClock(clock.clone())),
    })
}

fn fixture() -> Fixture {
    fixture_with(Config::default(), true)
}

impl Fixture {
    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    fn call(&self, caller: Caller, req: Request) -> Result<Response, Failure> {
        match self.service.handle(&caller, req) {
            Response::Error(f) => Err(f),
            ok => Ok(ok),
        }
    }

    fn set(
        &self,
        caller: Caller,
        user: &str,
        password: Option<&str>,
        pin: &str,
    ) -> Result<Response, Failure> {
        self.call(
            caller,
            Request::PinSet {
                user: user.into(),
                password: password.map(Secret::new),
                pin: Secret::new(pin),
            },
        )
    }

    fn sign_in(&self, caller: Caller, user: &str, pin: &str) -> Result<(), Failure> {
        let nonce = Nonce::random().unwrap();
        let resp = self.call(
            caller,
            Request::SignIn {
                user: user.into(),
                service: "test".into(),
                nonce,
                pin: Secret::new(pin),
            },
        )?;
        let Response::Signed { signature, .. } = resp else {
            panic!("unexpected {resp:?}")
        };
        let key = registry::load(&self.dir, user, None).unwrap();
        challenge::verify(&key.public_key, user, &nonce, &signature).unwrap();
        Ok(())
    }

    fn status(&self, user: &str) -> UserStatus {
        match self
            .call(ROOT, Request::Status { user: user.into() })
            .unwrap()
        {
            Response::Status(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn code(&self, r: Result<impl std::fmt::Debug, Failure>) -> ErrorCode {
        r.expect_err("expected a refusal").code
    }
}

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
fn concurrent_attempts_never_exceed_the_limit() {
    let config = Config {
        lockout: LockoutPolicy {
            free_attempts: 2,
            delay_seconds: vec![0],
            max_attempts: 5,
        },
        ..Config::default()
    };
    let f = Arc::new(fixture_with(config, false));
    f.set(ROOT, "alice", None, PIN).unwrap();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || f.sign_in(ALICE, "alice", OTHER_PIN).unwrap_err().code)
        })
        .collect();
    let codes: Vec<ErrorCode> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == ErrorCode::WrongPin).count(),
        5,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == ErrorCode::Locked).count(),
        11,
        "{codes:?}"
    );
    assert_eq!(f.status("alice").failed_attempts, 5);
}

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
    f.set(ALICE, "alice", Some("alice-password"), PIN).unwrap();
    assert_eq!(
        f.code(f.set(ALICE, "alice", Some("alice-password"), PIN)),
        ErrorCode::AlreadyEnrolled
    );
    // Reset: password again, new key.
    let old = registry::load(&f.dir, "alice", None).unwrap();
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
    reset(Some("alice-password")).unwrap();
    let new = registry::load(&f.dir, "alice", None).unwrap();
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
    let key_before = registry::load(&f.dir, "alice", None).unwrap();
    change(PIN, "918273").unwrap();
    assert_eq!(
        registry::load(&f.dir, "alice", None).unwrap(),
        key_before,
        "same key, new PIN"
    );
    assert_eq!(f.code(f.sign_in(ALICE, "alice", PIN)), ErrorCode::WrongPin);
    f.sign_in(ALICE, "alice", "918273").unwrap();
}

#[test]
fn history_refuses_recent_pins() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, "111222").unwrap();
    let change = |cur: &str, new: &str| {
        f.call(
            ROOT,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(cur),
                new_pin: Secret::new(new),
            },
        )
    };
    let e = change("111222", "111222").unwrap_err();
    assert!(e.message.contains("last 2 PINs"), "{}", e.message);
    change("111222", "333444").unwrap();
    assert_eq!(
        f.code(change("333444", "111222")),
        ErrorCode::PolicyViolation
    );
    change("333444", "555666").unwrap();
    // "111222" has now left the 2-deep history.
    change("555666", "111222").unwrap();
    // The history file holds keyed digests, never the PINs.
    let text = std::fs::read_to_string(f.dir.join("private/users/alice/history.json")).unwrap();
    for pin in ["111222", "333444", "555666"] {
        assert!(!text.contains(pin));
    }
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

#[test]
fn corrupt_state_is_reported_and_left_alone() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let attempts = f.dir.join("private/users/alice/attempts.json");
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

    let container = f.dir.join("private/users/alice/container.json");
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
    std::fs::remove_file(registry::key_path(&f.dir, "alice")).unwrap();
    let again = build(
        &f.dir,
        Config::default(),
        true,
        &f.clock,
        &f.da,
        &f.seen,
        &f.fault,
    );
    assert!(
        registry::load(&f.dir, "alice", Some(1000)).is_ok(),
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
    assert!(registry::load(&f.dir, "alice", None).is_err());
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
fn software_containers_keep_working_when_the_default_is_the_tpm() {
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let f = fixture_with(config, true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    assert_eq!(f.status("alice").backend, Some(BackendKind::Software));
    let again = build(
        &f.dir,
        Config::default(),
        true,
        &f.clock,
        &f.da,
        &f.seen,
        &f.fault,
    );
    assert_eq!(again.default_backend(), BackendKind::Tpm);
    let nonce = Nonce::random().unwrap();
    let r = again.handle(
        &ALICE,
        Request::SignIn {
            user: "alice".into(),
            service: "t".into(),
            nonce,
            pin: Secret::new(PIN),
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

fn change(f: &Fixture, cur: &str, new: &str) -> Result<Response, Failure> {
    f.call(
        ROOT,
        Request::PinChange {
            user: "alice".into(),
            current_pin: Secret::new(cur),
            new_pin: Secret::new(new),
        },
    )
}

fn history_json(f: &Fixture, user: &str) -> serde_json::Value {
    let path = f.dir.join(format!("private/users/{user}/history.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn history_digests_are_salted_per_user_and_keyed_in_the_tpm() {
    let mut config = Config::default();
    config.pin.history = 3;
    let f = fixture_with(config, true);
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.set(ROOT, "bob", None, PIN).unwrap();
    let (a, b) = (history_json(&f, "alice"), history_json(&f, "bob"));
    assert_eq!(a["version"], 2);
    assert_eq!(a["key"], "tpm");
    assert_ne!(a["salt"], b["salt"], "a salt of each user's own");
    assert_ne!(
        a["digests"][0], b["digests"][0],
        "same PIN, different digests"
    );
    // The TPM's key stays in the TPM: the state directory holds only its blob, no key file.
    assert!(!f.dir.join("private/history.key").exists());
    assert!(f.dir.join("private/history-key.tpm").exists());
    assert_eq!(
        f.code(change(&f, PIN, PIN)),
        ErrorCode::PolicyViolation,
        "the current PIN is in the history"
    );
    change(&f, PIN, "918273").unwrap();
    // Without the TPM the history cannot be checked, and nothing is silently dropped.
    let mut config = Config::default();
    config.pin.history = 3;
    let without = build(&f.dir, config, false, &f.clock, &f.da, &f.seen, &f.fault);
    let before = std::fs::read(f.dir.join("private/users/bob/history.json")).unwrap();
    let r = without.handle(
        &ROOT,
        Request::PinReset {
            user: "bob".into(),
            password: None,
            new_pin: Secret::new("918273"),
        },
    );
    let Response::Error(e) = r else {
        panic!("{r:?}")
    };
    assert_eq!(e.code, ErrorCode::BackendUnavailable);
    assert!(e.message.contains("kept with the TPM"), "{}", e.message);
    assert!(e.message.contains("history.json"), "{}", e.message);
    assert_eq!(
        std::fs::read(f.dir.join("private/users/bob/history.json")).unwrap(),
        before
    );
}

#[test]
fn software_history_uses_one_key_file_and_a_slow_salted_digest() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    let h = history_json(&f, "alice");
    assert_eq!(h["key"], "software");
    let key = std::fs::read(f.dir.join("private/history.key")).unwrap();
    // The stored digest is MAC(key, Argon2id(salt, user, PIN)), not the old fast HMAC.
    let salt: [u8; 16] = aloha::hex::decode(h["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let stretched = history::stretch(&FAST_KDF, &salt, "alice", &Secret::new(PIN)).unwrap();
    let expected = aloha::hex::encode(&history::software_mac(&key, &stretched).unwrap());
    assert_eq!(h["digests"][0], expected.as_str());
    assert_ne!(
        h["digests"][0],
        history::legacy_digest(&key, "alice", &Secret::new(PIN))
            .unwrap()
            .as_str()
    );
}

#[test]
fn a_version_1_history_is_honoured_once_then_replaced() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    // What an older alohad left: unsalted fast digests, the current PIN's among them.
    let key = std::fs::read(f.dir.join("private/history.key")).unwrap_or_else(|_| {
        let k = vec![5u8; 32];
        std::fs::write(f.dir.join("private/history.key"), &k).unwrap();
        k
    });
    let legacy = history::legacy_digest(&key, "alice", &Secret::new(PIN)).unwrap();
    let path = f.dir.join("private/users/alice/history.json");
    std::fs::write(
        &path,
        format!("{{\"version\":1,\"digests\":[\"{legacy}\"]}}"),
    )
    .unwrap();
    assert_eq!(f.code(change(&f, PIN, PIN)), ErrorCode::PolicyViolation);
    let Response::Done { message } = change(&f, PIN, "918273").unwrap() else {
        panic!()
    };
    assert!(message.contains("stronger format"), "{message}");
    let h = history_json(&f, "alice");
    assert_eq!(h["version"], 2);
    assert_eq!(h["digests"].as_array().unwrap().len(), 1);
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&legacy));
}

#[test]
fn a_corrupt_history_says_exactly_what_to_do() {
    let mut config = Config::default();
    config.pin.history = 2;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    let path = f.dir.join("private/users/alice/history.json");
    std::fs::write(&path, b"{\"version\":2,\"dig").unwrap();
    let e = f
        .call(
            ROOT,
            Request::PinReset {
                user: "alice".into(),
                password: None,
                new_pin: Secret::new(OTHER_PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::StateCorrupt);
    assert!(
        e.message.contains(&format!("`rm {}`", path.display())),
        "{}",
        e.message
    );
    assert!(!e.message.contains("admin unlock"), "{}", e.message);
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"version\":2,\"dig");
}

fn reset_to(f: &Fixture, pin: &str) -> Result<Response, Failure> {
    f.call(
        ROOT,
        Request::PinReset {
            user: "alice".into(),
            password: None,
            new_pin: Secret::new(pin),
        },
    )
}

#[test]
fn a_missing_history_key_is_never_silently_replaced() {
    for with_tpm in [false, true] {
        let mut config = Config::default();
        config.pin.history = 3;
        let f = fixture_with(config, with_tpm);
        f.set(ROOT, "alice", None, PIN).unwrap();
        let key = f.dir.join(if with_tpm {
            "private/history-key.tpm"
        } else {
            "private/history.key"
        });
        let history = f.dir.join("private/users/alice/history.json");
        std::fs::remove_file(&key).unwrap();
        let before = std::fs::read(&history).unwrap();
        // The reused PIN must not pass because a new key no longer recognises it.
        let e = reset_to(&f, PIN).unwrap_err();
        assert_eq!(e.code, ErrorCode::StateCorrupt, "{}", e.message);
        assert!(
            e.message.contains(&key.display().to_string()),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(&format!("`rm {}`", history.display())),
            "{}",
            e.message
        );
        assert!(!e.message.contains("admin unlock"), "{}", e.message);
        assert!(!key.exists(), "no new key was made");
        assert_eq!(std::fs::read(&history).unwrap(), before);
        // Doing what the message says works, and makes a new key.
        std::fs::remove_file(&history).unwrap();
        reset_to(&f, PIN).unwrap();
        assert!(key.exists());
    }
}

#[test]
fn a_corrupt_history_key_names_the_file_and_the_fix() {
    let mut config = Config::default();
    config.pin.history = 3;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    let key = f.dir.join("private/history.key");
    std::fs::write(&key, b"short").unwrap();
    let e = reset_to(&f, OTHER_PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::StateCorrupt, "{}", e.message);
    assert!(
        e.message.contains(&key.display().to_string()),
        "{}",
        e.message
    );
    assert!(e.message.contains("history.json"), "{}", e.message);
    assert!(!e.message.contains("admin unlock"), "{}", e.message);
    assert!(!e.message.contains("pin reset"), "{}", e.message);
    assert_eq!(std::fs::read(&key).unwrap(), b"short");
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

/// A software vault that waits (up to 5 s) until two are inside it at once.
struct Rendezvous {
    inner: SoftwareVault,
    inside: Arc<(Mutex<usize>, std::sync::Condvar)>,
    met: Arc<AtomicU64>,
}

impl KeyBackend for Rendezvous {
    fn kind(&self) -> BackendKind {
        BackendKind::Software
    }
    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError> {
        self.inner.create(auth)
    }
    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        let (count, cv) = &*self.inside;
        let mut n = lock(count);
        *n += 1;
        cv.notify_all();
        let (n2, _) = cv
            .wait_timeout_while(n, std::time::Duration::from_secs(5), |n| *n < 2)
            .unwrap();
        if *n2 >= 2 {
            self.met.fetch_add(1, Ordering::SeqCst);
        }
        drop(n2);
        self.inner.sign(blob, auth, digest)
    }
    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        self.inner.change_auth(blob, old, new)
    }
    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        Ok(None)
    }
}

#[test]
fn software_vault_sign_ins_of_different_users_run_side_by_side() {
    let dir = TempDir::new();
    let inside = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
    let met = Arc::new(AtomicU64::new(0));
    let (i2, m2) = (inside.clone(), met.clone());
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let service = Arc::new(Service::new(Parts {
        config,
        store: Store::open_unlocked(&dir.0).unwrap(),
        software: Box::new(move || {
            Box::new(Rendezvous {
                inner: fast_vault(),
                inside: i2.clone(),
                met: m2.clone(),
            })
        }),
        argon2_slots: 2,
        history_kdf: FAST_KDF,
        tpm: None,
        users: Box::new(FakeUsers),
        passwords: Box::new(FakePasswords),
        clock: Box::new(FakeClock(Arc::new(AtomicU64::new(T0)))),
    }));
    for user in ["alice", "bob"] {
        let r = service.handle(
            &ROOT,
            Request::PinSet {
                user: user.into(),
                password: None,
                pin: Secret::new(PIN),
            },
        );
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
    }
    let threads: Vec<_> = [(ALICE, "alice"), (BOB, "bob")]
        .into_iter()
        .map(|(caller, user)| {
            let service = service.clone();
            std::thread::spawn(move || {
                service.handle(
                    &caller,
                    Request::SignIn {
                        user: user.into(),
                        service: "t".into(),
                        nonce: Nonce::random().unwrap(),
                        pin: Secret::new(PIN),
                    },
                )
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert!(matches!(r, Response::Signed { .. }), "{r:?}");
    }
    assert_eq!(
        met.load(Ordering::SeqCst),
        2,
        "both were inside the vault at once"
    );
}

/// A software vault that, once inside, waits a while for a second caller to come in too:
/// with one slot none may, so every wait runs out.
struct Counting {
    inner: SoftwareVault,
    inside: Arc<(Mutex<usize>, std::sync::Condvar)>,
    /// Sign calls that waited in vain (stayed alone), and those that met another inside.
    alone: Arc<AtomicU64>,
    met: Arc<AtomicU64>,
}

impl KeyBackend for Counting {
    fn kind(&self) -> BackendKind {
        BackendKind::Software
    }
    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError> {
        self.inner.create(auth)
    }
    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        let (count, cv) = &*self.inside;
        let mut n = lock(count);
        *n += 1;
        cv.notify_all();
        // The other callers are already queued (they started together): without the slot
        // one of them would be in here well within this wait.
        let (mut n, waited) = cv
            .wait_timeout_while(n, std::time::Duration::from_millis(300), |n| *n < 2)
            .unwrap();
        if waited.timed_out() {
            self.alone.fetch_add(1, Ordering::SeqCst);
        } else {
            self.met.fetch_add(1, Ordering::SeqCst);
        }
        *n -= 1;
        drop(n);
        self.inner.sign(blob, auth, digest)
    }
    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        self.inner.change_auth(blob, old, new)
    }
    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        Ok(None)
    }
}

#[test]
fn software_vault_runs_are_bounded_by_the_slots() {
    let dir = TempDir::new();
    let inside = Arc::new((Mutex::new(0usize), std::sync::Condvar::new()));
    let alone = Arc::new(AtomicU64::new(0));
    let met = Arc::new(AtomicU64::new(0));
    let (i2, a2, m2) = (inside.clone(), alone.clone(), met.clone());
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let service = Arc::new(Service::new(Parts {
        config,
        store: Store::open_unlocked(&dir.0).unwrap(),
        software: Box::new(move || {
            Box::new(Counting {
                inner: fast_vault(),
                inside: i2.clone(),
                alone: a2.clone(),
                met: m2.clone(),
            })
        }),
        argon2_slots: 1,
        history_kdf: FAST_KDF,
        tpm: None,
        users: Box::new(FakeUsers),
        passwords: Box::new(FakePasswords),
        clock: Box::new(FakeClock(Arc::new(AtomicU64::new(T0)))),
    }));
    for user in ["alice", "bob"] {
        let r = service.handle(
            &ROOT,
            Request::PinSet {
                user: user.into(),
                password: None,
                pin: Secret::new(PIN),
            },
        );
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
    }
    let callers = [
        (ALICE, "alice"),
        (BOB, "bob"),
        (ALICE, "alice"),
        (BOB, "bob"),
    ];
    let start = Arc::new(std::sync::Barrier::new(callers.len()));
    let threads: Vec<_> = callers
        .into_iter()
        .map(|(caller, user)| {
            let (service, start) = (service.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                service.handle(
                    &caller,
                    Request::SignIn {
                        user: user.into(),
                        service: "t".into(),
                        nonce: Nonce::random().unwrap(),
                        pin: Secret::new(PIN),
                    },
                )
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert!(matches!(r, Response::Signed { .. }), "{r:?}");
    }
    assert_eq!(met.load(Ordering::SeqCst), 0, "two vault runs at once");
    assert_eq!(alone.load(Ordering::SeqCst), 4, "every run waited alone");
}

#[test]
fn a_busy_connection_still_ends_at_its_lifetime() {
    use aloha::frame;
    use std::time::{Duration, Instant};
    let f = fixture();
    let socket = f.dir.join("alohad.sock");
    let service = Arc::new(build(
        &f.dir.join("state"),
        Config::default(),
        false,
        &f.clock,
        &f.da,
        &f.seen,
        &f.fault,
    ));
    let listener = crate::server::bind(&socket).unwrap();
    let shutdown: &'static std::sync::atomic::AtomicBool =
        Box::leak(Box::new(std::sync::atomic::AtomicBool::new(false)));
    let limits = crate::server::Limits {
        // Far beyond the test, so that only the lifetime can end the connection.
        io_timeout: Duration::from_secs(60),
        max_connections: 8,
        max_connections_per_uid: 2,
        connection_lifetime: Duration::from_millis(600),
    };
    let server =
        std::thread::spawn(move || crate::server::serve(listener, service, limits, shutdown));
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut ask = |req: &Request| -> Result<Response, frame::FrameError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        frame::write_frame(
            &mut stream,
            &aloha::protocol::encode(req).unwrap(),
            deadline,
        )?;
        let bytes = frame::read_frame(&mut stream, deadline, frame::MAX_FRAME_LEN)?;
        Ok(aloha::protocol::decode(&bytes).unwrap())
    };
    let hello = Request::Hello {
        version: aloha::protocol::PROTOCOL_VERSION,
        client: "test".into(),
    };
    assert!(matches!(ask(&hello), Ok(Response::Hello { .. })));
    let mut answered = 0;
    let mut ended = None;
    // A request every 100 ms never lets one frame deadline pass; the lifetime (600 ms) still
    // ends it. 100 requests are far more than it allows (a bound on the loop, not on time).
    for _ in 0..100 {
        match ask(&Request::Status {
            user: "alice".into(),
        }) {
            Ok(_) => answered += 1,
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered >= 1, "served before the lifetime ended");
    // alohad closed it: not our own deadline running out, nor a request left unanswered.
    match ended {
        Some(frame::FrameError::Closed) => {}
        Some(frame::FrameError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        other => panic!("the connection did not end by being closed: {other:?}"),
    }
    shutdown.store(true, Ordering::SeqCst);
    server.join().unwrap().unwrap();
}

#[test]
fn the_history_is_no_oracle_for_the_current_pin() {
    let mut config = Config::default();
    config.pin.history = 3;
    let f = fixture_with(config, true);
    f.set(ALICE, "alice", Some("alice-password"), PIN).unwrap();
    // Without the account password a reset says nothing about the history...
    let e = f
        .call(
            ALICE,
            Request::PinReset {
                user: "alice".into(),
                password: Some(Secret::new("guess")),
                new_pin: Secret::new(PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPassword);
    // ... nor does a change with a wrong current PIN, which counts as a wrong PIN.
    let e = f
        .call(
            ALICE,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(OTHER_PIN),
                new_pin: Secret::new(PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    assert_eq!(f.status("alice").failed_attempts, 1);
    // With the current PIN proven, the reuse is refused and the old PIN keeps working.
    let e = f
        .call(
            ALICE,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(PIN),
                new_pin: Secret::new(PIN),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
    f.sign_in(ALICE, "alice", PIN).unwrap();
    // A policy violation is still refused before anything else, at no cost.
    let e = f
        .call(
            ALICE,
            Request::PinReset {
                user: "alice".into(),
                password: None,
                new_pin: Secret::new("123456"),
            },
        )
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PolicyViolation);
}

#[test]
fn a_corrupt_public_key_file_is_replaced_from_the_container_at_start() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let path = registry::key_path(&f.dir, "alice");
    std::fs::write(&path, b"{\"version\":1,\"us").unwrap();
    assert!(registry::load(&f.dir, "alice", Some(1000)).is_err());
    drop(build(
        &f.dir,
        Config::default(),
        true,
        &f.clock,
        &f.da,
        &f.seen,
        &f.fault,
    ));
    assert!(registry::load(&f.dir, "alice", Some(1000)).is_ok());
    f.sign_in(ALICE, "alice", PIN).unwrap();
}
