//! Setting, changing and resetting a PIN. Set and reset make a new key (a reset destroys the
//! old one); change re-wraps the same key under the new PIN and is a counted attempt with the
//! current one.

use aloha::Secret;
use aloha::lockout::Attempts;
use aloha::protocol::{ErrorCode, Failure, Response};
use tracing::{error, info, warn};

use super::failures::{random_salt, store_failure};
use super::key_stores::backend_failure;
use super::pin_history::HistoryUpdate;
use super::{Caller, Service, lock};
use crate::backend::AuthValue;
use crate::store::{CONTAINER_VERSION, Container, Protectors, StoreError};
use crate::users::UserInfo;

/// Which request makes a new key: `pin set` (refused where a container exists) or `pin reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NewPin {
    Set,
    Reset,
}

impl Service {
    /// The PIN policy's rules, which depend on nothing secret: checked before anything else.
    fn check_policy(&self, pin: &Secret) -> Result<(), Failure> {
        self.config
            .pin
            .check(pin.expose())
            .map_err(|v| Failure::new(ErrorCode::PolicyViolation, v.to_string()))
    }

    /// Create a new container (a new key) for `info` under `pin`, replacing any old one.
    fn enrol(
        &self,
        info: &UserInfo,
        pin: &Secret,
        update: &HistoryUpdate,
    ) -> Result<Container, Failure> {
        let now = self.clock.now();
        let salt = random_salt()?;
        let auth = AuthValue::from_pin(pin, &salt);
        let kind = self.default_backend();
        let new = self
            .key_store(kind)?
            .get()
            .create(&auth)
            .map_err(|e| backend_failure(&info.name, e))?;
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
        let replaces = matches!(self.store.load_container(user), Ok(Some(_)));
        self.store
            .save_container(&container)
            .map_err(|e| store_failure(user, e))?;
        let rest = self
            .store
            .save_attempts(user, &Attempts::default())
            .and_then(|()| self.save_history(user, update))
            .and_then(|()| self.store.publish_key(&container.registered_key()));
        if let Err(e) = rest {
            // A first PIN is taken back whole (a container without its public key would stop
            // the user from setting one again); a replaced key stays, and its public key is
            // republished when alohad next loads it (registry_sync).
            if !replaces && let Err(e) = self.store.remove_user(user) {
                error!(user, error = %e, "cannot take back a half-made first PIN");
            }
            return Err(store_failure(user, e));
        }
        Ok(container)
    }

    /// `aloha pin set` or `aloha pin reset`: a new key under `pin`, for a caller who proves
    /// itself. The policy first (it depends on nothing secret), then the password, then the
    /// history (an oracle for the current PIN, so only now).
    pub(super) fn new_pin(
        &self,
        caller: &Caller,
        user: &str,
        password: Option<&Secret>,
        pin: &Secret,
        kind: NewPin,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        // A set never replaces a container that exists (even a corrupt one); a reset replaces
        // it whatever its state (it may be corrupt or locked) — except one a newer Aloha
        // wrote, which nothing here replaces.
        let existing = self.store.load_container(user);
        if let Err(e @ StoreError::Newer { .. }) = existing {
            return Err(store_failure(user, e));
        }
        if kind == NewPin::Set && existing.map_err(|e| store_failure(user, e))?.is_some() {
            return Err(Failure::new(
                ErrorCode::AlreadyEnrolled,
                format!(
                    "{user} already has a PIN: change it with `aloha pin change`, or start over with `aloha pin reset`."
                ),
            ));
        }
        let what = match kind {
            NewPin::Set => "set a PIN",
            NewPin::Reset => "reset your PIN",
        };
        self.check_policy(pin)?;
        self.require_password(caller, &info, password, what)?;
        let update = self.vet_history(user, pin)?;
        let c = self.enrol(&info, pin, &update)?;
        let backend = c.backend.name();
        let (mut message, face) = match kind {
            NewPin::Set => {
                info!(user, caller_uid = caller.uid, backend = ?c.backend, "PIN set");
                // A face record without a container belongs to a key that is gone.
                if let Err(e) = self.store.remove_face(user) {
                    warn!(user, error = %e, "cannot remove a stale face record");
                }
                (format!("PIN set for {user} ({backend})."), None)
            }
            NewPin::Reset => {
                info!(user, caller_uid = caller.uid, backend = ?c.backend, "PIN reset: new key, old key destroyed");
                let auth = AuthValue::from_pin(pin, &c.pin_salt);
                let mut store = self.key_store(c.backend)?;
                let face = self.reprotect_face(user, &c, &auth, store.get());
                (
                    format!(
                        "New PIN set for {user} with a new key ({backend}); the old key is destroyed."
                    ),
                    face,
                )
            }
        };
        if let Some(face) = face {
            message = format!("{message} {face}");
        }
        // A vault sealed to the old key (or, after a set, to a key that is gone) cannot open.
        match self.store.remove_vault(user) {
            Ok(true) if kind == NewPin::Reset => {
                message = format!(
                    "{message} The password vault belonged to the old key and is gone: `aloha vault enable` keeps the password again."
                )
            }
            Ok(_) => {}
            Err(e) => warn!(user, error = %e, "cannot remove a password vault of the old key"),
        }
        Ok(update.reply(message))
    }

    pub(super) fn pin_change(
        &self,
        caller: &Caller,
        user: &str,
        current: &Secret,
        new_pin: &Secret,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let mut container = self.load_container(&info)?;
        self.check_policy(new_pin)?;
        let new_salt = random_salt()?;
        let old_auth = AuthValue::from_pin(current, &container.pin_salt);
        let new_auth = AuthValue::from_pin(new_pin, &new_salt);
        let blob = container.protectors.pin.clone();
        let new_blob = self.attempt(user, &container, |b| {
            b.change_auth(&blob, &old_auth, &new_auth)
        })?;
        // Only now, with the current PIN proven: a refusal leaves the old container in place.
        let update = self.vet_history(user, new_pin)?;
        container.protectors.pin = new_blob;
        container.pin_salt = new_salt;
        container.pin_set_at = self.clock.now();
        self.store
            .save_container(&container)
            .and_then(|()| self.save_history(user, &update))
            .map_err(|e| store_failure(user, e))?;
        info!(user, caller_uid = caller.uid, "PIN changed");
        Ok(update.reply(format!("PIN changed for {user}.")))
    }
}
