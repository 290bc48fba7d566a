//! Who may ask what: root acts for any user (sudo, su, greeters run PAM as root), any other uid
//! only for itself, and a non-root caller proves itself with the account password to enrol.

use aloha::Secret;
use aloha::protocol::{ErrorCode, Failure};
use aloha::registry::valid_user_name;
use tracing::warn;

use super::{Caller, Service};
use crate::password::PasswordError;
use crate::users::UserInfo;

fn valid_name(user: &str) -> Result<(), Failure> {
    if valid_user_name(user) {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorCode::BadRequest,
            format!("{user:?} is not a valid user name"),
        ))
    }
}

impl Service {
    /// The user `caller` may act for: itself, or anyone if it is root.
    pub(super) fn authorize(&self, caller: &Caller, user: &str) -> Result<UserInfo, Failure> {
        valid_name(user)?;
        let info = self
            .users
            .by_name(user)
            .map_err(|e| Failure::new(ErrorCode::Internal, e))?
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::UnknownUser,
                    format!("There is no user named {user}."),
                )
            })?;
        if !caller.is_root() && caller.uid != info.uid {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                format!(
                    "uid {} may only act for itself, not for {user}.",
                    caller.uid
                ),
            ));
        }
        Ok(info)
    }

    pub(super) fn require_root(&self, caller: &Caller, user: &str) -> Result<(), Failure> {
        valid_name(user)?;
        if !caller.is_root() {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "Only root may do this: run it with sudo.",
            ));
        }
        Ok(())
    }

    /// Non-root callers prove themselves with their account password; root is the administrator.
    pub(super) fn require_password(
        &self,
        caller: &Caller,
        info: &UserInfo,
        password: Option<&Secret>,
        what: &str,
    ) -> Result<(), Failure> {
        if caller.is_root() {
            return Ok(());
        }
        let Some(password) = password else {
            return Err(Failure::new(
                ErrorCode::WrongPassword,
                format!("Your account password is needed to {what}."),
            ));
        };
        self.check_account_password(caller, info, password)
    }

    /// The account password through the password service, one check at a time and with the
    /// doubling wait after a wrong one, whoever asks (root too).
    pub(super) fn check_account_password(
        &self,
        caller: &Caller,
        info: &UserInfo,
        password: &Secret,
    ) -> Result<(), Failure> {
        let name = &info.name;
        let now = self.clock.now();
        if let Some(until) = self.password_checks.wait_until(name, now) {
            return Err(Failure {
                retry_at: Some(until),
                ..Failure::new(
                    ErrorCode::Delayed,
                    format!(
                        "The last account password for {name} was wrong: try again in {} s.",
                        until - now
                    ),
                )
            });
        }
        let result = self.password_checks.run(name, now, || {
            let r = self.passwords.check(name, password);
            let wrong = match &r {
                Ok(()) => Some(false),
                Err(PasswordError::Wrong) => Some(true),
                Err(PasswordError::Expired | PasswordError::Unavailable(_)) => None,
            };
            (r, wrong)
        });
        match result {
            Ok(()) => Ok(()),
            Err(PasswordError::Wrong) => {
                warn!(
                    user = info.name,
                    caller_uid = caller.uid,
                    "wrong account password"
                );
                Err(Failure::new(
                    ErrorCode::WrongPassword,
                    "The account password is wrong.",
                ))
            }
            Err(e @ PasswordError::Expired) => {
                Err(Failure::new(ErrorCode::WrongPassword, e.to_string()))
            }
            Err(e @ PasswordError::Unavailable(_)) => {
                Err(Failure::new(ErrorCode::Internal, e.to_string()))
            }
        }
    }
}
