//! [`PamHost`]: the [`Host`] over a real PAM handle — PAM items, the conversation, and
//! pam_syslog through FFI.

use std::ffi::{CString, c_char, c_int, c_void};

use aloha::Secret;
use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_TEXT_INFO};
use pam::conv::Conv;
use pam::items::{AuthTok, RHost, Service};
use pam::module::PamHandle;
use zeroize::Zeroizing;

use crate::host::{Host, Level};

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_syslog(pamh: *const c_void, priority: c_int, fmt: *const c_char, ...);
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
}

/// PAM_AUTHTOK in <security/_pam_types.h>.
const PAM_AUTHTOK: c_int = 6;

pub(crate) struct PamHost<'a> {
    pub(crate) pamh: &'a mut PamHandle,
    /// PAM_SILENT: log, but show the user nothing.
    pub(crate) silent: bool,
    /// The `debug` argument: log [`Level::Debug`] lines too.
    pub(crate) debug: bool,
}

impl Host for PamHost<'_> {
    fn user(&mut self) -> Option<String> {
        self.pamh.get_user(None).ok().filter(|u| !u.is_empty())
    }

    fn service(&self) -> String {
        match self.pamh.get_item::<Service>() {
            Ok(Some(s)) => s.0.to_string_lossy().into_owned(),
            _ => String::new(),
        }
    }

    fn rhost(&self) -> Option<String> {
        match self.pamh.get_item::<RHost>() {
            Ok(Some(h)) => Some(h.0.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    fn ask_secret(&mut self, prompt: &str) -> Result<Secret, ()> {
        let conv = match self.pamh.get_item::<Conv>() {
            Ok(Some(c)) => c,
            _ => return Err(()),
        };
        match conv.send(PAM_PROMPT_ECHO_OFF, prompt) {
            Ok(Some(reply)) => reply.as_str().map(Secret::new).map_err(|_| ()),
            Ok(None) => Ok(Secret::default()),
            Err(_) => Err(()),
        }
    }

    fn tell(&mut self, message: &str) {
        if self.silent {
            return;
        }
        if let Ok(Some(conv)) = self.pamh.get_item::<Conv>() {
            let _ = conv.send(PAM_ERROR_MSG, message);
        }
    }

    fn notice(&mut self, message: &str) {
        if let Ok(Some(conv)) = self.pamh.get_item::<Conv>() {
            let _ = conv.send(PAM_TEXT_INFO, message);
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        let priority = match level {
            Level::Debug if !self.debug => return,
            Level::Debug => libc::LOG_DEBUG,
            Level::Info => libc::LOG_INFO,
            Level::Notice => libc::LOG_NOTICE,
            Level::Error => libc::LOG_ERR,
        };
        let Ok(text) = CString::new(message.replace('\0', " ")) else {
            return;
        };
        let handle: *const PamHandle = self.pamh;
        // SAFETY: a live PAM handle from libpam; "%s" with one NUL-terminated string argument.
        unsafe { pam_syslog(handle.cast(), priority, c"%s".as_ptr(), text.as_ptr()) };
    }

    fn uid_of(&self, user: &str) -> Option<u32> {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    fn authtok(&self) -> Option<Secret> {
        match self.pamh.get_item::<AuthTok>() {
            Ok(Some(t)) => {
                let bytes = Zeroizing::new(t.as_bytes().to_vec());
                std::str::from_utf8(&bytes).ok().map(Secret::new)
            }
            _ => None,
        }
    }

    fn set_authtok(&mut self, password: &Secret) -> Result<(), ()> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(password.expose().len() + 1));
        bytes.extend_from_slice(password.expose().as_bytes());
        if bytes.contains(&0) {
            return Err(());
        }
        bytes.push(0);
        let handle: *mut PamHandle = self.pamh;
        // SAFETY: a live PAM handle from libpam; `bytes` is NUL-terminated with no NUL before
        // the end and outlives the call; libpam copies the string (and wipes its copy when
        // the handle ends).
        let rc = unsafe { pam_set_item(handle.cast(), PAM_AUTHTOK, bytes.as_ptr().cast()) };
        if rc == 0 { Ok(()) } else { Err(()) }
    }
}
