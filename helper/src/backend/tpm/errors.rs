//! What a failing TPM command means for the caller, and the words it is reported in.

use tss_esapi::constants::Tss2ResponseCode;
use tss_esapi::{Error as TssError, WrapperErrorKind};

use crate::backend::BackendError;

/// What to do when the TCTI string does not parse or the TPM cannot be reached.
pub(super) const REACH_HINT: &str = "check `tcti` in the [tpm] section of /etc/aloha/aloha.toml \
     (device:/dev/tpmrm0, swtpm:host=H,port=P or tabrmd), that the TPM or simulator is running, \
     and that alohad may open it";

/// What a failing TPM command was doing; it decides whether an error blames the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Primary,
    Session,
    Create,
    Load,
    Authorize,
    Flush,
    Capability,
    History,
    Unseal,
}

impl Step {
    fn doing(self) -> &'static str {
        match self {
            Step::Primary => "creating alohad's storage primary key",
            Step::Session => "starting a salted HMAC session",
            Step::Create => "creating a key",
            Step::Load => "loading the key blob",
            Step::Authorize => "using the key",
            Step::Flush => "releasing a TPM handle",
            Step::Capability => "reading the dictionary-attack state",
            Step::History => "computing a PIN-history digest",
            Step::Unseal => "unsealing a face secret",
        }
    }
}

/// Map a tss-esapi error to what the daemon can act on, with a message that says what to do;
/// `tcti` is the TPM's address as configured.
pub(super) fn tpm_error(tcti: &str, step: Step, e: &TssError) -> BackendError {
    let what = describe(e);
    // tss-esapi's wrapper checks its arguments before anything goes to the TPM: such an
    // error means the PIN-carrying command was never sent.
    let sent = step == Step::Authorize && !matches!(e, TssError::WrapperError(_));
    match classify(step, e) {
        Class::AuthFailed => BackendError::AuthFailed,
        Class::Lockout => BackendError::Lockout,
        // The PIN-carrying command went out. TPM error responses carry no HMAC and a lost
        // connection says nothing, so the TPM may well have judged the PIN: whoever can
        // tamper with the bus or restart the TPM must not get free guesses from this.
        Class::Blob if sent => BackendError::Indeterminate(format!(
            "the TPM at {tcti} rejected the key while {} ({what}), after the PIN was sent; if \
             this repeats, the key is damaged or belongs to another TPM: set a new PIN with \
             `aloha pin reset`",
            step.doing()
        )),
        Class::Down if sent => BackendError::Indeterminate(format!(
            "the TPM at {tcti} failed while {} ({what}), after the PIN was sent",
            step.doing()
        )),
        Class::Blob => BackendError::BadBlob(format!(
            "the TPM rejected it while {} ({what}): it is damaged, or was made by another TPM or \
             before this TPM was cleared. Reset the PIN with the account password to create a new key",
            step.doing()
        )),
        Class::Down => BackendError::Unavailable(format!(
            "the TPM at {tcti} failed while {} ({what}); alohad reconnects on the next request. If this \
             persists, {REACH_HINT}",
            step.doing()
        )),
    }
}

pub(super) fn internal(what: &str, e: &TssError) -> BackendError {
    BackendError::Unavailable(format!(
        "alohad could not prepare {what} for the TPM ({}); this is a bug, please report it",
        describe(e)
    ))
}

/// The TSS2 response code of a TPM, TSS or TCTI error.
fn raw_rc(e: &TssError) -> Option<u32> {
    match e {
        TssError::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => Some(rc.0),
        TssError::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => Some(rc.0),
        TssError::Tss2Error(Tss2ResponseCode::Success) | TssError::WrapperError(_) => None,
    }
}

