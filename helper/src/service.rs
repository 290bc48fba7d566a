//! alohad's policy: who may ask what, PIN policy and history, lockout, and the sign-in itself.
//!
//! Everything here is ordinary Rust over injected parts — key backends, the user database, the
//! password checker and the clock — so it is tested without sockets, sleeps or a TPM.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aloha::Secret;
use aloha::challenge::{Nonce, signin_digest};
use aloha::config::{BackendChoice, Config};
use aloha::lockout::{Attempts, Gate};
use aloha::protocol::{
    BackendKind, ErrorCode, Failure, Request, Response, TpmLockoutStatus, TpmPause, UserStatus,
};
use aloha::registry::{self, valid_user_name};
use aloha::timefmt;
use tracing::{error, info, warn};

use crate::backend::{AuthValue, BackendError, DaState, KdfParams, KeyBackend, SALT_LEN};
use crate::history;
use crate::password::{PasswordChecker, PasswordError};
use crate::slots::{Slot, Slots};
use crate::store::{
    CONTAINER_VERSION, Container, History, Protectors, Store, StoreError, StoredHistory,
};
use crate::users::{UserDb, UserInfo};

/// Unix seconds, injected so lockout windows are tested without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Who is asking, from SO_PEERCRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: i32,
}

impl Caller {
    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// What the service is built from.
#[allow(missing_debug_implementations)]
pub struct Parts {
    pub config: Config,
    pub store: Store,
    /// Makes a software vault for one operation: the vault holds no state worth sharing, so
    /// software-vault users queue behind each other's Argon2id only when `argon2_slots` are full.
    pub software: SoftwareFactory,
    /// How many Argon2id runs (software-vault operations, PIN-history digests; 64 MiB each)
    /// may overlap.
    pub argon2_slots: usize,
    /// Argon2id cost of PIN-history digests (the software vault's, outside tests).
    pub history_kdf: KdfParams,
    /// `None` where no TPM could be opened (or `backend = "software"`).
    pub tpm: Option<Box<dyn KeyBackend>>,
    pub users: Box<dyn UserDb>,
    pub passwords: Box<dyn PasswordChecker>,
    pub clock: Box<dyn Clock>,
}

pub type SoftwareFactory = Box<dyn Fn() -> Box<dyn KeyBackend> + Send + Sync>;

pub struct Service {
    config: Config,
    store: Store,
    software: SoftwareFactory,
    argon2_slots: Slots,
    history_kdf: KdfParams,
    tpm: Option<Mutex<Box<dyn KeyBackend>>>,
    users: Box<dyn UserDb>,
    passwords: Box<dyn PasswordChecker>,
    clock: Box<dyn Clock>,
    /// One attempt at a time per user, so concurrent attempts can never exceed the limit.
    user_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("state_dir", &self.store.root())
            .field("tpm", &self.tpm.is_some())
            .finish_non_exhaustive()
    }
}

type Outcome<T> = Result<T, Failure>;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in alohad panics while holding a lock; if something did, the data is still the
    // best we have, and refusing every later request would be worse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn fail(code: ErrorCode, message: impl Into<String>) -> Failure {
    Failure::new(code, message)
}

fn store_failure(user: &str, e: StoreError) -> Failure {
    match e {
        StoreError::Corrupt { .. } => fail(
            ErrorCode::StateCorrupt,
            format!(
                "{e}. PIN sign-in for {user} is refused until an administrator runs \
                 `aloha admin unlock --user {user}` (attempt counter) or `aloha pin reset` (container)."
            ),
        ),
        other => fail(
            ErrorCode::Internal,
            format!("alohad could not use its state: {other}"),
        ),
    }
}

fn random<const N: usize>() -> Outcome<[u8; N]> {
    let mut salt = [0u8; N];
    getrandom::fill(&mut salt)
        .map_err(|e| fail(ErrorCode::Internal, format!("no randomness: {e}")))?;
    Ok(salt)
}

fn random_salt() -> Outcome<[u8; SALT_LEN]> {
    random()
}

/// A key store in use: the TPM's (shared, locked) or a software vault of one's own.
enum Held<'a> {
    Shared(MutexGuard<'a, Box<dyn KeyBackend>>),
    /// A vault of its own, and the slot that bounds how many run at once.
    Own {
        backend: Box<dyn KeyBackend>,
        _slot: Slot<'a>,
    },
}

impl Held<'_> {
    fn get(&mut self) -> &mut dyn KeyBackend {
        match self {
            Held::Shared(guard) => &mut ***guard,
            Held::Own { backend, .. } => &mut **backend,
        }
    }
}

/// A vetted new PIN: the history to store once it is set (`None`: keep none), and anything
/// the reply must tell.
#[derive(Debug, Default)]
struct Vetted {
    history: Option<History>,
    note: Option<String>,
}

impl Vetted {
    fn reply(&self, message: String) -> Response {
        let message = match &self.note {
            Some(note) => format!("{message} {note}"),
            None => message,
        };
        Response::Done { message }
    }
}

