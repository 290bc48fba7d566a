//! Key stores behind one trait: the TPM, and the software vault where no TPM exists.
//!
//! A backend holds one P-256 authentication key per user and releases it only for the right
//! authValue (derived from the PIN, [`AuthValue::from_pin`]). It never sees PINs, user names or
//! lockout state: policy lives in [`crate::service`].

pub mod software;
pub mod tpm;

use std::fmt;

use aloha::Secret;
use aloha::challenge::pad32;
pub use aloha::lockout::DaState;
use aloha::protocol::BackendKind;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

/// Per-container salt mixed into the PIN-derived authValue.
pub const SALT_LEN: usize = 16;

/// The secret a backend checks: HMAC-SHA256(salt, PIN). Never stored, never logged.
#[derive(Clone)]
pub struct AuthValue(Zeroizing<[u8; 32]>);

impl AuthValue {
    pub fn from_pin(pin: &Secret, salt: &[u8; SALT_LEN]) -> AuthValue {
        let mut out = Zeroizing::new([0u8; 32]);
        // HMAC accepts keys of any length, so this cannot fail; fall back to zeros defensively.
        if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(salt) {
            mac.update(b"aloha pin authValue v1\0");
            mac.update(pin.expose().as_bytes());
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        AuthValue(out)
    }

    /// The authValue of a protector whose secret is random (the face): the secret itself,
    /// bound to its purpose.
    pub fn from_secret(secret: &[u8; 32]) -> AuthValue {
        let mut out = Zeroizing::new([0u8; 32]);
        if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
            mac.update(b"aloha face authValue v1\0");
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
        AuthValue(out)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for AuthValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthValue(<redacted>)")
    }
}

/// Argon2id cost of a software-vault blob, stored with it so defaults can change later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub passes: u32,
    pub lanes: u32,
}

/// One protector's copy of the private key, as stored in the user's container.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeyBlob {
    /// TPM2B_PUBLIC and TPM2B_PRIVATE (marshalled) of a key under alohad's storage primary.
    Tpm {
        #[serde(with = "aloha::hex::serde")]
        public: Vec<u8>,
        #[serde(with = "aloha::hex::serde")]
        private: Vec<u8>,
    },
    /// The P-256 scalar sealed with XChaCha20-Poly1305 under Argon2id(authValue, salt).
    Software {
        kdf: KdfParams,
        #[serde(with = "aloha::hex::serde")]
        salt: Vec<u8>,
        #[serde(with = "aloha::hex::serde")]
        nonce: Vec<u8>,
        #[serde(with = "aloha::hex::serde")]
        ciphertext: Vec<u8>,
    },
}

impl KeyBlob {
    pub fn kind(&self) -> BackendKind {
        match self {
            KeyBlob::Tpm { .. } => BackendKind::Tpm,
            KeyBlob::Software { .. } => BackendKind::Software,
        }
    }

    /// Whether the key can perform [`KeyBackend::exchange`] (open a password vault): every
    /// software key; TPM keys made since the vault exists (earlier ones sign only).
    pub fn can_exchange(&self) -> bool {
        match self {
            KeyBlob::Tpm { .. } => tpm::can_exchange_blob(self),
            KeyBlob::Software { .. } => true,
        }
    }
}

impl fmt::Debug for KeyBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyBlob::Tpm { public, private } => {
                write!(
                    f,
                    "KeyBlob::Tpm(public {} B, private {} B)",
                    public.len(),
                    private.len()
                )
            }
            KeyBlob::Software { ciphertext, .. } => {
                write!(f, "KeyBlob::Software(ciphertext {} B)", ciphertext.len())
            }
        }
    }
}

/// Why a key cannot open a password vault: it was made before there was one.
pub const OLD_KEY: &str = "this key was made before the password vault and can only sign: \
     `aloha pin reset` makes one that can hold the vault";

/// A freshly created key: its public half (SEC1 uncompressed, 65 bytes) and the first blob.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub public_key: Vec<u8>,
    pub blob: KeyBlob,
}

