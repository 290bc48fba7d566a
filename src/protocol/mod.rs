//! alohad's socket protocol, version 5: JSON messages in length-prefixed frames ([`crate::frame`]).
//!
//! Every connection starts with [`Request::Hello`] carrying the client's protocol version; the
//! daemon answers [`Response::Hello`] with its own, or a `version_mismatch` error and closes.
//! Then any number of requests follow, each answered by exactly one final response; long face
//! operations (enrolment, `aloha face test`, a camera probe) send [`Response::FaceProgress`]
//! reports before it. Who may ask what is decided by the daemon from the peer's SO_PEERCRED,
//! never from anything in a message. Version 2 added face sign-in; version 3 the user's
//! standing against their share of the TPM's failure budget in the status; version 4 the
//! password vault (its requests, the password in a sign-in's answer, its state in the status);
//! version 5 an application's presence question (`presence`, asked by `aloha-presence`).

mod face;

pub use face::{
    CameraNode, CameraReport, EmitterReport, FaceProfileInfo, FaceProgress, FaceStatus,
    FrameVerdict,
};

use serde::{Deserialize, Serialize};

use crate::challenge::Nonce;
use crate::lockout::{DaState, Gate, TpmPause, TpmShare};
use crate::presence::Ask;
use crate::secret::Secret;

pub const PROTOCOL_VERSION: u32 = 5;

/// Which key store protects a user's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Tpm,
    Software,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tpm => "TPM 2.0",
            BackendKind::Software => "software vault",
        }
    }

    /// What the backend protects against, and what not — said plainly to users.
    pub fn protection(self) -> &'static str {
        match self {
            BackendKind::Tpm => {
                "the private key never leaves the TPM and is useless on any other machine; the TPM \
                 itself checks the PIN and its anti-hammering limits guessing"
            }
            BackendKind::Software => {
                "the private key is stored encrypted under the PIN (Argon2id); alohad's lockout \
                 limits guessing through alohad, but anyone who can read alohad's state (root, or \
                 a stolen unencrypted disk) can guess the PIN offline — a 6-digit PIN in about a \
                 day of CPU time; use a TPM or a long PIN"
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// First message of every connection.
    Hello { version: u32, client: String },
    /// Enrolment and lockout state (root: any user; others: themselves).
    Status { user: String },
    /// Create the user's container and PIN. Non-root callers must give their account password.
    PinSet {
        user: String,
        password: Option<Secret>,
        pin: Secret,
    },
    /// Replace the PIN; the current PIN proves the caller (and counts as an attempt).
    PinChange {
        user: String,
        current_pin: Secret,
        new_pin: Secret,
    },
    /// Forgotten or locked PIN: a new container under a new PIN; the old key is destroyed.
    /// Non-root callers must give their account password.
    PinReset {
        user: String,
        password: Option<Secret>,
        new_pin: Secret,
    },
    /// Sign the verifier's nonce with the user's key, released by the PIN.
    SignIn {
        user: String,
        service: String,
        nonce: Nonce,
        pin: Secret,
        /// Also open the user's password vault, if they keep one (pam_aloha, for the stack).
        #[serde(default)]
        vault: bool,
    },
    /// Root only: clear the user's failed attempts and lock.
    AdminUnlock { user: String },
    /// Root only: delete the user's container, counters, registered key and face profiles.
    AdminRemove { user: String },
    /// Enrol the face under `label` (adding to it if it exists); the PIN proves the caller (a
    /// counted attempt) and releases the key the face protector is made from. Progress
    /// reports follow until the final reply.
    FaceEnrol {
        user: String,
        label: String,
        pin: Secret,
    },
    /// Sign the verifier's nonce with the user's key, released by a live face match within
    /// `timeout_ms` (alohad caps it at `face.attempt_timeout_ms`).
    FaceSignIn {
        user: String,
        service: String,
        nonce: Nonce,
        timeout_ms: u64,
        /// As for `sign_in`.
        #[serde(default)]
        vault: bool,
    },
    /// An attempt that reports every frame and the decision, but uses no key and counts
    /// nothing.
    FaceTest { user: String, timeout_ms: u64 },
    /// The user's face profiles (root: anyone's).
    FaceList { user: String },
    /// Forget one labelled profile, or all of them and the face protector (`label: None`).
    FaceRemove { user: String, label: Option<String> },
    /// Root only (pam_aloha's pam_sm_setcred in a root PAM application): another module —
    /// the password — signed `user` in, so face sign-in, if paused after failed attempts, is
    /// on again.
    FaceResume { user: String },
    /// Keep the user's account password sealed to their key, so a PIN or face sign-in can
    /// hand it to the PAM stack (the login keyring). Checked through the password service
    /// first, for root too: the vault must hold the right password.
    VaultEnable { user: String, password: Secret },
    /// Forget the user's password vault (root: anyone's).
    VaultDisable { user: String },
    /// Root only (pam_aloha's pam_sm_setcred after the password signed the user in): the
    /// password the stack just accepted, to re-seal if the user keeps a vault.
    VaultCapture { user: String, password: Secret },
    /// An application asks whether `user` is here (`aloha-presence`, for the caller it saw on
    /// the bus): the same counted attempt as a sign-in, by PIN or face, but the key signs
    /// [`Ask::digest`], which never signs anyone in.
    Presence {
        user: String,
        ask: Ask,
        gesture: Gesture,
    },
    /// The camera survey (`aloha camera`).
    Camera,
    /// Root only: try the known IR-emitter controls on the camera in use and record the one
    /// that lights the emitter. Progress reports follow.
    CameraProbe,
}

impl Request {
    /// The operation's name, for logs (never the secrets).
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Status { .. } => "status",
            Request::PinSet { .. } => "pin_set",
            Request::PinChange { .. } => "pin_change",
            Request::PinReset { .. } => "pin_reset",
            Request::SignIn { .. } => "sign_in",
            Request::AdminUnlock { .. } => "admin_unlock",
            Request::AdminRemove { .. } => "admin_remove",
            Request::FaceEnrol { .. } => "face_enrol",
            Request::FaceSignIn { .. } => "face_sign_in",
            Request::FaceTest { .. } => "face_test",
            Request::FaceList { .. } => "face_list",
            Request::FaceRemove { .. } => "face_remove",
            Request::FaceResume { .. } => "face_resume",
            Request::VaultEnable { .. } => "vault_enable",
            Request::VaultDisable { .. } => "vault_disable",
            Request::VaultCapture { .. } => "vault_capture",
            Request::Presence { .. } => "presence",
            Request::Camera => "camera",
            Request::CameraProbe => "camera_probe",
        }
    }
}