/// When the TPM guard pauses PIN attempts: the DA counter is within `headroom` of maxTries, or
/// the TPM is in lockout. `Some(retry_at)`, where `retry_at` is `None` if the TPM never forgets.
pub fn tpm_pause(da: &DaState, headroom: u32, now: u64) -> Option<Option<u64>> {
    let limit = da.max_tries.saturating_sub(headroom);
    if !da.in_lockout && da.counter < limit {
        return None;
    }
    let excess = u64::from(da.counter.saturating_sub(limit)) + 1;
    Some(
        (da.recovery_seconds > 0)
            .then(|| now.saturating_add(excess.saturating_mul(u64::from(da.recovery_seconds)))),
    )
}

/// The per-user limit must stay below the TPM guard, or one user's wrong PINs alone would
/// pause PIN sign-in for every user: `max_attempts + da_headroom < maxTries`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "lockout.max_attempts = {max_attempts} plus tpm.da_headroom = {da_headroom} is not below the \
     TPM's maxTries = {max_tries}: one user's wrong PINs alone would pause PIN sign-in for every \
     user. Either {}, or raise the TPM's maxTries (e.g. `tpm2_dictionarylockout -s -n 32`, with \
     the lockout hierarchy's authorization)",
    limits_fix(*.max_tries, *.da_headroom)
)]
pub struct TpmLimitsError {
    pub max_attempts: u32,
    pub da_headroom: u32,
    pub max_tries: u32,
}

fn limits_fix(max_tries: u32, da_headroom: u32) -> String {
    match max_tries.checked_sub(da_headroom.saturating_add(1)) {
        Some(most) if most > 0 => {
            format!("lower lockout.max_attempts to at most {most} in aloha.toml")
        }
        _ => "lower tpm.da_headroom in aloha.toml".to_string(),
    }
}

pub fn check_tpm_limits(
    max_attempts: u32,
    da_headroom: u32,
    da: &DaState,
) -> Result<(), TpmLimitsError> {
    match max_attempts.checked_add(da_headroom) {
        Some(needed) if needed < da.max_tries => Ok(()),
        _ => Err(TpmLimitsError {
            max_attempts,
            da_headroom,
            max_tries: da.max_tries,
        }),
    }
}

impl Service {
    pub fn new(parts: Parts) -> Service {
        let service = Service {
            config: parts.config,
            store: parts.store,
            software: parts.software,
            argon2_slots: Slots::new(parts.argon2_slots),
            history_kdf: parts.history_kdf,
            tpm: parts.tpm.map(Mutex::new),
            users: parts.users,
            passwords: parts.passwords,
            clock: parts.clock,
            user_locks: Mutex::new(HashMap::new()),
        };
        service.reconcile_registry();
        service
    }

    /// The backend new containers go to.
    pub fn default_backend(&self) -> BackendKind {
        match (self.config.tpm.backend, &self.tpm) {
            (BackendChoice::Software, _) | (BackendChoice::Auto, None) => BackendKind::Software,
            (BackendChoice::Tpm | BackendChoice::Auto, Some(_)) | (BackendChoice::Tpm, None) => {
                BackendKind::Tpm
            }
        }
    }

