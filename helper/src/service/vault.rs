//! The password vault: a user's account password, sealed to their own key when they opt in
//! (`aloha vault enable`, which checks it), re-sealed after each password sign-in (pam_aloha's
//! setcred), and opened only together with a sign-in the PIN or face just won, so pam_aloha can
//! hand it to the stack and the login keyring unlocks. The cryptography is in [`crate::vault`].

use aloha::Secret;
use aloha::protocol::{ErrorCode, Failure, Response, VaultStatus};
use tracing::{info, warn};

use super::failures::store_failure;
use super::{Caller, Service, lock};
use crate::backend::{AuthValue, KeyBackend, KeyBlob, OLD_KEY};
use crate::store::{Container, VAULT_VERSION, VaultRecord};
use crate::users::UserInfo;
use crate::vault::{self, Owner};

fn owner<'a>(info: &'a UserInfo, container: &'a Container) -> Owner<'a> {
    Owner {
        user: &info.name,
        uid: info.uid,
        public_key: &container.public_key,
    }
}

fn not_empty(password: &Secret) -> Result<(), Failure> {
    if password.is_empty() {
        return Err(Failure::new(
            ErrorCode::BadRequest,
            "An empty password is not kept.",
        ));
    }
    Ok(())
}

impl Service {
    /// `aloha vault enable`: the password, checked, sealed to the user's key.
    pub(super) fn vault_enable(
        &self,
        caller: &Caller,
        user: &str,
        password: &Secret,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        not_empty(password)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let container = self.load_container(&info)?;
        self.vault_usable(&container)?;
        self.check_account_password(caller, &info, password)?;
        self.seal_vault(&info, &container, password)?;
        info!(user, caller_uid = caller.uid, "password vault enabled");
        Ok(Response::Done {
            message: format!(
                "{user}'s account password is now kept sealed to their Aloha key: a PIN or face \
                 sign-in unlocks the login keyring. `aloha vault disable` forgets it."
            ),
        })
    }

    /// `aloha vault disable`.
    pub(super) fn vault_disable(&self, caller: &Caller, user: &str) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let existed = self
            .store
            .remove_vault(&info.name)
            .map_err(|e| store_failure(user, e))?;
        let message = if existed {
            info!(user, caller_uid = caller.uid, "password vault removed");
            format!(
                "{user}'s password vault is gone; the login keyring asks for the password again after a PIN or face sign-in."
            )
        } else {
            format!("{user} keeps no password vault; nothing to remove.")
        };
        Ok(Response::Done { message })
    }

    /// pam_aloha's setcred after the password signed the user in (root only): re-seal it,
    /// if the user keeps a vault, so a changed password is picked up at the next sign-in.
    pub(super) fn vault_capture(
        &self,
        caller: &Caller,
        user: &str,
        password: &Secret,
    ) -> Result<Response, Failure> {
        self.require_root(caller, user)?;
        let info = self.authorize(caller, user)?;
        not_empty(password)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        if self
            .store
            .load_vault(user)
            .map_err(|e| store_failure(user, e))?
            .is_none()
        {
            return Ok(Response::Done {
                message: format!("{user} keeps no password vault; nothing kept."),
            });
        }
        let container = self.load_container(&info)?;
        self.vault_usable(&container)?;
        self.seal_vault(&info, &container, password)?;
        info!(
            user,
            caller_uid = caller.uid,
            "password vault re-sealed after a password sign-in"
        );
        Ok(Response::Done {
            message: format!("{user}'s password vault holds the password just used."),
        })
    }

    /// Refuse a vault where the administrator does not allow it, or where the key cannot open
    /// one; the message says what to do.
    fn vault_usable(&self, container: &Container) -> Result<(), Failure> {
        if !self.config.vault.allow.allows(container.backend) {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                format!(
                    "Password vaults are not allowed for keys in the {} here ([vault] allow = {:?} \
                     in aloha.toml); an administrator decides.",
                    container.backend.name(),
                    self.config.vault.allow
                ),
            ));
        }
        if !container.protectors.pin.can_exchange() {
            return Err(Failure::new(ErrorCode::PolicyViolation, OLD_KEY));
        }
        Ok(())
    }

    fn seal_vault(
        &self,
        info: &UserInfo,
        container: &Container,
        password: &Secret,
    ) -> Result<(), Failure> {
        let sealed = vault::seal(&owner(info, container), password).map_err(|e| {
            Failure::new(
                ErrorCode::BadRequest,
                format!("The password cannot be kept: {e}."),
            )
        })?;
        let record = VaultRecord {
            version: VAULT_VERSION,
            user: info.name.clone(),
            uid: info.uid,
            public_key: container.public_key.clone(),
            sealed_at: self.clock.now(),
            password: sealed,
        };
        self.store
            .save_vault(&record)
            .map_err(|e| store_failure(&info.name, e))
    }

    /// The vault a sign-in should open alongside its signature: only when asked, allowed, and
    /// sealed to this very key for this uid. Anything else leaves the sign-in as it is.
    pub(super) fn vault_for_sign_in(
        &self,
        info: &UserInfo,
        container: &Container,
        wanted: bool,
    ) -> Option<VaultRecord> {
        if !wanted || !self.config.vault.allow.allows(container.backend) {
            return None;
        }
        match self.store.load_vault(&info.name) {
            Ok(Some(r)) if r.public_key == container.public_key && r.uid == info.uid => Some(r),
            Ok(Some(_)) => {
                warn!(
                    user = info.name,
                    "the password vault was sealed to another key; ignored"
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                warn!(user = info.name, error = %e, "the password vault cannot be read");
                None
            }
        }
    }

    /// The user's status line for the vault.
    pub(super) fn vault_status(
        &self,
        info: &UserInfo,
        container: Option<&Container>,
    ) -> VaultStatus {
        let allowed = container.map_or(
            self.config.vault.allow.allows(self.default_backend()),
            |c| self.config.vault.allow.allows(c.backend),
        );
        let (sealed_at, mut problem) = match self.store.load_vault(&info.name) {
            Ok(Some(r)) => {
                let stale = container.is_some_and(|c| c.public_key != r.public_key);
                (
                    Some(r.sealed_at),
                    stale.then(|| {
                        "the vault was sealed to an earlier key: `aloha vault enable` again"
                            .to_string()
                    }),
                )
            }
            Ok(None) => (None, None),
            Err(e) => (None, Some(e.to_string())),
        };
        if problem.is_none()
            && let Some(c) = container
            && allowed
            && !c.protectors.pin.can_exchange()
        {
            problem = Some(OLD_KEY.to_string());
        }
        VaultStatus {
            allowed,
            sealed_at,
            problem,
        }
    }
}

/// Open `record` with the key in `blob`, released by `auth` (the attempt's own: the PIN's or
/// the face's). Any failure is logged and yields nothing: the sign-in stands, the keyring
/// stays locked.
pub(super) fn open_vault(
    backend: &mut dyn KeyBackend,
    info: &UserInfo,
    container: &Container,
    record: &VaultRecord,
    blob: &KeyBlob,
    auth: &AuthValue,
) -> Option<Secret> {
    let shared = match backend.exchange(blob, auth, &record.password.ephemeral) {
        Ok(shared) => shared,
        Err(e) => {
            warn!(user = info.name, error = %e, "the password vault did not open");
            return None;
        }
    };
    match vault::open(&owner(info, container), &record.password, &shared) {
        Ok(password) => {
            info!(user = info.name, "password vault opened for the sign-in");
            Some(password)
        }
        Err(e) => {
            warn!(user = info.name, error = %e, "the password vault did not open");
            None
        }
    }
}
