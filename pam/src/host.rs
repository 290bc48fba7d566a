//! The PAM side of a sign-in, as the flow sees it ([`Host`]): PAM items, the conversation and
//! syslog. `PamHost` (pam_host.rs) is the real one; the tests script it.

use aloha::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Error,
}

/// The PAM side of a sign-in: items, the conversation and syslog.
/// The widest message pam_aloha shows (see [`Host::tell`]).
pub const MAX_LINE: usize = 80;

pub trait Host {
    /// PAM_USER (pam_get_user may ask for it).
    fn user(&mut self) -> Option<String>;
    fn service(&self) -> String;
    fn rhost(&self) -> Option<String>;
    /// Ask for a secret with echo off. `Err(())`: the conversation failed or was cancelled.
    #[allow(clippy::result_unit_err)]
    fn ask_secret(&mut self, prompt: &str) -> Result<Secret, ()>;
    /// Show an error message (not under PAM_SILENT — the host knows). Every message is one
    /// line of at most [`MAX_LINE`] characters: a greeter shows it under the entry, a terminal
    /// in one row; the details go to the log and `aloha status`.
    fn tell(&mut self, message: &str);
    /// Show an informational line even under PAM_SILENT: that the camera is looking for the
    /// user is something a person must always be told.
    fn notice(&mut self, message: &str);
    /// pam_syslog(LOG_AUTHPRIV); [`Level::Debug`] only with the `debug` argument.
    fn log(&mut self, level: Level, message: &str);
    /// The user's uid from the system's user database.
    fn uid_of(&self, user: &str) -> Option<u32>;
    /// PAM_AUTHTOK, the password a module before (or the application) put there.
    fn authtok(&self) -> Option<Secret>;
    /// Set PAM_AUTHTOK for the modules after this one (pam_gnome_keyring, pam_kwallet5).
    #[allow(clippy::result_unit_err)]
    fn set_authtok(&mut self, password: &Secret) -> Result<(), ()>;
}