    /// A crash between writing a container and publishing its key leaves them out of step;
    /// the container is authoritative, so republish at start.
    fn reconcile_registry(&self) {
        let Ok(entries) = std::fs::read_dir(self.store.root().join("private/users")) else {
            return;
        };
        for entry in entries.flatten() {
            let user = entry.file_name().to_string_lossy().into_owned();
            match self.store.load_container(&user) {
                Ok(Some(c)) => {
                    let path = registry::key_path(self.store.root(), &user);
                    let why = match registry::load(self.store.root(), &user, Some(c.uid)) {
                        Ok(k) if k == c.registered_key() => continue,
                        Ok(_) => "it did not match the user's key container".to_string(),
                        Err(_) if !path.exists() => "it was missing".to_string(),
                        Err(e) => format!("it was corrupt or unusable ({e})"),
                    };
                    let shown = path.display().to_string();
                    match self.store.publish_key(&c.registered_key()) {
                        Ok(()) => warn!(
                            user,
                            path = shown,
                            why,
                            "replaced the public key file with the one in the user's container"
                        ),
                        Err(e) => {
                            error!(user, path = shown, why, error = %e, "cannot republish the public key")
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => error!(user, error = %e, "container unreadable"),
            }
        }
    }

    pub fn handle(&self, caller: &Caller, request: Request) -> Response {
        let op = request.op();
        let result = match request {
            Request::Hello { .. } => Err(fail(
                ErrorCode::BadRequest,
                "hello may only open a connection",
            )),
            Request::Status { user } => self.status(caller, &user).map(Response::Status),
            Request::PinSet {
                user,
                password,
                pin,
            } => self.pin_set(caller, &user, password.as_ref(), &pin),
            Request::PinChange {
                user,
                current_pin,
                new_pin,
            } => self.pin_change(caller, &user, &current_pin, &new_pin),
            Request::PinReset {
                user,
                password,
                new_pin,
            } => self.pin_reset(caller, &user, password.as_ref(), &new_pin),
            Request::SignIn {
                user,
                service,
                nonce,
                pin,
            } => self.sign_in(caller, &user, &service, &nonce, &pin),
            Request::AdminUnlock { user } => self.admin_unlock(caller, &user),
            Request::AdminRemove { user } => self.admin_remove(caller, &user),
        };
        result.unwrap_or_else(|failure| {
            if !matches!(op, "sign_in") {
                info!(op, caller_uid = caller.uid, code = ?failure.code, "refused");
            }
            Response::Error(failure)
        })
    }

    // ---------------------------------------------------------------- who may ask

    fn authorize(&self, caller: &Caller, user: &str) -> Outcome<UserInfo> {
        if !valid_user_name(user) {
            return Err(fail(
                ErrorCode::BadRequest,
                format!("{user:?} is not a valid user name"),
            ));
        }
        let info = self
            .users
            .by_name(user)
            .map_err(|e| fail(ErrorCode::Internal, e))?
            .ok_or_else(|| {
                fail(
                    ErrorCode::UnknownUser,
                    format!("There is no user named {user}."),
                )
            })?;
        if !caller.is_root() && caller.uid != info.uid {
            return Err(fail(
                ErrorCode::Forbidden,
                format!(
                    "uid {} may only act for itself, not for {user}.",
                    caller.uid
                ),
            ));
        }
        Ok(info)
    }

    fn require_root(&self, caller: &Caller, user: &str) -> Outcome<()> {
        if !valid_user_name(user) {
            return Err(fail(
                ErrorCode::BadRequest,
                format!("{user:?} is not a valid user name"),
            ));
        }
        if !caller.is_root() {
            return Err(fail(
                ErrorCode::Forbidden,
                "Only root may do this: run it with sudo.",
            ));
        }
        Ok(())
    }

    /// Non-root callers prove themselves with their account password; root is the administrator.
    fn require_password(
        &self,
        caller: &Caller,
        info: &UserInfo,
        password: Option<&Secret>,
        what: &str,
    ) -> Outcome<()> {
        if caller.is_root() {
            return Ok(());
        }
        let Some(password) = password else {
            return Err(fail(
                ErrorCode::WrongPassword,
                format!("Your account password is needed to {what}."),
            ));
        };
        match self.passwords.check(&info.name, password) {
            Ok(()) => Ok(()),
            Err(PasswordError::Wrong) => {
                warn!(
                    user = info.name,
                    caller_uid = caller.uid,
                    "wrong account password"
                );
                Err(fail(
                    ErrorCode::WrongPassword,
                    "The account password is wrong.",
                ))
            }
            Err(e @ PasswordError::Expired) => Err(fail(ErrorCode::WrongPassword, e.to_string())),
            Err(e @ PasswordError::Unavailable(_)) => Err(fail(ErrorCode::Internal, e.to_string())),
        }
    }

    fn user_lock(&self, user: &str) -> Arc<Mutex<()>> {
        lock(&self.user_locks)
            .entry(user.to_string())
            .or_default()
            .clone()
    }

    // ---------------------------------------------------------------- backends

    /// The key store for `kind`: the TPM's single owner (one command sequence at a time), or a
    /// software vault of the caller's own (callers are serialized per user, and at most
    /// `argon2_slots` run at once, which bounds Argon2id's memory).
    fn backend(&self, kind: BackendKind) -> Outcome<Held<'_>> {
        match kind {
            BackendKind::Software => {
                let slot = self.argon2_slots.acquire();
                Ok(Held::Own {
                    backend: (self.software)(),
                    _slot: slot,
                })
            }
            BackendKind::Tpm => self.tpm.as_ref().map(|m| Held::Shared(lock(m))).ok_or_else(|| {
                fail(
                    ErrorCode::BackendUnavailable,
                    "This PIN lives in the TPM, but alohad has no TPM available (see `alohad` logs \
                     and [tpm] in aloha.toml); use your password.",
                )
            }),
        }
    }

    fn backend_failure(&self, user: &str, e: BackendError) -> Failure {
        match e {
            BackendError::AuthFailed => fail(ErrorCode::WrongPin, "Wrong PIN."),
            BackendError::Lockout => fail(
                ErrorCode::TpmLockout,
                "The TPM is in its dictionary-attack lockout, which pauses PIN sign-in for every \
                 user on this machine; use your password.",
            ),
            BackendError::BadBlob(m) => fail(
                ErrorCode::StateCorrupt,
                format!(
                    "{user}'s key cannot be used ({m}); this happens after a TPM was cleared or \
                     replaced. Set a new PIN with `aloha pin reset`; use your password meanwhile."
                ),
            ),
            BackendError::Unavailable(m) => fail(
                ErrorCode::BackendUnavailable,
                format!("The key store is unavailable ({m}); use your password."),
            ),
            BackendError::Indeterminate(m) => fail(
                ErrorCode::BackendUnavailable,
                format!(
                    "The key store gave no trustworthy answer after the PIN was sent ({m}), so \
                     this counts as a failed attempt. Use your password; if it repeats, an \
                     administrator should check the TPM and its connection."
                ),
            ),
        }
    }

    /// Refuse attempts that could push the TPM into its global lockout, and all attempts while
    /// the limits do not fit the TPM (checked at start too, but the DA state may have been
    /// unreadable then, and maxTries can change while alohad runs).
    fn tpm_guard(&self, backend: &mut dyn KeyBackend, now: u64) -> Outcome<()> {
        let da = match backend.dictionary_attack_state() {
            Ok(Some(da)) => da,
            Ok(None) => return Ok(()),
            Err(e) => return Err(self.backend_failure("this user", e)),
        };
        let limits = &self.config;
        if let Err(e) = check_tpm_limits(limits.lockout.max_attempts, limits.tpm.da_headroom, &da) {
            error!(error = %e, "refusing TPM PIN attempts");
            return Err(fail(
                ErrorCode::BackendUnavailable,
                format!("alohad refuses TPM PIN attempts: {e}. Use your password meanwhile."),
            ));
        }
        let Some(until) = tpm_pause(&da, self.config.tpm.da_headroom, now) else {
            return Ok(());
        };
        let pause = TpmPause {
            in_lockout: da.in_lockout,
            until,
        };
        let mut f = fail(
            ErrorCode::TpmLockout,
            format!(
                "The TPM counted {} of {} wrong PINs on this machine: PIN sign-in is paused for \
                 every user — {}",
                da.counter,
                da.max_tries,
                aloha::lockout::tpm_pause_reason(pause, now)
            ),
        );
        f.retry_at = until;
        Err(f)
    }

    // ---------------------------------------------------------------- lockout

    fn refusal(&self, user: &str, gate: Gate, attempts: &Attempts, now: u64) -> Outcome<()> {
        let Some(message) = aloha::lockout::refusal_message(user, gate, attempts.failures, now)
        else {
            return Ok(());
        };
        let (code, retry_at) = match gate {
            Gate::Delayed { until } => (ErrorCode::Delayed, Some(until)),
            _ => (ErrorCode::Locked, None),
        };
        Err(Failure {
            code,
            message,
            retry_at,
            left_before_lock: Some(
                self.config
                    .lockout
                    .max_attempts
                    .saturating_sub(attempts.failures),
            ),
        })
    }

    fn wrong_pin(&self, user: &str, counted: &Attempts, now: u64) -> Failure {
        let policy = &self.config.lockout;
        let left = policy.max_attempts.saturating_sub(counted.failures);
        let (message, retry_at) = match policy.gate(counted, now) {
            Gate::Locked => (
                format!(
                    "Wrong PIN. {user}'s PIN is now locked after {} wrong tries — use your password; \
                     `aloha pin reset` (with the account password) or an administrator lifts the lock.",
                    counted.failures
                ),
                None,
            ),
            Gate::Delayed { until } => (
                format!(
                    "Wrong PIN. Next try in {} (at {}); {left} more wrong PINs lock it.",
                    timefmt::wait(until - now),
                    timefmt::utc(until)
                ),
                Some(until),
            ),
            Gate::Open {
                left_before_delay, ..
            } if left_before_delay > 0 => (
                format!(
                    "Wrong PIN. {left_before_delay} more {} before a waiting time.",
                    if left_before_delay == 1 {
                        "try"
                    } else {
                        "tries"
                    }
                ),
                None,
            ),
            Gate::Open { .. } if policy.delay_after(counted.failures + 1) > 0 && left > 1 => (
                format!("Wrong PIN. Another wrong PIN starts a waiting time; {left} more lock it."),
                None,
            ),
            Gate::Open { .. } => (
                format!(
                    "Wrong PIN. {left} more wrong {} lock it.",
                    if left == 1 { "PIN would" } else { "PINs" }
                ),
                None,
            ),
        };
        Failure {
            code: ErrorCode::WrongPin,
            message,
            retry_at,
            left_before_lock: Some(left),
        }
    }

    /// A key-store failure after the PIN was sent: counted like a wrong PIN, so the reply
    /// says where the count now stands (a waiting time, or the lock), as [`Self::wrong_pin`] does.
    fn counted_failure(
        &self,
        user: &str,
        e: BackendError,
        counted: &Attempts,
        now: u64,
    ) -> Failure {
        let policy = &self.config.lockout;
        let left = policy.max_attempts.saturating_sub(counted.failures);
        let mut f = self.backend_failure(user, e);
        let (standing, retry_at) = match policy.gate(counted, now) {
            Gate::Locked => (
                format!(
                    "{user}'s PIN is now locked after {} failed tries; `aloha pin reset` (with the \
                     account password) or an administrator lifts the lock.",
                    counted.failures
                ),
                None,
            ),
            Gate::Delayed { until } => (
                format!(
                    "Next try in {} (at {}); {left} more failed tries lock it.",
                    timefmt::wait(until.saturating_sub(now)),
                    timefmt::utc(until)
                ),
                Some(until),
            ),
            Gate::Open { .. } => (format!("{left} more failed tries lock it."), None),
        };
        f.message = format!("{} {standing}", f.message);
        f.retry_at = f.retry_at.or(retry_at);
        f.left_before_lock = Some(left);
        f
    }

    /// One PIN attempt against `container`'s key: gate, TPM guard, write-ahead count, the
    /// operation, then reset on success. The caller holds the user's lock.
    fn attempt<T>(
        &self,
        user: &str,
        container: &Container,
        op: impl FnOnce(&mut dyn KeyBackend) -> Result<T, BackendError>,
    ) -> Outcome<T> {
        let now = self.clock.now();
        let attempts = self
            .store
            .load_attempts(user)
            .map_err(|e| store_failure(user, e))?;
        self.refusal(
            user,
            self.config.lockout.gate(&attempts, now),
            &attempts,
            now,
        )?;
        let mut held = self.backend(container.backend)?;
        let backend = held.get();
        self.tpm_guard(backend, now)?;
        // Write-ahead: the attempt is counted on disk before the PIN reaches the key store, so
        // a crash or kill mid-attempt never yields a free guess.
        let counted = Attempts {
            failures: attempts.failures.saturating_add(1),
            last_failure: now,
        };
        self.store.save_attempts(user, &counted).map_err(|e| {
            fail(
                ErrorCode::Internal,
                format!("alohad cannot record the attempt, so it refuses it: {e}"),
            )
        })?;
        match op(backend) {
            Ok(value) => {
                if let Err(e) = self.store.save_attempts(user, &Attempts::default()) {
                    error!(user, error = %e, "cannot reset the attempt counter after a success");
                }
                Ok(value)
            }
            Err(BackendError::AuthFailed) => Err(self.wrong_pin(user, &counted, now)),
            Err(e @ (BackendError::Unavailable(_) | BackendError::BadBlob(_))) => {
                // The key store never judged the PIN (it refused before the PIN-carrying
                // command): give the attempt back.
                if let Err(e) = self.store.save_attempts(user, &attempts) {
                    error!(user, error = %e, "cannot restore the attempt counter");
                }
                Err(self.backend_failure(user, e))
            }
            Err(e @ (BackendError::Indeterminate(_) | BackendError::Lockout)) => {
                // The PIN reached the key store and the answer cannot be trusted (a TPM error
                // response is not authenticated; the guard above already refuses a TPM it saw
                // in lockout): the attempt stays counted.
                warn!(user, error = %e, "no trustworthy answer after the PIN was sent; the attempt counts");
                Err(self.counted_failure(user, e, &counted, now))
            }
        }
    }

    fn load_container(&self, user: &str) -> Outcome<Container> {
        self.store
            .load_container(user)
            .map_err(|e| store_failure(user, e))?
            .ok_or_else(|| {
                fail(
                    ErrorCode::NotEnrolled,
                    format!("{user} has no Aloha PIN; set one with `aloha pin set`."),
                )
            })
    }

    // ---------------------------------------------------------------- PIN history

    /// The key new histories are made with: the TPM's wherever alohad has one.
    fn preferred_history_key(&self) -> BackendKind {
        if self.tpm.is_some() {
            BackendKind::Tpm
        } else {
            BackendKind::Software
        }
    }

    fn history_failure(&self, user: &str, e: StoreError) -> Failure {
        match e {
            StoreError::Corrupt { .. } => fail(
                ErrorCode::StateCorrupt,
                format!(
                    "{e}. New PINs for {user} are refused until it is fixed: an administrator \
                     restores it from a backup, or deletes it (`rm {}`) — which forgets {user}'s \
                     earlier PINs — and then {user} tries again.",
                    self.store.history_path(user).display()
                ),
            ),
            other => store_failure(user, other),
        }
    }

    fn history_key_failure(&self, user: &str, e: BackendError) -> Failure {
        match e {
            BackendError::BadBlob(m) => fail(
                ErrorCode::StateCorrupt,
                format!(
                    "The TPM cannot use alohad's PIN-history key {} ({m}); the TPM was probably \
                     cleared or replaced, which makes every stored PIN history useless. An \
                     administrator deletes that file and {} (forgetting {user}'s earlier PINs); \
                     then {user} tries again.",
                    self.store.tpm_history_key_path().display(),
                    self.store.history_path(user).display()
                ),
            ),
            other => fail(
                ErrorCode::BackendUnavailable,
                format!(
                    "{user}'s PIN history is kept with the TPM, which alohad cannot use now ({other}); \
                     try again when the TPM is back (see alohad's log). Giving the history up \
                     instead means deleting {}.",
                    self.store.history_path(user).display()
                ),
            ),
        }
    }

    /// A PIN-history key file that cannot be used (missing or corrupt). Unlock or a PIN reset
    /// does not help: only restoring the file, or giving up the histories made with it.
    fn history_key_file_failure(&self, user: &str, path: &Path, e: StoreError) -> Failure {
        let history = self.store.history_path(user);
        match e {
            StoreError::KeyMissing { .. } => fail(
                ErrorCode::StateCorrupt,
                format!(
                    "{e}. New PINs for {user} are refused, because without that key the earlier \
                     PINs cannot be checked. An administrator restores {} from a backup, or runs \
                     `rm {}` (forgetting {user}'s earlier PINs); then {user} tries again.",
                    path.display(),
                    history.display()
                ),
            ),
            StoreError::Corrupt { .. } => fail(
                ErrorCode::StateCorrupt,
                format!(
                    "{e}. New PINs for {user} are refused until it is fixed: an administrator \
                     restores it from a backup, or deletes it and {} (forgetting {user}'s earlier \
                     PINs; other users' histories need the same); then {user} tries again.",
                    history.display()
                ),
            ),
            other => store_failure(user, other),
        }
    }

    fn history_digest(&self, user: &str, history: &History, pin: &Secret) -> Outcome<String> {
        let slot = self.argon2_slots.acquire();
        let stretched = history::stretch(&self.history_kdf, &history.salt, user, pin)
            .map_err(|e| fail(ErrorCode::Internal, e.to_string()))?;
        drop(slot);
        // A history with digests was made with a key that must still exist: a fresh key would
        // make every earlier PIN pass the check without anyone noticing.
        let may_create = history.digests.is_empty();
        let mac = match history.key {
            BackendKind::Software => {
                let path = self.store.history_key_path();
                let k = self
                    .store
                    .history_key(may_create)
                    .map_err(|e| self.history_key_file_failure(user, &path, e))?;
                history::software_mac(&k, &stretched)
                    .map_err(|e| fail(ErrorCode::Internal, e.to_string()))?
            }
            BackendKind::Tpm => {
                let Some(tpm) = &self.tpm else {
                    return Err(self.history_key_failure(
                        user,
                        BackendError::Unavailable("alohad has no TPM".into()),
                    ));
                };
                let mut backend = lock(tpm);
                let path = self.store.tpm_history_key_path();
                let blob = self
                    .store
                    .tpm_history_key(may_create, || match backend.create_history_key() {
                        Ok(Some(blob)) => Ok(blob),
                        Ok(None) => Err(BackendError::Unavailable(
                            "the TPM backend made no history key".into(),
                        )),
                        Err(e) => Err(e),
                    })
                    .map_err(|e| self.history_key_file_failure(user, &path, e))?
                    .map_err(|e| self.history_key_failure(user, e))?;
                backend
                    .history_mac(&blob, &stretched)
                    .map_err(|e| self.history_key_failure(user, e))?
            }
        };
        Ok(aloha::hex::encode(&mac))
    }

    /// The PIN policy's rules, which depend on nothing secret: checked before anything else.
    fn check_policy(&self, pin: &Secret) -> Outcome<()> {
        self.config
            .pin
            .check(pin.expose())
            .map_err(|v| fail(ErrorCode::PolicyViolation, v.to_string()))
    }

    /// The history check of a new PIN. The history holds the current PIN, so this answer is
    /// an oracle for it: only call it once the caller has proven itself (account password,
    /// current PIN, or root).
    fn vet_history(&self, user: &str, pin: &Secret) -> Outcome<Vetted> {
        let keep = self.config.pin.history;
        if keep == 0 {
            return Ok(Vetted::default());
        }
        let reused = || {
            let v = aloha::policy::PolicyViolation::Reused { history: keep };
            fail(ErrorCode::PolicyViolation, v.to_string())
        };
        let fresh = || -> Outcome<History> {
            Ok(History {
                key: self.preferred_history_key(),
                salt: random()?,
                digests: Vec::new(),
            })
        };
        let stored = self
            .store
            .load_history(user)
            .map_err(|e| self.history_failure(user, e))?;
        let (mut history, note) = match stored {
            StoredHistory::Current(h) => (h, None),
            StoredHistory::None => (fresh()?, None),
            StoredHistory::Legacy(old) => {
                // Honour the version-1 entries one last time, then drop them: their fast,
                // unsalted digests are what let the current PIN be recovered offline.
                let path = self.store.history_key_path();
                if path.exists() {
                    let key = self
                        .store
                        .history_key(false)
                        .map_err(|e| self.history_key_file_failure(user, &path, e))?;
                    let digest = history::legacy_digest(&key, user, pin)
                        .map_err(|e| fail(ErrorCode::Internal, e.to_string()))?;
                    if old.iter().take(keep).any(|d| *d == digest) {
                        return Err(reused());
                    }
                }
                warn!(
                    user,
                    "replacing a version-1 PIN history with the salted format"
                );
                (
                    fresh()?,
                    Some(format!(
                        "(The PIN history moved to a stronger format: PINs {user} used before \
                         this one are no longer remembered.)"
                    )),
                )
            }
        };
        let digest = self.history_digest(user, &history, pin)?;
        if history.digests.iter().take(keep).any(|d| *d == digest) {
            return Err(reused());
        }
        history.digests.insert(0, digest);
        history.digests.truncate(keep);
        Ok(Vetted {
            history: Some(history),
            note,
        })
    }

    fn save_history(&self, user: &str, vetted: &Vetted) -> Result<(), StoreError> {
        match &vetted.history {
            Some(h) => self.store.save_history(user, h),
            None => self.store.remove_history(user),
        }
    }

    // ---------------------------------------------------------------- operations

    /// Create a new container (a new key) for `info` under `pin`, replacing any old one.
    fn enrol(&self, info: &UserInfo, pin: &Secret, vetted: &Vetted) -> Outcome<Container> {
        let now = self.clock.now();
        let salt = random_salt()?;
        let auth = AuthValue::from_pin(pin, &salt);
        let kind = self.default_backend();
        let new = self
            .backend(kind)?
            .get()
            .create(&auth)
            .map_err(|e| self.backend_failure(&info.name, e))?;
        let container = Container {
            version: CONTAINER_VERSION,
            user: info.name.clone(),
            uid: info.uid,
            backend: kind,
            created_at: now,
            pin_set_at: now,
            public_key: new.public_key,
            pin_salt: salt,
            protectors: Protectors { pin: new.blob },
        };
        let user = info.name.as_str();
        self.store
            .save_container(&container)
            .map_err(|e| store_failure(user, e))?;
        self.store
            .save_attempts(user, &Attempts::default())
            .and_then(|()| self.save_history(user, vetted))
            .and_then(|()| self.store.publish_key(&container.registered_key()))
            .map_err(|e| store_failure(user, e))?;
        Ok(container)
    }

    fn pin_set(
        &self,
        caller: &Caller,
        user: &str,
        password: Option<&Secret>,
        pin: &Secret,
    ) -> Outcome<Response> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        // A container that exists (even a corrupt one) is not silently replaced.
        if self
            .store
            .load_container(user)
            .map_err(|e| store_failure(user, e))?
            .is_some()
        {
            return Err(fail(
                ErrorCode::AlreadyEnrolled,
                format!(
                    "{user} already has a PIN: change it with `aloha pin change`, or start over with `aloha pin reset`."
                ),
            ));
        }
        self.check_policy(pin)?;
        self.require_password(caller, &info, password, "set a PIN")?;
        let vetted = self.vet_history(user, pin)?;
        let c = self.enrol(&info, pin, &vetted)?;
        info!(user, caller_uid = caller.uid, backend = ?c.backend, "PIN set");
        Ok(vetted.reply(format!("PIN set for {user} ({}).", c.backend.name())))
    }

    fn pin_reset(
        &self,
        caller: &Caller,
        user: &str,
        password: Option<&Secret>,
        pin: &Secret,
    ) -> Outcome<Response> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        self.check_policy(pin)?;
        self.require_password(caller, &info, password, "reset your PIN")?;
        let vetted = self.vet_history(user, pin)?;
        // The old container may be corrupt or locked: a reset replaces it either way.
        let c = self.enrol(&info, pin, &vetted)?;
        info!(user, caller_uid = caller.uid, backend = ?c.backend, "PIN reset: new key, old key destroyed");
        Ok(vetted.reply(format!(
            "New PIN set for {user} with a new key ({}); the old key is destroyed.",
            c.backend.name()
        )))
    }

