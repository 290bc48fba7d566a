//! Checking an account password through the system's own PAM stack, before a non-root user
//! may set or reset a PIN (the seed's "the user has to enter the existing credentials").
//!
//! The service (default `aloha`, shipped in packaging/pam/aloha) must not include pam_aloha:
//! a PIN must never vouch for itself.

use std::path::PathBuf;

use aloha::Secret;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::pam_app::{self, Conversation, MessageStyle, Transaction};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the account password is wrong")]
    Wrong,
    #[error("the account password has expired: change it first (passwd), then try again")]
    Expired,
    #[error("the account password cannot be checked: {0}")]
    Unavailable(String),
}

pub trait PasswordChecker: Send + Sync {
    fn check(&self, user: &str, password: &Secret) -> Result<(), PasswordError>;
}

/// Runs `pam_authenticate` + `pam_acct_mgmt` on a dedicated PAM service.
#[derive(Debug, Clone)]
pub struct PamPasswordChecker {
    pub service: String,
    /// `None`: the system's /etc/pam.d.
    pub confdir: Option<PathBuf>,
}

/// Answers the one password prompt; any further secret prompt (a second factor, a "new
/// password") aborts, since we cannot answer it on the user's behalf.
struct PasswordConversation {
    password: Secret,
    answered: bool,
}

impl Conversation for PasswordConversation {
    fn respond(
        &mut self,
        style: MessageStyle,
        _text: &str,
    ) -> Result<Option<Zeroizing<String>>, ()> {
        match style {
            MessageStyle::PromptEchoOff if !self.answered => {
                self.answered = true;
                Ok(Some(Zeroizing::new(self.password.expose().to_string())))
            }
            MessageStyle::PromptEchoOff | MessageStyle::PromptEchoOn => Err(()),
            MessageStyle::ErrorMsg | MessageStyle::TextInfo => Ok(None),
        }
    }
}

impl PamPasswordChecker {
    /// Why this service must not be used to check passwords, with the fix; `None` when it is
    /// password-only. Checked at start (logged, and by `alohad --check-config`) and before
    /// every check, since the files can change while alohad runs.
    pub fn stack_problem(&self) -> Option<String> {
        let found = aloha::pam_stack::find_pam_aloha(&self.service, self.confdir.as_deref())?;
        Some(format!(
            "the PAM service {:?} that alohad checks account passwords with runs pam_aloha \
             ({found}), so a PIN could vouch for itself; alohad refuses password checks until \
             it is password-only (see packaging/pam/aloha: pam_unix or pam_sss, not \
             common-auth once Aloha is enabled there). Meanwhile root can still set and reset \
             PINs with sudo",
            self.service
        ))
    }
}

impl PasswordChecker for PamPasswordChecker {
    fn check(&self, user: &str, password: &Secret) -> Result<(), PasswordError> {
        if password.is_empty() {
            return Err(PasswordError::Wrong);
        }
        if let Some(problem) = self.stack_problem() {
            return Err(PasswordError::Unavailable(problem));
        }
        let conv = Box::new(PasswordConversation {
            password: password.clone(),
            answered: false,
        });
        let mut tx = Transaction::start(&self.service, user, self.confdir.as_deref(), conv)
            .map_err(|rc| {
                PasswordError::Unavailable(format!(
                    "PAM service {:?} could not start (PAM error {rc})",
                    self.service
                ))
            })?;
        match tx.authenticate(pam_app::PAM_SILENT) {
            pam_app::PAM_SUCCESS => {}
            pam_app::PAM_AUTH_ERR
            | pam_app::PAM_USER_UNKNOWN
            | pam_app::PAM_MAXTRIES
            | pam_app::PAM_CONV_ERR
            | pam_app::PAM_PERM_DENIED => return Err(PasswordError::Wrong),
            rc => return Err(PasswordError::Unavailable(tx.strerror(rc))),
        }
        match tx.acct_mgmt(pam_app::PAM_SILENT) {
            pam_app::PAM_SUCCESS => Ok(()),
            pam_app::PAM_NEW_AUTHTOK_REQD => Err(PasswordError::Expired),
            pam_app::PAM_ACCT_EXPIRED | pam_app::PAM_PERM_DENIED => {
                Err(PasswordError::Unavailable(
                    "the account is expired or not allowed to sign in".into(),
                ))
            }
            rc => Err(PasswordError::Unavailable(tx.strerror(rc))),
        }
    }
}
