//! What only root may do: clear a user's lockout, or forget a user's PIN and key.

use aloha::lockout::Attempts;
use aloha::protocol::{ErrorCode, Failure, Response};
use tracing::info;

use super::failures::store_failure;
use super::{Caller, Service, lock};

impl Service {
    pub(super) fn admin_unlock(&self, caller: &Caller, user: &str) -> Result<Response, Failure> {
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
        let face = match self.store.load_face_attempts(user) {
            Ok(a) if a.failures == 0 => String::new(),
            paused => {
                // As for the PIN's counter: even an unreadable one is replaced.
                self.store
                    .save_face_attempts(user, &Attempts::default())
                    .map_err(|e| store_failure(user, e))?;
                match paused {
                    Ok(a) => format!(
                        " Face sign-in is on again ({} failed attempts cleared).",
                        a.failures
                    ),
                    Err(_) => " Face sign-in is on again (an unreadable counter replaced).".into(),
                }
            }
        };
        Ok(Response::Done {
            message: format!("{user}'s PIN is unlocked ({cleared}).{face}"),
        })
    }

    pub(super) fn admin_remove(&self, caller: &Caller, user: &str) -> Result<Response, Failure> {
        self.require_root(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        if !self
            .store
            .remove_user(user)
            .map_err(|e| store_failure(user, e))?
        {
            return Err(Failure::new(
                ErrorCode::NotEnrolled,
                format!("{user} has nothing enrolled in Aloha."),
            ));
        }
        info!(user, caller_uid = caller.uid, "removed by an administrator");
        Ok(Response::Done {
            message: format!("Removed {user}'s PIN and key; the password still works."),
        })
    }
}
