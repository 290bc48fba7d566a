//! The service's tests: one scripted key store, fake users, passwords and clock, and a fixture
//! with a temp state dir. The tests are split along the same lines as the service.

mod access;
mod attempt;
mod camera;
mod concurrency;
mod crash;
mod face;
mod pin;
mod pin_history;
mod presence;
mod scripted_face;
mod state;
mod tpm_guard;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aloha::Secret;
use aloha::challenge::{self, Nonce};
use aloha::config::{BackendChoice, Config};
use aloha::lockout::{DaState, Gate, LockoutPolicy, TpmPause};
use aloha::protocol::{
    BackendKind, ErrorCode, FaceProgress, Failure, Request, Response, UserStatus,
};
use aloha::registry;

use super::{Caller, Client, Clock, Components, Service, check_tpm_limits, lock};
use crate::backend::software::SoftwareVault;
use crate::backend::{AuthValue, BackendError, KdfParams, KeyBackend, KeyBlob, NewKey};
use crate::history;
use crate::password::{PasswordChecker, PasswordError};
use crate::store::Store;
use crate::users::{UserDb, UserInfo};

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
        let uid = match name {
            "alice" => 1000,
            "bob" => 1001,
            "root" => 0,
            _ => return Ok(None),
        };
        Ok(Some(UserInfo {
            name: name.into(),
            uid,
        }))
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

/// Runs before the PIN reaches the key store (sign, change_auth); an error refuses there.
type Before = Box<dyn Fn() -> Result<(), BackendError> + Send + Sync>;
/// Runs after the key store judged the PIN (`true`: it was wrong); an error replaces the answer.
type After = Box<dyn Fn(bool) -> Result<(), BackendError> + Send + Sync>;

/// The one key store of the service tests: the software vault at a fast cost, with hooks around
/// every PIN-judging operation, and optionally standing in for a TPM.
struct Scripted {
    vault: SoftwareVault,
    tpm: Option<TpmStandIn>,
    before: Before,
    after: After,
}

/// What makes [`Scripted`] look like a TPM: its blobs are of the TPM kind, it reports a global
/// dictionary-attack state, and it holds a PIN-history key that only it can use.
struct TpmStandIn {
    da: Arc<Mutex<DaState>>,
    history_key: [u8; 32],
    /// The history key is unreachable too while this says so.
    unplugged: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Scripted {
    /// A software vault with hooks.
    fn vault(before: Before, after: After) -> Scripted {
        Scripted {
            vault: SoftwareVault::with_kdf(FAST_KDF),
            tpm: None,
            before,
            after,
        }
    }

    /// One PIN-judging operation with the hooks around it.
    fn judge<T>(
        &mut self,
        op: impl FnOnce(&mut SoftwareVault) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        (self.before)()?;
        let result = op(&mut self.vault);
        (self.after)(matches!(result, Err(BackendError::AuthFailed)))?;
        result
    }

    // The stand-in keeps the software blob inside a "TPM" blob so containers look like TPM ones.
    fn wrap(&self, b: KeyBlob) -> KeyBlob {
        match self.tpm {
            Some(_) => KeyBlob::Tpm {
                public: vec![],
                private: serde_json::to_vec(&b).unwrap(),
            },
            None => b,
        }
    }
}

fn unwrap_blob(b: &KeyBlob) -> KeyBlob {
    match b {
        KeyBlob::Tpm { private, .. } => serde_json::from_slice(private).unwrap(),
        other => other.clone(),
    }
}

impl KeyBackend for Scripted {
    fn kind(&self) -> BackendKind {
        match self.tpm {
            Some(_) => BackendKind::Tpm,
            None => BackendKind::Software,
        }
    }
    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError> {
        let mut k = self.vault.create(auth)?;
        k.blob = self.wrap(k.blob);
        Ok(k)
    }
    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        let blob = unwrap_blob(blob);
        self.judge(|v| v.sign(&blob, auth, digest))
    }
    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        let blob = unwrap_blob(blob);
        let changed = self.judge(|v| v.change_auth(&blob, old, new))?;
        Ok(self.wrap(changed))
    }
    fn exchange(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        point: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, BackendError> {
        let blob = unwrap_blob(blob);
        self.judge(|v| v.exchange(&blob, auth, point))
    }
    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        Ok(self.tpm.as_ref().map(|t| *lock(&t.da)))
    }
    fn create_history_key(&mut self) -> Result<Option<KeyBlob>, BackendError> {
        Ok(self.tpm.as_ref().map(|_| KeyBlob::Tpm {
            public: vec![1],
            private: vec![2],
        }))
    }
    fn history_mac(&mut self, key: &KeyBlob, data: &[u8; 32]) -> Result<[u8; 32], BackendError> {
        let Some(tpm) = &self.tpm else {
            return Err(BackendError::Unavailable("no history key here".into()));
        };
        if (tpm.unplugged)() {
            return Err(BackendError::Unavailable("TPM unplugged".into()));
        }
        match key {
            KeyBlob::Tpm { public, private } if *public == [1] && *private == [2] => {
                Ok(history::software_mac(&tpm.history_key, data).unwrap())
            }
            _ => Err(BackendError::BadBlob("not our history key".into())),
        }
    }
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

