//! A minimal libpam *application* binding (pam_start_confdir, pam_authenticate, pam_acct_mgmt),
//! used by alohad to check an account password and by the end-to-end tests as a PAM client.
//!
//! The conversation is a Rust trait object; replies are copied into malloc'ed C strings that
//! libpam frees, and our copies are zeroized.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;
use std::ptr;

use zeroize::Zeroizing;

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_SYSTEM_ERR: c_int = 4;
pub const PAM_BUF_ERR: c_int = 5;
pub const PAM_PERM_DENIED: c_int = 6;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub const PAM_USER_UNKNOWN: c_int = 10;
pub const PAM_MAXTRIES: c_int = 11;
pub const PAM_NEW_AUTHTOK_REQD: c_int = 12;
pub const PAM_ACCT_EXPIRED: c_int = 13;
pub const PAM_CONV_ERR: c_int = 19;
pub const PAM_IGNORE: c_int = 25;
pub const PAM_ABORT: c_int = 26;

pub const PAM_SILENT: c_int = 0x8000;

pub const PAM_TTY: c_int = 3;
pub const PAM_RHOST: c_int = 4;
pub const PAM_RUSER: c_int = 8;

/// What a PAM module asks of the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStyle {
    PromptEchoOff,
    PromptEchoOn,
    ErrorMsg,
    TextInfo,
}

impl MessageStyle {
    fn from_raw(style: c_int) -> Option<MessageStyle> {
        match style {
            1 => Some(MessageStyle::PromptEchoOff),
            2 => Some(MessageStyle::PromptEchoOn),
            3 => Some(MessageStyle::ErrorMsg),
            4 => Some(MessageStyle::TextInfo),
            _ => None,
        }
    }
}

/// The application side of a PAM conversation.
pub trait Conversation {
    /// Answer one message. Prompts need `Ok(Some(text))`; messages take `Ok(None)`.
    /// `Err(())` aborts the conversation (PAM_CONV_ERR), as a cancelled prompt would.
    #[allow(clippy::result_unit_err)]
    fn respond(&mut self, style: MessageStyle, text: &str)
    -> Result<Option<Zeroizing<String>>, ()>;
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandleOpaque {
    _private: [u8; 0],
}

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut PamHandleOpaque,
    ) -> c_int;
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandleOpaque,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandleOpaque, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandleOpaque, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut PamHandleOpaque, flags: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandleOpaque, item: c_int, value: *const c_void) -> c_int;
    fn pam_end(pamh: *mut PamHandleOpaque, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandleOpaque, errnum: c_int) -> *const c_char;
}

/// Free the first `n` replies and the array itself.
///
/// # Safety
/// `replies` must come from calloc with room for at least `n` entries, each `resp` null or
/// from malloc.
unsafe fn free_replies(replies: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: i < n, within the calloc'ed array (caller's contract).
        let r = unsafe { &mut *replies.add(i) };
        if !r.resp.is_null() {
            // SAFETY: resp came from malloc and holds a NUL-terminated string we wrote.
            let len = unsafe { libc::strlen(r.resp) };
            // SAFETY: resp is writable for len bytes; wipe the secret before freeing.
            unsafe { ptr::write_bytes(r.resp, 0, len) };
            // SAFETY: allocated with malloc, freed once.
            unsafe { libc::free(r.resp.cast()) };
        }
    }
    // SAFETY: allocated with calloc, freed once.
    unsafe { libc::free(replies.cast()) };
}

unsafe extern "C" fn conversation_trampoline(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Ok(n) = usize::try_from(num_msg) else {
            return PAM_CONV_ERR;
        };
        if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: appdata is the `&mut Box<dyn Conversation>` we registered in `start`, alive
        // for the whole transaction, and libpam calls the conversation from one thread.
        let conv = unsafe { &mut *appdata.cast::<Box<dyn Conversation>>() };
        // SAFETY: calloc of n zeroed PamResponse structs; checked for null below.
        let replies =
            unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
        if replies.is_null() {
            return PAM_BUF_ERR;
        }
        for i in 0..n {
            // Linux-PAM passes an array of n pointers (not a pointer to an array).
            // SAFETY: msg points to n valid message pointers for the duration of the call.
            let m = unsafe { *msg.add(i) };
            if m.is_null() {
                // SAFETY: replies holds i filled entries, allocated above.
                unsafe { free_replies(replies, n) };
                return PAM_CONV_ERR;
            }
            // SAFETY: m is a valid PamMessage from libpam.
            let m = unsafe { &*m };
            let text = if m.msg.is_null() {
                String::new()
            } else {
                // SAFETY: libpam hands NUL-terminated strings.
                unsafe { CStr::from_ptr(m.msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            let answer = match MessageStyle::from_raw(m.msg_style) {
                Some(style) => conv.respond(style, &text),
                None => Err(()),
            };
            match answer {
                Ok(Some(reply)) => {
                    let bytes = reply.as_bytes();
                    if bytes.contains(&0) {
                        // SAFETY: as above.
                        unsafe { free_replies(replies, n) };
                        return PAM_CONV_ERR;
                    }
                    // SAFETY: malloc of len+1 bytes, checked for null.
                    let p = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
                    if p.is_null() {
                        // SAFETY: as above.
                        unsafe { free_replies(replies, n) };
                        return PAM_BUF_ERR;
                    }
                    // SAFETY: p has len+1 writable bytes; the source has len bytes.
                    unsafe {
                        ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
                        *p.add(bytes.len()) = 0;
                        (*replies.add(i)).resp = p.cast();
                    }
                }
                Ok(None) => {}
                Err(()) => {
                    // SAFETY: as above.
                    unsafe { free_replies(replies, n) };
                    return PAM_CONV_ERR;
                }
            }
        }
        // SAFETY: resp is a valid out-pointer from libpam, which takes ownership of `replies`.
        unsafe { *resp = replies };
        PAM_SUCCESS
    }));
    outcome.unwrap_or(PAM_CONV_ERR)
}