pub(super) fn describe(e: &TssError) -> String {
    let Some(rc) = raw_rc(e) else {
        return e.to_string();
    };
    let layer = match (rc & LAYER_MASK) >> 16 {
        0 | 12 => return format!("{e}, TSS2_RC {rc:#x}"),
        6 => "FAPI",
        7 => "ESAPI",
        8 => "SAPI",
        9 => "marshalling",
        10 => "TCTI (the connection to the TPM)",
        11 => "resource manager",
        _ => "TSS",
    };
    // The TSS's own base codes (tss2_common.h), shared by every layer above the TPM.
    let what = match rc & 0xFFFF {
        1 => "general failure",
        2 => "not implemented",
        3 => "bad context",
        5 => "bad reference",
        6 => "insufficient buffer",
        7 => "bad sequence",
        8 => "no connection",
        9 => "try again",
        10 => "I/O error",
        11 => "bad value",
        12 => "not permitted",
        16 => "bad size",
        17 => "malformed response",
        19 => "insufficient response",
        21 => "not supported",
        23 => "out of memory",
        27 => "the TPM's response HMAC did not verify",
        _ => "error",
    };
    format!("{layer} {what}, TSS2_RC {rc:#x}")
}

const LAYER_MASK: u32 = 0xFFFF_0000;
/// Response codes from the TPM itself, and TPM codes relayed by a resource manager.
const TPM_LAYER: u32 = 0;
const RESMGR_TPM_LAYER: u32 = 12 << 16;
const RC_FMT1: u32 = 0x080;
/// Format-one codes: the error number plus the format bit, without parameter/handle/session bits.
const FMT1_MASK: u32 = 0x0BF;
const RC_AUTH_FAIL: u32 = 0x08E;
const RC_BAD_AUTH: u32 = 0x0A2;
const RC_HANDLE: u32 = 0x08B;
const RC_WARN: u32 = 0x900;
const RC_LOCKOUT: u32 = 0x921;
/// Format-zero errors that say the TPM itself is not usable now, whatever the blob.
const RC_TPM_DOWN: [u32; 6] = [
    0x100, // TPM_RC_INITIALIZE: TPM2_Startup not run
    0x101, // TPM_RC_FAILURE: failure mode
    0x120, // TPM_RC_DISABLED
    0x12D, // TPM_RC_UPGRADE: field upgrade in progress
    0x130, // TPM_RC_REBOOT
    0x153, // TPM_RC_NEEDS_TEST
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    AuthFailed,
    Lockout,
    Blob,
    Down,
}

fn classify(step: Step, e: &TssError) -> Class {
    let blob_step = matches!(step, Step::Load | Step::Authorize);
    let rc = match e {
        TssError::WrapperError(
            WrapperErrorKind::WrongParamSize
            | WrapperErrorKind::InvalidParam
            | WrapperErrorKind::InconsistentParams,
        ) if blob_step => return Class::Blob,
        TssError::WrapperError(_) => return Class::Down,
        TssError::Tss2Error(_) => match raw_rc(e) {
            Some(rc) => rc,
            None => return Class::Down,
        },
    };
    // TCTI, ESAPI, SAPI, marshalling and resource-manager errors: the transport, not the blob.
    if !matches!(rc & LAYER_MASK, TPM_LAYER | RESMGR_TPM_LAYER) {
        return Class::Down;
    }
    let code = rc & 0xFFFF;
    if code & RC_FMT1 != 0 {
        return match code & FMT1_MASK {
            RC_AUTH_FAIL | RC_BAD_AUTH if step == Step::Authorize => Class::AuthFailed,
            // Elsewhere it is the primary's or a hierarchy's authorization: not the user's PIN.
            RC_AUTH_FAIL | RC_BAD_AUTH => Class::Down,
            // A handle we hold (the primary, the session) is gone: the TPM restarted.
            RC_HANDLE => Class::Down,
            _ if blob_step => Class::Blob,
            _ => Class::Down,
        };
    }
    if code == RC_LOCKOUT {
        return Class::Lockout;
    }
    if code & RC_WARN == RC_WARN || RC_TPM_DOWN.contains(&code) || !blob_step {
        return Class::Down;
    }
    Class::Blob
}