    fn pin_change(
        &self,
        caller: &Caller,
        user: &str,
        current: &Secret,
        new_pin: &Secret,
    ) -> Outcome<Response> {
        self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let mut container = self.load_container(user)?;
        self.check_policy(new_pin)?;
        let new_salt = random_salt()?;
        let old_auth = AuthValue::from_pin(current, &container.pin_salt);
        let new_auth = AuthValue::from_pin(new_pin, &new_salt);
        let blob = container.protectors.pin.clone();
        let new_blob = self.attempt(user, &container, |b| {
            b.change_auth(&blob, &old_auth, &new_auth)
        })?;
        // Only now, with the current PIN proven: a refusal leaves the old container in place.
        let vetted = self.vet_history(user, new_pin)?;
        container.protectors.pin = new_blob;
        container.pin_salt = new_salt;
        container.pin_set_at = self.clock.now();
        self.store
            .save_container(&container)
            .and_then(|()| self.save_history(user, &vetted))
            .map_err(|e| store_failure(user, e))?;
        info!(user, caller_uid = caller.uid, "PIN changed");
        Ok(vetted.reply(format!("PIN changed for {user}.")))
    }

    fn sign_in(
        &self,
        caller: &Caller,
        user: &str,
        service: &str,
        nonce: &Nonce,
        pin: &Secret,
    ) -> Outcome<Response> {
        let result = self.sign_in_inner(caller, user, nonce, pin);
        let outcome = match &result {
            Ok(_) => "success".to_string(),
            Err(f) => format!("{:?}", f.code),
        };
        info!(
            user,
            caller_uid = caller.uid,
            caller_pid = caller.pid,
            service,
            result = outcome,
            "sign-in attempt"
        );
        result
    }

