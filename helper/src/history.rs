//! PIN-history digests: slow, salted and keyed, so a copy of the state directory does not give
//! the current or earlier PINs away.
//!
//! digest = MAC(key, Argon2id(per-user salt, user ‖ 0 ‖ PIN)) at the software vault's cost.
//! On the TPM backend the MAC is TPM2_HMAC under a key that never leaves the TPM, so every guess
//! needs this machine's TPM; on the software vault the key is `private/history.key`, and the
//! digest is exactly as strong as the vault's own Argon2id blob (see docs/security.md).

use aloha::Secret;
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::backend::KdfParams;
use crate::store::HISTORY_SALT_LEN;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("bad Argon2id parameters for the PIN history: {0}")]
    Params(argon2::Error),
    #[error("Argon2id failed for the PIN history: {0}")]
    Argon2(argon2::Error),
    #[error("the PIN-history key cannot be used: {0}")]
    Key(hmac::digest::InvalidLength),
}

/// Argon2id(salt, "aloha pin history v2" ‖ 0 ‖ user ‖ 0 ‖ PIN): the slow half of a digest.
pub fn stretch(
    kdf: &KdfParams,
    salt: &[u8; HISTORY_SALT_LEN],
    user: &str,
    pin: &Secret,
) -> Result<Zeroizing<[u8; 32]>, HistoryError> {
    let params = Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
        .map_err(HistoryError::Params)?;
    let mut input = Zeroizing::new(Vec::with_capacity(32 + user.len() + pin.expose().len()));
    input.extend_from_slice(b"aloha pin history v2\0");
    input.extend_from_slice(user.as_bytes());
    input.push(0);
    input.extend_from_slice(pin.expose().as_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(&input, salt, out.as_mut_slice())
        .map_err(HistoryError::Argon2)?;
    Ok(out)
}

/// HMAC-SHA256 under the software history key.
pub fn software_mac(key: &[u8], data: &[u8; 32]) -> Result<[u8; 32], HistoryError> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(HistoryError::Key)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// The version-1 digest (HMAC-SHA256(history.key, user ‖ 0 ‖ PIN)), only to honour an old
/// history once while it is replaced.
pub fn legacy_digest(key: &[u8], user: &str, pin: &Secret) -> Result<String, HistoryError> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(HistoryError::Key)?;
    mac.update(user.as_bytes());
    mac.update(&[0]);
    mac.update(pin.expose().as_bytes());
    Ok(aloha::hex::encode(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };

    #[test]
    fn bad_parameters_are_a_typed_error() {
        let bad = KdfParams {
            memory_kib: 0,
            passes: 0,
            lanes: 0,
        };
        let e = stretch(&bad, &[1; 16], "alice", &Secret::new("482915")).unwrap_err();
        assert!(matches!(e, HistoryError::Params(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("bad Argon2id parameters for the PIN history")
        );
    }

    #[test]
    fn salt_user_and_pin_all_change_the_digest() {
        let pin = Secret::new("482915");
        let a = stretch(&FAST, &[1; 16], "alice", &pin).unwrap();
        assert_eq!(*a, *stretch(&FAST, &[1; 16], "alice", &pin).unwrap());
        assert_ne!(*a, *stretch(&FAST, &[2; 16], "alice", &pin).unwrap());
        assert_ne!(*a, *stretch(&FAST, &[1; 16], "bob", &pin).unwrap());
        assert_ne!(
            *a,
            *stretch(&FAST, &[1; 16], "alice", &Secret::new("482916")).unwrap()
        );
        assert_ne!(
            software_mac(&[1; 32], &a).unwrap(),
            software_mac(&[2; 32], &a).unwrap()
        );
    }
}