/// A temp dir removed when dropped, a failed assert included.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        TempDir(std::env::temp_dir().join(format!("aloha-service-{}", aloha::hex::encode(&b))))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service over a temp state dir, a TPM stand-in (global DA counter, faults, and a probe that
/// records alice's attempt counter on disk at the moment the key store is asked), and a clock.
struct Fixture {
    dir: TempDir,
    cameras: scripted_face::ScriptedCameras,
    clock: Arc<AtomicU64>,
    da: Arc<Mutex<DaState>>,
    seen: Arc<Mutex<Vec<String>>>,
    fault: Arc<Mutex<Fault>>,
    service: Service,
}

fn fixture_with(mut config: Config, with_tpm: bool) -> Fixture {
    // The scripted camera delivers every 5 ms; pacing would only slow the tests down.
    config.face.frame_interval_ms = 0;
    let dir = TempDir::new();
    let clock = Arc::new(AtomicU64::new(T0));
    let da = Arc::new(Mutex::new(DaState {
        counter: 0,
        max_tries: 32,
        recovery_seconds: 7200,
        in_lockout: false,
    }));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fault = Arc::new(Mutex::new(Fault::None));
    let cameras = scripted_face::ScriptedCameras::default();
    let service = build(
        &dir.0, config, with_tpm, &clock, &da, &seen, &fault, &cameras,
    );
    Fixture {
        dir,
        cameras,
        clock,
        da,
        seen,
        fault,
        service,
    }
}

fn fixture() -> Fixture {
    fixture_with(Config::default(), true)
}

/// The TPM stand-in's hooks: the probe, the faults, and the DA counter a wrong PIN raises.
fn tpm_stand_in(
    probe: PathBuf,
    da: &Arc<Mutex<DaState>>,
    seen: &Arc<Mutex<Vec<String>>>,
    fault: &Arc<Mutex<Fault>>,
) -> Scripted {
    let (da_before, da_after) = (da.clone(), da.clone());
    let (fault_before, fault_after, fault_unplugged) =
        (fault.clone(), fault.clone(), fault.clone());
    let seen = seen.clone();
    let mut scripted = Scripted::vault(
        Box::new(move || {
            lock(&seen).push(std::fs::read_to_string(&probe).unwrap_or_default());
            match *lock(&fault_before) {
                Fault::Before => return Err(BackendError::Unavailable("TPM unplugged".into())),
                Fault::Lockout => return Err(BackendError::Lockout),
                Fault::None | Fault::After => {}
            }
            if lock(&da_before).in_lockout {
                return Err(BackendError::Lockout);
            }
            Ok(())
        }),
        Box::new(move |wrong| {
            if wrong {
                let mut da = lock(&da_after);
                da.counter += 1;
                da.in_lockout = da.counter >= da.max_tries;
            }
            if *lock(&fault_after) == Fault::After {
                return Err(BackendError::Indeterminate("response HMAC wrong".into()));
            }
            Ok(())
        }),
    );
    scripted.tpm = Some(TpmStandIn {
        da: da.clone(),
        history_key: [9; 32],
        unplugged: Box::new(move || *lock(&fault_unplugged) == Fault::Before),
    });
    scripted
}