#[derive(Debug, Error)]
pub enum BackendError {
    /// The authValue (PIN) is wrong. The attempt was counted by the TPM's DA protection.
    #[error("wrong PIN")]
    AuthFailed,
    /// The TPM refuses every DA-protected key until it recovers.
    #[error("the TPM is in dictionary-attack lockout")]
    Lockout,
    /// The blob cannot be used: corrupt, of the other backend, or made by another TPM.
    #[error("the key blob cannot be used: {0}")]
    BadBlob(String),
    /// The key store cannot be reached or used now, and never saw the PIN-derived value.
    #[error("the key store is unavailable: {0}")]
    Unavailable(String),
    /// The command carrying the PIN-derived value was sent, but no trustworthy answer came back
    /// (connection lost, response HMAC wrong, an unauthenticated error response): the key store
    /// may have judged the PIN, so the attempt must stay counted.
    #[error("the key store gave no trustworthy answer after the PIN was sent: {0}")]
    Indeterminate(String),
}

/// An ECDSA P-256 signature as [`KeyBackend::sign`] returns it: r || s, each left-padded to 32
/// bytes (a TPM hands back halves with their leading zeros stripped). Only a TPM can return a
/// longer half, so the error names it.
pub fn pack_signature(r: &[u8], s: &[u8]) -> Result<[u8; 64], BackendError> {
    let half = |bytes: &[u8]| {
        pad32(bytes).ok_or_else(|| {
            BackendError::Unavailable(
                "the TPM returned a signature half longer than 32 bytes".into(),
            )
        })
    };
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&half(r)?);
    out[32..].copy_from_slice(&half(s)?);
    Ok(out)
}

/// A key store. Implementations are driven from one owner at a time (alohad wraps each in a
/// mutex) and must release every TPM handle they load, on error paths too.
pub trait KeyBackend: Send {
    fn kind(&self) -> BackendKind;

    /// Create a new P-256 signing key whose use requires `auth`.
    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError>;

    /// Sign a 32-byte digest with the key in `blob`, released by `auth`. Returns r || s.
    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError>;

    /// A copy of the same key under a new authValue (the old one must be right).
    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError>;

    /// The x-coordinate of the private key times `point` (SEC1 uncompressed): the ECDH
    /// exchange that opens the user's password vault ([`crate::vault`]), released by `auth`
    /// exactly as a signature is.
    fn exchange(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        point: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, BackendError>;

    /// The TPM's dictionary-attack state; `None` for backends without one.
    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError>;

    /// A new key for PIN-history digests that only this key store can use (the TPM: an HMAC
    /// key that never leaves it). `None`: this store has none, alohad keeps a key file instead.
    fn create_history_key(&mut self) -> Result<Option<KeyBlob>, BackendError> {
        Ok(None)
    }

    /// Seal a short secret (a user's face secret and profile key) so that only this key store
    /// can unseal it. `None`: this store cannot seal (the software vault); alohad wraps the
    /// secret with its own key file instead, and says what that is worth.
    fn seal(&mut self, data: &[u8]) -> Result<Option<KeyBlob>, BackendError> {
        let _ = data;
        Ok(None)
    }

    /// The secret in a blob made by [`KeyBackend::seal`].
    fn unseal(&mut self, blob: &KeyBlob) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let _ = blob;
        Err(BackendError::Unavailable(
            "this key store seals no secrets".into(),
        ))
    }

    /// HMAC-SHA256 of `data` under a key made by [`KeyBackend::create_history_key`].
    fn history_mac(&mut self, key: &KeyBlob, data: &[u8; 32]) -> Result<[u8; 32], BackendError> {
        let _ = (key, data);
        Err(BackendError::Unavailable(
            "this key store holds no PIN-history key".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_halves_are_left_padded_and_never_longer_than_32_bytes() {
        let r = [0xAB; 31]; // a TPM strips the leading zero byte of r
        let s = [0xCD; 32];
        let packed = pack_signature(&r, &s).expect("packs");
        assert_eq!(packed[0], 0);
        assert_eq!(packed[1..32], r);
        assert_eq!(packed[32..], s);
        assert!(matches!(
            pack_signature(&[1; 33], &s),
            Err(BackendError::Unavailable(_))
        ));
        assert!(matches!(
            pack_signature(&r, &[1; 33]),
            Err(BackendError::Unavailable(_))
        ));
    }
}
