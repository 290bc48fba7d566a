//! alohad's policy: who may ask what, PIN policy and history, lockout, and the sign-in itself.
//!
//! Everything here is ordinary Rust over injected parts — key backends, the user database, the
//! password checker and the clock — so it is tested without sockets, sleeps or a TPM.
//!
//! One concern per file:
//! - [`access`]: who may act for whom (root for anyone, a user for itself, the account
//!   password for enrolment);
//! - [`password_checks`]: account-password checks one at a time, with a wait after a wrong one;
//! - [`key_stores`]: the TPM's single owner or a software vault of one's own, and what their
//!   failures say;
//! - [`tpm_guard`]: keeping the TPM's global dictionary-attack lockout out of reach;
//! - [`attempt`]: one counted attempt — gate, guard, write-ahead count, the operation, reset;
//! - [`pin_history`]: the check that a new PIN was not used recently;
//! - the operations: [`pin`] (set, change, reset), [`sign_in`], [`admin`] (unlock, remove),
//!   [`status`];
//! - [`registry_sync`]: republishing public keys that drifted from the containers.
//!
//! The wording of lockout refusals lives in the shared library ([`aloha::lockout`]), next to the
//! sentences pam_aloha and `aloha status` show from a status reply.

mod access;
mod admin;
mod attempt;
mod camera;
mod face;
mod failures;
mod key_stores;
mod password_checks;
mod pin;
mod pin_history;
mod registry_sync;
mod sign_in;
mod status;
mod tpm_guard;
mod vault;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aloha::challenge::signin_digest;
use aloha::config::{BackendChoice, Config};
use aloha::protocol::{BackendKind, ErrorCode, FaceProgress, Failure, Gesture, Request, Response};
use tracing::info;

use crate::backend::{KdfParams, KeyBackend};
use crate::camera::Cameras;
use crate::password::PasswordChecker;
use crate::recognition::Recognition;
use crate::semaphore::Semaphore;
use crate::store::Store;
use crate::users::UserDb;
use aloha_face::attempt::Adaptation;
use password_checks::PasswordChecks;
use pin::NewPin;

/// The service named in the log line of an application's presence question.
const PRESENCE: &str = "aloha-presence";

pub use tpm_guard::{TpmLimitsError, check_tpm_limits};

/// The connection a request came on. Each request gets exactly one reply; long face
/// operations send progress reports before it.
pub trait Client {
    /// Send a progress report; false once the client has gone (which ends the operation).
    fn progress(&mut self, report: FaceProgress) -> bool;
    /// Send the reply. A sign-in sends it as soon as the signature exists, before the
    /// bookkeeping that follows a success (the counter reset), so the person waits for the
    /// key store and the write-ahead count only.
    fn reply(&mut self, response: Response);
}

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
pub struct Components {
    pub config: Config,
    pub store: Store,
    /// Makes a software vault for one operation: the vault holds no state worth sharing, so
    /// software-vault users queue behind each other's Argon2id only when `argon2_runs` are busy.
    pub software: SoftwareFactory,
    /// How many Argon2id runs (software-vault operations, PIN-history digests; 64 MiB each)
    /// may overlap.
    pub argon2_runs: usize,
    /// Argon2id cost of PIN-history digests (the software vault's, outside tests).
    pub history_kdf: KdfParams,
    /// `None` where no TPM could be opened (or `backend = "software"`).
    pub tpm: Option<Box<dyn KeyBackend>>,
    pub users: Box<dyn UserDb>,
    pub passwords: Box<dyn PasswordChecker>,
    pub clock: Box<dyn Clock>,
    /// Face recognition (the engine, loaded on first use).
    pub recognition: Arc<dyn Recognition>,
    /// The cameras `[face]` names.
    pub cameras: Box<dyn Cameras>,
}

pub type SoftwareFactory = Box<dyn Fn() -> Box<dyn KeyBackend> + Send + Sync>;

