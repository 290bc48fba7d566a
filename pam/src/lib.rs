//! pam_aloha.so: the thin PAM shell around [`flow`]. The hooks are here; `pam_host` reads PAM
//! items, runs the conversation and logs with pam_syslog; this file maps the flow's verdict
//! to a PAM return code. Every hook runs under pam-bindings' catch_unwind guard (and the
//! workspace builds with panic = "unwind"), so nothing can unwind into sudo or gdm.

pub mod alohad;
pub mod args;
pub mod daemon;
pub mod flow;
pub mod host;
mod pam_host;
#[cfg(test)]
mod scripted;

use std::ffi::CStr;

use pam::constants::{PAM_ESTABLISH_CRED, PAM_SILENT, PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};
use pam::pam_hooks;

use args::Args;
use flow::Verdict;
use host::{Host, Level};
use pam_host::PamHost;

/// pam_data key marking "this module authenticated this user" for pam_sm_setcred.
const AUTHENTICATED: &str = "pam_aloha_authenticated_user";

impl From<Verdict> for PamResultCode {
    fn from(verdict: Verdict) -> PamResultCode {
        match verdict {
            Verdict::Success => PamResultCode::PAM_SUCCESS,
            Verdict::AuthErr => PamResultCode::PAM_AUTH_ERR,
            Verdict::MaxTries => PamResultCode::PAM_MAXTRIES,
            Verdict::Unavailable => PamResultCode::PAM_AUTHINFO_UNAVAIL,
            Verdict::Ignore => PamResultCode::PAM_IGNORE,
        }
    }
}

#[derive(Debug)]
pub struct PamAloha;

pam_hooks!(PamAloha);

impl PamHooks for PamAloha {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        let args = Args::from_pam(&args);
        let mut host = PamHost {
            pamh,
            silent: flags & PAM_SILENT != 0,
            debug: args.debug,
        };
        if args.keep_password {
            // Only after a password sign-in: a stack this module signed in carries the vault's
            // own password, and only root may hand alohad a password to keep.
            // SAFETY: only this module stores under AUTHENTICATED, and it always stores a String.
            let ours = unsafe { host.pamh.get_data::<String>(AUTHENTICATED) }.is_ok();
            if !ours && nix::unistd::geteuid().is_root() {
                flow::keep_password(&mut host, &args);
            }
            return PamResultCode::PAM_IGNORE;
        }
        let verdict = flow::authenticate(&mut host, &args);
        if verdict == Verdict::Success
            && let Some(user) = host.user()
            && host.pamh.set_data(AUTHENTICATED, Box::new(user)).is_err()
        {
            host.log(Level::Error, "cannot record the sign-in for setcred");
        }
        PamResultCode::from(verdict)
    }

    /// Success for the user this module authenticated in this transaction; otherwise not
    /// ours. When another module signed the user in and this is a root application
    /// establishing credentials, alohad is told, so a paused face is on again.
    fn sm_setcred(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        // SAFETY: only this module stores under AUTHENTICATED, and it always stores a String.
        let ours = unsafe { pamh.get_data::<String>(AUTHENTICATED) }
            .ok()
            .cloned();
        match (ours, pamh.get_user(None).ok()) {
            (Some(a), Some(b)) if a == b => PamResultCode::PAM_SUCCESS,
            _ => {
                if flags & PAM_ESTABLISH_CRED != 0 && nix::unistd::geteuid().is_root() {
                    let args = Args::from_pam(&args);
                    let mut host = PamHost {
                        pamh,
                        silent: true,
                        debug: args.debug,
                    };
                    flow::after_other_module(&mut host, &args);
                }
                PamResultCode::PAM_IGNORE
            }
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