/// How the user answers a presence question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum Gesture {
    Pin {
        pin: Secret,
    },
    /// A live face match within `timeout_ms` (capped as for face sign-in).
    Face {
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Hello {
        version: u32,
        daemon: String,
    },
    Status(UserStatus),
    /// The request was carried out; `message` says what happened.
    Done {
        message: String,
    },
    /// r || s over [`crate::challenge::signin_digest`].
    Signed {
        #[serde(with = "crate::hex::serde")]
        signature: Vec<u8>,
        backend: BackendKind,
        /// The user's account password from their vault, when the request asked for it and
        /// the vault opened.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Secret>,
    },
    /// A report while a long face operation runs; the final reply follows.
    FaceProgress(FaceProgress),
    /// `face_list`'s answer.
    FaceProfiles {
        user: String,
        profiles: Vec<FaceProfileInfo>,
    },
    Camera(CameraReport),
    Error(Failure),
}

impl Response {
    /// Whether this ends the request (everything but progress reports).
    pub fn is_final(&self) -> bool {
        !matches!(self, Response::FaceProgress(_))
    }
}

/// A refusal: a machine-readable code and one or two sentences for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    /// When another attempt will be allowed (unix seconds), for delays and TPM lockout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<u64>,
    /// Wrong PINs that may still follow before the hard lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_before_lock: Option<u32>,
}