pub struct Service {
    config: Config,
    store: Store,
    software: SoftwareFactory,
    argon2_runs: Semaphore,
    history_kdf: KdfParams,
    tpm: Option<Mutex<Box<dyn KeyBackend>>>,
    users: Box<dyn UserDb>,
    passwords: Box<dyn PasswordChecker>,
    clock: Box<dyn Clock>,
    recognition: Arc<dyn Recognition>,
    cameras: Box<dyn Cameras>,
    /// One camera user at a time (enrolment, sign-in, test).
    camera_in_use: Mutex<()>,
    /// A live near miss's descriptors per user, with when it happened: a PIN sign-in right
    /// after it adds them to the user's profiles.
    near_misses: Mutex<HashMap<String, (Adaptation, u64)>>,
    /// One attempt at a time per user, so concurrent attempts can never exceed the limit.
    user_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Account-password checks: one at a time, and a wait after a wrong password.
    password_checks: PasswordChecks,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("state_dir", &self.store.root())
            .field("tpm", &self.tpm.is_some())
            .finish_non_exhaustive()
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing in alohad panics while holding a lock; if something did, the data is still the
    // best we have, and refusing every later request would be worse.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Service {
    pub fn new(parts: Components) -> Service {
        let service = Service {
            config: parts.config,
            store: parts.store,
            software: parts.software,
            argon2_runs: Semaphore::new(parts.argon2_runs),
            history_kdf: parts.history_kdf,
            tpm: parts.tpm.map(Mutex::new),
            users: parts.users,
            passwords: parts.passwords,
            clock: parts.clock,
            recognition: parts.recognition,
            cameras: parts.cameras,
            camera_in_use: Mutex::new(()),
            near_misses: Mutex::new(HashMap::new()),
            user_locks: Mutex::new(HashMap::new()),
            password_checks: PasswordChecks::default(),
        };
        service.republish_drifted_keys();
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

    /// Carry out one request and send its reply (and any progress reports) to `client`.
    pub fn handle(&self, caller: &Caller, request: Request, client: &mut dyn Client) {
        let op = request.op();
        let result = match request {
            Request::Hello { .. } => Err(Failure::new(
                ErrorCode::BadRequest,
                "hello may only open a connection",
            )),
            Request::Status { user } => self.status(caller, &user).map(Response::Status),
            Request::PinSet {
                user,
                password,
                pin,
            } => self.new_pin(caller, &user, password.as_ref(), &pin, NewPin::Set),
            Request::PinChange {
                user,
                current_pin,
                new_pin,
            } => self.pin_change(caller, &user, &current_pin, &new_pin),
            Request::PinReset {
                user,
                password,
                new_pin,
            } => self.new_pin(caller, &user, password.as_ref(), &new_pin, NewPin::Reset),
            Request::SignIn {
                user,
                service,
                nonce,
                pin,
                vault,
            } => {
                let digest = signin_digest(&user, &nonce);
                // Replies by itself, before its bookkeeping.
                self.sign_in(caller, &user, &service, &digest, &pin, vault, client);
                return;
            }
            Request::AdminUnlock { user } => self.admin_unlock(caller, &user),
            Request::AdminRemove { user } => self.admin_remove(caller, &user),
            Request::Camera => Ok(Response::Camera(self.camera_survey(caller))),
            Request::FaceEnrol { user, label, pin } => {
                self.face_enrol(caller, &user, &label, &pin, &mut |p| client.progress(p))
            }
            Request::FaceSignIn {
                user,
                service,
                nonce,
                timeout_ms,
                vault,
            } => {
                let digest = signin_digest(&user, &nonce);
                self.face_sign_in(caller, &user, &service, &digest, timeout_ms, vault)
            }
            Request::FaceTest { user, timeout_ms } => {
                self.face_test(caller, &user, timeout_ms, &mut |p| client.progress(p))
            }
            Request::FaceList { user } => self.face_list(caller, &user),
            Request::FaceRemove { user, label } => {
                self.face_remove(caller, &user, label.as_deref())
            }
            Request::FaceResume { user } => self.face_resume(caller, &user),
            Request::VaultEnable { user, password } => self.vault_enable(caller, &user, &password),
            Request::VaultDisable { user } => self.vault_disable(caller, &user),
            Request::VaultCapture { user, password } => {
                self.vault_capture(caller, &user, &password)
            }
            Request::Presence { user, ask, gesture } => {
                // The application's question, not a sign-in: nothing to hand to a PAM stack.
                let digest = ask.digest(&user);
                match gesture {
                    Gesture::Pin { pin } => {
                        self.sign_in(caller, &user, PRESENCE, &digest, &pin, false, client);
                        return;
                    }
                    Gesture::Face { timeout_ms } => {
                        self.face_sign_in(caller, &user, PRESENCE, &digest, timeout_ms, false)
                    }
                }
            }
            Request::CameraProbe => self.camera_probe(caller, &mut |p| client.progress(p)),
        };
        client.reply(result.unwrap_or_else(|failure| {
            if op != "face_sign_in" && op != "presence" {
                info!(op, caller_uid = caller.uid, code = ?failure.code, "refused");
            }
            Response::Error(failure)
        }));
    }

    /// The lock that serializes everything done for `user`.
    fn user_lock(&self, user: &str) -> Arc<Mutex<()>> {
        lock(&self.user_locks)
            .entry(user.to_string())
            .or_default()
            .clone()
    }
}
