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

fn fast_vault() -> SoftwareVault {
    SoftwareVault::with_kdf(KdfParams {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    })
}

/// A TPM stand-in over the software vault: global DA counter, lockout, and a probe that
/// records the attempt counter on disk at the moment the key store is asked.
struct DaBackend {
    inner: SoftwareVault,
    da: Arc<Mutex<DaState>>,
    probe: Option<(PathBuf, Arc<Mutex<Vec<String>>>)>,
    unavailable: Arc<Mutex<bool>>,
}

impl DaBackend {
    fn before(&self) -> Result<(), BackendError> {
        if let Some((path, seen)) = &self.probe {
            lock(seen).push(std::fs::read_to_string(path).unwrap_or_default());
        }
        if *lock(&self.unavailable) {
            return Err(BackendError::Unavailable("TPM unplugged".into()));
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
    unavailable: Arc<Mutex<bool>>,
    service: Service,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
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
    let unavailable = Arc::new(Mutex::new(false));
    let service = build(&dir, config, with_tpm, &clock, &da, &seen, &unavailable);
    Fixture {
        dir,
        clock,
        da,
        seen,
        unavailable,
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
    unavailable: &Arc<Mutex<bool>>,
) -> Service {
    let store = Store::open_unlocked(dir).unwrap();
    let probe = Some((store.attempts_path("alice"), seen.clone()));
    let tpm: Option<Box<dyn KeyBackend>> = with_tpm.then(|| {
        Box::new(DaBackend {
            inner: fast_vault(),
            da: da.clone(),
            probe,
            unavailable: unavailable.clone(),
        }) as Box<dyn KeyBackend>
    });
    Service::new(Parts {
        config,
        store,
        software: Box::new(fast_vault()),
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
    *lock(&f.unavailable) = true;
    let e = f.sign_in(ALICE, "alice", PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::BackendUnavailable);
    assert!(e.message.contains("use your password"), "{}", e.message);
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
        &f.unavailable,
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
        &f.unavailable,
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
