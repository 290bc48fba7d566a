//! The sign-in proof: a fresh nonce, signed by the user's key inside alohad, verified by the
//! caller (pam_aloha or `aloha verify`) against the public key registered at enrolment.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub const NONCE_LEN: usize = 32;
/// r || s, each left-padded to 32 bytes.
pub const SIGNATURE_LEN: usize = 64;
const DOMAIN: &[u8] = b"aloha sign-in v1\0";

/// A fresh random challenge, made by the verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nonce(#[serde(with = "crate::hex::array")] pub [u8; NONCE_LEN]);

impl Nonce {
    pub fn random() -> Result<Nonce, ChallengeError> {
        let mut bytes = [0u8; NONCE_LEN];
        getrandom::fill(&mut bytes).map_err(|e| ChallengeError::Random(e.to_string()))?;
        Ok(Nonce(bytes))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChallengeError {
    #[error("no randomness available for a sign-in challenge: {0}")]
    Random(String),
    #[error("the registered public key is not a valid P-256 point")]
    BadPublicKey,
    #[error("the signature is malformed")]
    BadSignature,
    #[error("the signature does not verify against the user's registered public key")]
    Mismatch,
}

/// The digest alohad's key signs: bound to the user and the nonce, domain-separated.
pub fn signin_digest(user: &str, nonce: &Nonce) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update((user.len() as u64).to_be_bytes());
    h.update(user.as_bytes());
    h.update(nonce.0);
    h.finalize().into()
}

/// Check `signature` (r || s) over [`signin_digest`] with `public_key` (SEC1).
pub fn verify(
    public_key: &[u8],
    user: &str,
    nonce: &Nonce,
    signature: &[u8],
) -> Result<(), ChallengeError> {
    verify_digest(public_key, &signin_digest(user, nonce), signature)
}

/// Check `signature` (r || s) over `digest` with `public_key` (SEC1): the one check behind
/// every proof alohad gives (a sign-in, an application's presence question).
pub fn verify_digest(
    public_key: &[u8],
    digest: &[u8; 32],
    signature: &[u8],
) -> Result<(), ChallengeError> {
    let key =
        VerifyingKey::from_sec1_bytes(public_key).map_err(|_| ChallengeError::BadPublicKey)?;
    if signature.len() != SIGNATURE_LEN {
        return Err(ChallengeError::BadSignature);
    }
    let sig = Signature::from_slice(signature).map_err(|_| ChallengeError::BadSignature)?;
    // TPMs may emit high-S signatures; both forms prove possession of the key.
    let sig = sig.normalize_s();
    key.verify_prehash(digest, &sig)
        .map_err(|_| ChallengeError::Mismatch)
}

/// Left-pad a big-endian integer to 32 bytes (TPMs may strip leading zero bytes).
pub fn pad32(bytes: &[u8]) -> Option<[u8; 32]> {
    let trimmed = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => &[][..],
    };
    if trimmed.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(trimmed);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::hazmat::PrehashSigner;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn sign(k: &SigningKey, user: &str, nonce: &Nonce) -> Vec<u8> {
        let sig: Signature = k.sign_prehash(&signin_digest(user, nonce)).unwrap();
        sig.to_bytes().to_vec()
    }

    #[test]
    fn good_signature_verifies() {
        let k = key();
        let public = k.verifying_key().to_sec1_bytes();
        let nonce = Nonce::random().unwrap();
        let sig = sign(&k, "alice", &nonce);
        assert_eq!(verify(&public, "alice", &nonce, &sig), Ok(()));
    }

    #[test]
    fn wrong_user_nonce_key_or_garbage_fails() {
        let k = key();
        let public = k.verifying_key().to_sec1_bytes();
        let nonce = Nonce::random().unwrap();
        let sig = sign(&k, "alice", &nonce);
        assert_eq!(
            verify(&public, "bob", &nonce, &sig),
            Err(ChallengeError::Mismatch)
        );
        let other = Nonce::random().unwrap();
        assert_eq!(
            verify(&public, "alice", &other, &sig),
            Err(ChallengeError::Mismatch)
        );
        let stranger = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let forged = sign(&stranger, "alice", &nonce);
        assert_eq!(
            verify(&public, "alice", &nonce, &forged),
            Err(ChallengeError::Mismatch)
        );
        assert_eq!(
            verify(&public, "alice", &nonce, &[0u8; 64]),
            Err(ChallengeError::BadSignature)
        );
        assert_eq!(
            verify(&public, "alice", &nonce, &sig[..63]),
            Err(ChallengeError::BadSignature)
        );
        assert_eq!(
            verify(&[4u8; 65], "alice", &nonce, &sig),
            Err(ChallengeError::BadPublicKey)
        );
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(Nonce::random().unwrap(), Nonce::random().unwrap());
    }

    #[test]
    fn pad32_restores_stripped_zeros() {
        let mut expected = [0u8; 32];
        expected[30] = 1;
        expected[31] = 2;
        assert_eq!(pad32(&[1, 2]), Some(expected));
        assert_eq!(pad32(&[0u8; 33]), Some([0u8; 32]));
        assert_eq!(pad32(&[1u8; 33]), None);
    }
}
