//! pam_aloha.so: the thin PAM shell around [`flow`]. It reads PAM items, runs the
//! conversation, logs with pam_syslog, and maps the flow's outcome to a PAM return code.
//! Every hook runs under pam-bindings' catch_unwind guard (and the workspace builds with
//! panic = "unwind"), so nothing can unwind into sudo or gdm.

pub mod alohad;
pub mod flow;

use std::ffi::{CStr, CString, c_char, c_int, c_void};

use aloha::Secret;
use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_SILENT, PamFlag, PamResultCode};
use pam::conv::Conv;
use pam::items::{RHost, Service};
use pam::module::{PamHandle, PamHooks};
use pam::pam_hooks;

use flow::{Args, Host, Level, Outcome};

/// pam_data key marking "this module authenticated this user" for pam_sm_setcred.
const AUTHENTICATED: &str = "pam_aloha_authenticated_user";

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_syslog(pamh: *const c_void, priority: c_int, fmt: *const c_char, ...);
}

struct PamHost<'a> {
    pamh: &'a mut PamHandle,
    silent: bool,
    debug: bool,
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
}

fn args_of<'a>(args: &'a [&CStr]) -> Args {
    let strings: Vec<&'a str> = args.iter().filter_map(|a| a.to_str().ok()).collect();
    Args::parse(strings)
}

#[derive(Debug)]
pub struct PamAloha;

pam_hooks!(PamAloha);

impl PamHooks for PamAloha {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        let args = args_of(&args);
        let mut host = PamHost {
            pamh,
            silent: flags & PAM_SILENT != 0,
            debug: args.debug,
        };
        let outcome = flow::authenticate(&mut host, &args);
        if outcome == Outcome::Success
            && let Some(user) = host.user()
            && host.pamh.set_data(AUTHENTICATED, Box::new(user)).is_err()
        {
            host.log(Level::Error, "cannot record the sign-in for setcred");
        }
        match outcome {
            Outcome::Success => PamResultCode::PAM_SUCCESS,
            Outcome::AuthErr => PamResultCode::PAM_AUTH_ERR,
            Outcome::MaxTries => PamResultCode::PAM_MAXTRIES,
            Outcome::Unavailable => PamResultCode::PAM_AUTHINFO_UNAVAIL,
            Outcome::Ignore => PamResultCode::PAM_IGNORE,
        }
    }

    /// Success for the user this module authenticated in this transaction; otherwise not ours.
    fn sm_setcred(pamh: &mut PamHandle, _args: Vec<&CStr>, _flags: PamFlag) -> PamResultCode {
        // SAFETY: only this module stores under AUTHENTICATED, and it always stores a String.
        let ours = unsafe { pamh.get_data::<String>(AUTHENTICATED) }
            .ok()
            .cloned();
        match (ours, pamh.get_user(None).ok()) {
            (Some(a), Some(b)) if a == b => PamResultCode::PAM_SUCCESS,
            _ => PamResultCode::PAM_IGNORE,
        }
    }

    fn acct_mgmt(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
    fn sm_open_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
    fn sm_close_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
    fn sm_chauthtok(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        PamResultCode::PAM_IGNORE
    }
}