/// One PAM transaction (pam_start … pam_end).
pub struct Transaction {
    handle: *mut PamHandleOpaque,
    // Boxed twice so the pointer handed to libpam stays put while `self` moves.
    _conv: Box<Box<dyn Conversation>>,
    _pam_conv: Box<PamConv>,
    last_status: c_int,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("last_status", &self.last_status)
            .finish()
    }
}

fn cstring(s: &str) -> Result<CString, c_int> {
    CString::new(s).map_err(|_| PAM_BUF_ERR)
}

impl Transaction {
    /// Start a transaction for `service` and `user`, reading the service file from `confdir`
    /// (Linux-PAM ≥ 1.4) or from the system's /etc/pam.d when `None`.
    pub fn start(
        service: &str,
        user: &str,
        confdir: Option<&Path>,
        conversation: Box<dyn Conversation>,
    ) -> Result<Transaction, c_int> {
        let service = cstring(service)?;
        let user = cstring(user)?;
        let confdir = confdir.map(|d| cstring(&d.to_string_lossy())).transpose()?;
        let mut conv: Box<Box<dyn Conversation>> = Box::new(conversation);
        let pam_conv = Box::new(PamConv {
            conv: conversation_trampoline,
            appdata_ptr: (&mut *conv as *mut Box<dyn Conversation>).cast(),
        });
        let mut handle: *mut PamHandleOpaque = ptr::null_mut();
        let rc = match &confdir {
            // SAFETY: all pointers are valid NUL-terminated strings or live boxes for the call;
            // libpam copies the pam_conv struct and keeps appdata_ptr, which `conv` keeps alive.
            Some(dir) => unsafe {
                pam_start_confdir(
                    service.as_ptr(),
                    user.as_ptr(),
                    &*pam_conv,
                    dir.as_ptr(),
                    &mut handle,
                )
            },
            // SAFETY: as above.
            None => unsafe { pam_start(service.as_ptr(), user.as_ptr(), &*pam_conv, &mut handle) },
        };
        if rc != PAM_SUCCESS || handle.is_null() {
            if !handle.is_null() {
                // SAFETY: handle came from pam_start and is ended once.
                unsafe { pam_end(handle, rc) };
            }
            return Err(if rc == PAM_SUCCESS {
                PAM_SYSTEM_ERR
            } else {
                rc
            });
        }
        Ok(Transaction {
            handle,
            _conv: conv,
            _pam_conv: pam_conv,
            last_status: PAM_SUCCESS,
        })
    }

    /// Set a string item (PAM_RHOST, PAM_TTY, PAM_RUSER...).
    pub fn set_item(&mut self, item: c_int, value: &str) -> c_int {
        let Ok(value) = cstring(value) else {
            return PAM_BUF_ERR;
        };
        // SAFETY: handle is live; libpam copies the string.
        unsafe { pam_set_item(self.handle, item, value.as_ptr().cast()) }
    }

    pub fn authenticate(&mut self, flags: c_int) -> c_int {
        // SAFETY: handle is live for self's lifetime.
        self.last_status = unsafe { pam_authenticate(self.handle, flags) };
        self.last_status
    }

    pub fn acct_mgmt(&mut self, flags: c_int) -> c_int {
        // SAFETY: handle is live for self's lifetime.
        self.last_status = unsafe { pam_acct_mgmt(self.handle, flags) };
        self.last_status
    }

    pub fn setcred(&mut self, flags: c_int) -> c_int {
        // SAFETY: handle is live for self's lifetime.
        self.last_status = unsafe { pam_setcred(self.handle, flags) };
        self.last_status
    }

    /// libpam's description of a return code.
    pub fn strerror(&self, rc: c_int) -> String {
        // SAFETY: handle is live; pam_strerror returns a static string or null.
        let p = unsafe { pam_strerror(self.handle, rc) };
        if p.is_null() {
            return format!("PAM error {rc}");
        }
        // SAFETY: non-null NUL-terminated static string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: handle came from pam_start and is ended exactly once, here.
        unsafe { pam_end(self.handle, self.last_status) };
    }
}