impl Failure {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retry_at: None,
            left_before_lock: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    VersionMismatch,
    BadRequest,
    Forbidden,
    UnknownUser,
    NotEnrolled,
    AlreadyEnrolled,
    PolicyViolation,
    WrongPassword,
    WrongPin,
    /// Too many recent wrong PINs: wait until `retry_at`.
    Delayed,
    /// Hard lock: PIN reset with the account password, or an administrator, lifts it.
    Locked,
    PinExpired,
    /// The TPM is in (or one step from) its global dictionary-attack lockout.
    TpmLockout,
    /// The key store this user's key lives in cannot be used now (no TPM, TPM error).
    BackendUnavailable,
    /// A state file is unreadable or corrupt; an administrator must look.
    StateCorrupt,
    /// Faces were compared and none matched.
    FaceNoMatch,
    /// The frames looked like a photo or a screen.
    FaceNotLive,
    /// No usable face was seen before the time ran out (not counted as a failure).
    FaceNotSeen,
    /// Face sign-in cannot run now: no camera, camera busy or gone, models missing.
    FaceUnavailable,
    /// Too many failed face attempts: face is off until a PIN or password sign-in succeeds.
    FaceLocked,
    Busy,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserStatus {
    pub user: String,
    pub uid: u32,
    pub enrolled: bool,
    #[serde(default)]
    pub backend: Option<BackendKind>,
    /// Protectors that can release the key: "pin" (later "face").
    #[serde(default)]
    pub protectors: Vec<String>,
    #[serde(default)]
    pub pin_set_at: Option<u64>,
    #[serde(default)]
    pub pin_expires_at: Option<u64>,
    pub failed_attempts: u32,
    pub max_attempts: u32,
    pub gate: Gate,
    /// The TPM's global dictionary-attack state, where a TPM is in use.
    #[serde(default)]
    pub tpm: Option<DaState>,
    /// Set while the TPM guard pauses PIN sign-in for every TPM-backed user (the TPM's counter
    /// is within `da_headroom` of maxTries, or it is in lockout).
    #[serde(default)]
    pub tpm_pause: Option<TpmPause>,
    /// The user's standing against their share of the TPM's failure budget, where their key
    /// (or, without a PIN, the default key store) is in a TPM whose state could be read.
    #[serde(default)]
    pub tpm_share: Option<TpmShare>,
    /// Where new PINs go (`aloha pin set` / `pin reset`).
    #[serde(default)]
    pub default_backend: Option<BackendKind>,
    /// What the user's key store (or, without a PIN, the default one) protects against, in words.
    #[serde(default)]
    pub protection: Option<String>,
    /// Something an administrator must fix (a corrupt state file...), in words.
    #[serde(default)]
    pub problem: Option<String>,
    /// Face sign-in; `None` when the user has no face enrolled.
    #[serde(default)]
    pub face: Option<FaceStatus>,
    /// The password vault.
    #[serde(default)]
    pub vault: VaultStatus,
}

/// Whether the user keeps their account password in a vault, and whether they may.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultStatus {
    /// The administrator allows vaults for this user's key store (`[vault]` in aloha.toml).
    pub allowed: bool,
    /// When the password was last sealed; `None`: no vault.
    #[serde(default)]
    pub sealed_at: Option<u64>,
    /// Why the vault cannot be used now (a key made before vaults, a corrupt file), in words.
    #[serde(default)]
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encode into a zeroizing buffer sized for the largest frame up front: a growing Vec would
/// leave copies of the secrets in the blocks it gives back.
pub fn encode<T: Serialize>(msg: &T) -> Result<zeroize::Zeroizing<Vec<u8>>, DecodeError> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(crate::frame::MAX_FRAME_LEN));
    serde_json::to_writer(&mut *out, msg).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(out)
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_hide_secrets_in_debug() {
        let req = Request::SignIn {
            user: "alice".into(),
            service: "sudo".into(),
            nonce: Nonce([3; 32]),
            pin: Secret::new("246810"),
            vault: true,
        };
        let bytes = encode(&req).unwrap();
        assert_eq!(decode::<Request>(&bytes).unwrap(), req);
        assert!(!format!("{req:?}").contains("246810"));
    }

    #[test]
    fn garbage_and_unknown_fields_are_refused() {
        for bad in [
            &b"\xff\xfe"[..],
            b"{}",
            b"[]",
            b"{\"op\":\"launch_missiles\"}",
            b"{\"op\":\"status\"}",
            b"{\"op\":\"status\",\"user\":\"a\",\"uid\":0}",
            b"{\"op\":\"sign_in\",\"user\":\"a\",\"service\":\"x\",\"nonce\":\"00\",\"pin\":\"1\"}",
        ] {
            assert!(
                decode::<Request>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn responses_round_trip() {
        let r = Response::Error(Failure {
            code: ErrorCode::Delayed,
            message: "Wait.".into(),
            retry_at: Some(5),
            left_before_lock: Some(2),
        });
        assert_eq!(decode::<Response>(&encode(&r).unwrap()).unwrap(), r);
        let s = Response::Signed {
            signature: vec![1; 64],
            backend: BackendKind::Tpm,
            password: None,
        };
        assert_eq!(decode::<Response>(&encode(&s).unwrap()).unwrap(), s);
        let with_password = Response::Signed {
            signature: vec![1; 64],
            backend: BackendKind::Tpm,
            password: Some(Secret::new("correct horse")),
        };
        assert_eq!(
            decode::<Response>(&encode(&with_password).unwrap()).unwrap(),
            with_password
        );
        assert!(!format!("{with_password:?}").contains("correct horse"));
    }
}