#[allow(clippy::too_many_arguments)]
fn build(
    dir: &Path,
    config: Config,
    with_tpm: bool,
    clock: &Arc<AtomicU64>,
    da: &Arc<Mutex<DaState>>,
    seen: &Arc<Mutex<Vec<String>>>,
    fault: &Arc<Mutex<Fault>>,
    cameras: &scripted_face::ScriptedCameras,
) -> Service {
    let store = Store::open_unlocked(dir).unwrap();
    let probe = store.attempts_path("alice");
    let tpm: Option<Box<dyn KeyBackend>> =
        with_tpm.then(|| Box::new(tpm_stand_in(probe, da, seen, fault)) as Box<dyn KeyBackend>);
    Service::new(Components {
        config,
        store,
        software: Box::new(|| Box::new(Scripted::vault(Box::new(|| Ok(())), Box::new(|_| Ok(()))))),
        argon2_runs: 4,
        history_kdf: FAST_KDF,
        tpm,
        users: Box::new(FakeUsers),
        passwords: Box::new(FakePasswords),
        clock: Box::new(FakeClock(clock.clone())),
        recognition: Arc::new(scripted_face::ScriptedRecognition),
        cameras: Box::new(cameras.clone()),
    })
}

/// A software-vault-only service whose vaults come from `vault`, with `argon2_runs` permits.
fn software_service(
    dir: &TempDir,
    argon2_runs: usize,
    vault: impl Fn() -> Scripted + Send + Sync + 'static,
) -> Arc<Service> {
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    Arc::new(Service::new(Components {
        config,
        store: Store::open_unlocked(&dir.0).unwrap(),
        software: Box::new(move || Box::new(vault())),
        argon2_runs,
        history_kdf: FAST_KDF,
        tpm: None,
        users: Box::new(FakeUsers),
        passwords: Box::new(FakePasswords),
        clock: Box::new(FakeClock(Arc::new(AtomicU64::new(T0)))),
        recognition: Arc::new(scripted_face::ScriptedRecognition),
        cameras: Box::new(scripted_face::ScriptedCameras::default()),
    }))
}

impl Fixture {
    fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Another service over `dir` with this fixture's clock, TPM stand-in state and faults (as
    /// alohad restarting).
    fn rebuild(&self, dir: &Path, config: Config, with_tpm: bool) -> Service {
        build(
            dir,
            config,
            with_tpm,
            &self.clock,
            &self.da,
            &self.seen,
            &self.fault,
            &self.cameras,
        )
    }

    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    fn call(&self, caller: Caller, req: Request) -> Result<Response, Failure> {
        match self.service.handle_quietly(&caller, req) {
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
                vault: false,
            },
        )?;
        let Response::Signed { signature, .. } = resp else {
            panic!("unexpected {resp:?}")
        };
        let key = registry::load(self.dir(), user, None).unwrap();
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

    fn change(&self, cur: &str, new: &str) -> Result<Response, Failure> {
        self.call(
            ROOT,
            Request::PinChange {
                user: "alice".into(),
                current_pin: Secret::new(cur),
                new_pin: Secret::new(new),
            },
        )
    }

    fn reset_to(&self, pin: &str) -> Result<Response, Failure> {
        self.call(
            ROOT,
            Request::PinReset {
                user: "alice".into(),
                password: None,
                new_pin: Secret::new(pin),
            },
        )
    }

    fn history_json(&self, user: &str) -> serde_json::Value {
        let path = self
            .dir()
            .join(format!("private/users/{user}/history.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }
}

/// A client that keeps what the service sent it, and insists on exactly one reply.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) reports: Vec<FaceProgress>,
    pub(super) replies: Vec<Response>,
}

impl Client for Recorder {
    fn progress(&mut self, report: FaceProgress) -> bool {
        self.reports.push(report);
        true
    }

    fn reply(&mut self, response: Response) {
        self.replies.push(response);
    }
}

impl Recorder {
    pub(super) fn reply(mut self) -> Response {
        assert_eq!(
            self.replies.len(),
            1,
            "one reply per request: {:?}",
            self.replies
        );
        self.replies.remove(0)
    }
}

impl Service {
    /// [`Service::handle`] for requests that send no progress reports: the reply.
    fn handle_quietly(&self, caller: &Caller, request: Request) -> Response {
        let mut client = Recorder::default();
        self.handle(caller, request, &mut client);
        client.reply()
    }
}