    fn sign_in_inner(
        &self,
        caller: &Caller,
        user: &str,
        nonce: &Nonce,
        pin: &Secret,
    ) -> Outcome<Response> {
        self.authorize(caller, user)?;
        if pin.is_empty() {
            return Err(fail(
                ErrorCode::BadRequest,
                "An empty PIN is not an attempt.",
            ));
        }
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let container = self.load_container(user)?;
        let now = self.clock.now();
        if let Some(expired) = self
            .config
            .pin
            .expires_at(container.pin_set_at)
            .filter(|t| *t <= now)
        {
            return Err(fail(
                ErrorCode::PinExpired,
                format!(
                    "{user}'s PIN expired on {}: set a new one with `aloha pin change`; use your password meanwhile.",
                    timefmt::utc(expired)
                ),
            ));
        }
        let digest = signin_digest(user, nonce);
        let auth = AuthValue::from_pin(pin, &container.pin_salt);
        let blob = &container.protectors.pin;
        let signature = self.attempt(user, &container, |b| b.sign(blob, &auth, &digest))?;
        Ok(Response::Signed {
            signature: signature.to_vec(),
            backend: container.backend,
        })
    }

    fn admin_unlock(&self, caller: &Caller, user: &str) -> Outcome<Response> {
        self.require_root(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let before = self.store.load_attempts(user).map(|a| a.failures).ok();
        // Overwrites even a corrupt counter: this is the administrator's way out.
        self.store
            .save_attempts(user, &Attempts::default())
            .map_err(|e| store_failure(user, e))?;
        info!(
            user,
            caller_uid = caller.uid,
            "unlocked by an administrator"
        );
        let cleared = match before {
            Some(n) => format!("{n} failed attempts cleared"),
            None => "an unreadable attempt counter replaced".into(),
        };
        Ok(Response::Done {
            message: format!("{user}'s PIN is unlocked ({cleared})."),
        })
    }

    fn admin_remove(&self, caller: &Caller, user: &str) -> Outcome<Response> {
        self.require_root(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        if !self
            .store
            .remove_user(user)
            .map_err(|e| store_failure(user, e))?
        {
            return Err(fail(
                ErrorCode::NotEnrolled,
                format!("{user} has nothing enrolled in Aloha."),
            ));
        }
        info!(user, caller_uid = caller.uid, "removed by an administrator");
        Ok(Response::Done {
            message: format!("Removed {user}'s PIN and key; the password still works."),
        })
    }

    fn status(&self, caller: &Caller, user: &str) -> Outcome<UserStatus> {
        let info = self.authorize(caller, user)?;
        let now = self.clock.now();
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let mut problems = Vec::new();
        let container = self.store.load_container(user).unwrap_or_else(|e| {
            problems.push(e.to_string());
            None
        });
        let attempts = self.store.load_attempts(user).unwrap_or_else(|e| {
            problems.push(e.to_string());
            Attempts {
                failures: self.config.lockout.max_attempts,
                last_failure: now,
            }
        });
        let da = match &self.tpm {
            Some(m) => lock(m).dictionary_attack_state().unwrap_or_else(|e| {
                problems.push(format!("TPM: {e}"));
                None
            }),
            None => None,
        };
        let tpm = da.map(|d: DaState| TpmLockoutStatus {
            counter: d.counter,
            max_tries: d.max_tries,
            recovery_seconds: d.recovery_seconds,
            in_lockout: d.in_lockout,
        });
        let default_backend = self.default_backend();
        // The backend a sign-in (or, without a PIN, the next enrolment) would use.
        let backend = container.as_ref().map_or(default_backend, |c| c.backend);
        let tpm_pause = match (backend, da) {
            (BackendKind::Tpm, Some(d)) => {
                tpm_pause(&d, self.config.tpm.da_headroom, now).map(|until| TpmPause {
                    in_lockout: d.in_lockout,
                    until,
                })
            }
            _ => None,
        };
        Ok(UserStatus {
            user: info.name,
            uid: info.uid,
            enrolled: container.is_some(),
            backend: container.as_ref().map(|c| c.backend),
            protectors: container
                .as_ref()
                .map(Container::protector_names)
                .unwrap_or_default(),
            pin_set_at: container.as_ref().map(|c| c.pin_set_at),
            pin_expires_at: container
                .as_ref()
                .and_then(|c| self.config.pin.expires_at(c.pin_set_at)),
            failed_attempts: attempts.failures,
            max_attempts: self.config.lockout.max_attempts,
            gate: self.config.lockout.gate(&attempts, now),
            tpm,
            tpm_pause,
            default_backend: Some(default_backend),
            protection: Some(backend.protection().to_string()),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