pub(super) fn is_auth_failure(e: &TssError) -> bool {
    raw_rc(e).is_some_and(|rc| {
        matches!(rc & LAYER_MASK, TPM_LAYER | RESMGR_TPM_LAYER)
            && rc & RC_FMT1 != 0
            && matches!(rc & FMT1_MASK, RC_AUTH_FAIL | RC_BAD_AUTH)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCTI: &str = "swtpm:host=127.0.0.1,port=1";

    #[test]
    fn auth_fail_is_recognised_with_any_session_index() {
        for rc in [0x98E, 0x08E, 0xA8E, 0x9A2, 0xC098E] {
            assert_eq!(
                classify(
                    Step::Authorize,
                    &TssError::Tss2Error(Tss2ResponseCode::from(rc))
                ),
                Class::AuthFailed,
                "{rc:#x}"
            );
        }
        // The same code while loading concerns the parent, not the PIN.
        assert_eq!(
            classify(
                Step::Load,
                &TssError::Tss2Error(Tss2ResponseCode::from(0x98E))
            ),
            Class::Down
        );
    }

    #[test]
    fn lockout_integrity_and_transport_are_told_apart() {
        let c = |step, rc: u32| classify(step, &TssError::Tss2Error(Tss2ResponseCode::from(rc)));
        assert_eq!(c(Step::Authorize, 0x921), Class::Lockout);
        assert_eq!(c(Step::Load, 0x1DF), Class::Blob);
        assert_eq!(c(Step::Load, 0x902), Class::Down); // object memory
        assert_eq!(c(Step::Load, 0x18B), Class::Down); // parent handle gone
        assert_eq!(c(Step::Load, 0xA000A), Class::Down); // TCTI I/O error
        assert_eq!(c(Step::Load, 0x101), Class::Down); // failure mode
        assert_eq!(c(Step::Session, 0x1DF), Class::Down);
        assert_eq!(c(Step::Authorize, 0x70001), Class::Down); // ESAPI layer
        assert_eq!(c(Step::Authorize, 0xB0001), Class::Down); // resource manager's own error
        assert_eq!(c(Step::Authorize, 0xC0921), Class::Lockout); // relayed by a resource manager
    }

    #[test]
    fn a_failure_after_the_pin_was_sent_is_indeterminate() {
        let e =
            |step, rc: u32| tpm_error(TCTI, step, &TssError::Tss2Error(Tss2ResponseCode::from(rc)));
        // Response HMAC wrong, TCTI I/O error, an unauthenticated format-one error: the TPM may
        // have judged the PIN.
        for rc in [0x7001B, 0xA000A, 0x1C4] {
            assert!(
                matches!(e(Step::Authorize, rc), BackendError::Indeterminate(_)),
                "{rc:#x}"
            );
        }
        assert!(matches!(
            e(Step::Authorize, 0x98E),
            BackendError::AuthFailed
        ));
        assert!(matches!(e(Step::Authorize, 0x921), BackendError::Lockout));
        // Before the PIN-carrying command: nothing was judged.
        assert!(matches!(
            e(Step::Session, 0xA000A),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(e(Step::Load, 0x1DF), BackendError::BadBlob(_)));
        // A format-one error while using the key still counts, and says what fixes it for good.
        let BackendError::Indeterminate(m) = e(Step::Authorize, 0x1C4) else {
            panic!()
        };
        assert!(m.contains("`aloha pin reset`"), "{m}");
        // tss-esapi refusing its own arguments: nothing reached the TPM, nothing counts.
        let wrapper = |kind| tpm_error(TCTI, Step::Authorize, &TssError::WrapperError(kind));
        assert!(matches!(
            wrapper(WrapperErrorKind::InvalidParam),
            BackendError::BadBlob(_)
        ));
        assert!(matches!(
            wrapper(WrapperErrorKind::InternalError),
            BackendError::Unavailable(_)
        ));
    }
}
