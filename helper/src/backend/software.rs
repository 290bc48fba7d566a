//! The software vault: the same container without a TPM.
//!
//! The P-256 scalar is sealed with XChaCha20-Poly1305 under a key stretched from the authValue
//! with Argon2id (64 MiB, 3 passes). A wrong PIN fails the AEAD tag. What this protects against
//! and what not is stated in [`aloha::protocol::BackendKind::protection`] and docs/security.md.

use aloha::protocol::BackendKind;
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use zeroize::Zeroizing;

use super::{
    AuthValue, BackendError, DaState, KdfParams, KeyBackend, KeyBlob, NewKey, pack_signature,
};

const AAD: &[u8] = b"aloha software vault v1";
const NONCE_LEN: usize = 24;
const KDF_SALT_LEN: usize = 16;

/// Argon2id at 64 MiB and 3 passes: ~0.12 s on this class of machine.
pub const DEFAULT_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    passes: 3,
    lanes: 1,
};

/// The most a stored blob may ask for (1 GiB, 16 passes, 8 lanes).
pub const MAX_KDF: KdfParams = KdfParams {
    memory_kib: 1024 * 1024,
    passes: 16,
    lanes: 8,
};

#[derive(Debug)]
pub struct SoftwareVault {
    kdf: KdfParams,
}

impl Default for SoftwareVault {
    fn default() -> Self {
        SoftwareVault { kdf: DEFAULT_KDF }
    }
}

fn random<const N: usize>() -> Result<[u8; N], BackendError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| BackendError::Unavailable(format!("no randomness: {e}")))?;
    Ok(out)
}

impl SoftwareVault {
    /// A vault with a custom Argon2id cost (tests and benchmarks may lower it).
    pub fn with_kdf(kdf: KdfParams) -> SoftwareVault {
        SoftwareVault { kdf }
    }

    fn stretch(
        kdf: &KdfParams,
        auth: &AuthValue,
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, BackendError> {
        // The cost comes from a file: a corrupted one must not make alohad allocate terabytes
        // or spin for hours.
        if kdf.memory_kib > MAX_KDF.memory_kib
            || kdf.passes > MAX_KDF.passes
            || kdf.lanes > MAX_KDF.lanes
        {
            return Err(BackendError::BadBlob(format!(
                "Argon2id cost {} KiB x {} passes x {} lanes is beyond the sane maximum",
                kdf.memory_kib, kdf.passes, kdf.lanes
            )));
        }
        let params = Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
            .map_err(|e| BackendError::BadBlob(format!("bad Argon2id parameters: {e}")))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(auth.as_bytes(), salt, key.as_mut_slice())
            .map_err(|e| BackendError::BadBlob(format!("Argon2id failed: {e}")))?;
        Ok(key)
    }

    fn wrap(&self, scalar: &[u8], auth: &AuthValue) -> Result<KeyBlob, BackendError> {
        let salt = random::<KDF_SALT_LEN>()?;
        let nonce = random::<NONCE_LEN>()?;
        let key = Self::stretch(&self.kdf, auth, &salt)?;
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
            .map_err(|e| BackendError::Unavailable(format!("cipher setup: {e}")))?;
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: scalar,
                    aad: AAD,
                },
            )
            .map_err(|e| BackendError::Unavailable(format!("sealing failed: {e}")))?;
        Ok(KeyBlob::Software {
            kdf: self.kdf,
            salt: salt.to_vec(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    fn open(blob: &KeyBlob, auth: &AuthValue) -> Result<SigningKey, BackendError> {
        let KeyBlob::Software {
            kdf,
            salt,
            nonce,
            ciphertext,
        } = blob
        else {
            return Err(BackendError::BadBlob(
                "this key was created in the TPM, not in the software vault".into(),
            ));
        };
        if nonce.len() != NONCE_LEN || salt.len() != KDF_SALT_LEN {
            return Err(BackendError::BadBlob(
                "nonce or salt has the wrong length".into(),
            ));
        }
        let nonce = XNonce::try_from(nonce.as_slice())
            .map_err(|_| BackendError::BadBlob("nonce has the wrong length".into()))?;
        let key = Self::stretch(kdf, auth, salt)?;
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
            .map_err(|e| BackendError::Unavailable(format!("cipher setup: {e}")))?;
        let scalar = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ciphertext,
                        aad: AAD,
                    },
                )
                .map_err(|_| BackendError::AuthFailed)?,
        );
        SigningKey::from_slice(&scalar)
            .map_err(|_| BackendError::BadBlob("the sealed key is not a P-256 scalar".into()))
    }
}

impl KeyBackend for SoftwareVault {
    fn kind(&self) -> BackendKind {
        BackendKind::Software
    }

    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError> {
        let key = loop {
            let scalar = Zeroizing::new(random::<32>()?);
            // Out-of-range scalars (probability ~2^-32) are simply redrawn.
            if let Ok(key) = SigningKey::from_slice(scalar.as_slice()) {
                break key;
            }
        };
        let public_key = key.verifying_key().to_sec1_bytes().to_vec();
        let scalar = Zeroizing::new(key.to_bytes().to_vec());
        Ok(NewKey {
            public_key,
            blob: self.wrap(&scalar, auth)?,
        })
    }

    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        let key = Self::open(blob, auth)?;
        let sig: Signature = key
            .sign_prehash(digest)
            .map_err(|e| BackendError::Unavailable(format!("signing failed: {e}")))?;
        let (r, s) = sig.split_bytes();
        pack_signature(&r, &s)
    }

    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        let key = Self::open(blob, old)?;
        let scalar = Zeroizing::new(key.to_bytes().to_vec());
        self.wrap(&scalar, new)
    }

    fn exchange(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        point: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, BackendError> {
        let key = Self::open(blob, auth)?;
        let point = crate::vault::parse_point(point)
            .ok_or_else(|| BackendError::BadBlob("the point is not on P-256".into()))?;
        Ok(crate::vault::shared_x(key.as_nonzero_scalar(), &point))
    }

    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloha::Secret;

    #[test]
    fn an_absurd_stored_cost_is_refused_not_attempted() {
        let auth = AuthValue::from_pin(&Secret::new("482915"), &[1; 16]);
        let mut vault = SoftwareVault::with_kdf(KdfParams {
            memory_kib: 64,
            passes: 1,
            lanes: 1,
        });
        let key = vault.create(&auth).unwrap();
        let KeyBlob::Software {
            salt,
            nonce,
            ciphertext,
            ..
        } = key.blob
        else {
            panic!()
        };
        for kdf in [
            KdfParams {
                memory_kib: u32::MAX,
                passes: 1,
                lanes: 1,
            },
            KdfParams {
                memory_kib: 64,
                passes: u32::MAX,
                lanes: 1,
            },
            KdfParams {
                memory_kib: 64,
                passes: 1,
                lanes: 1000,
            },
        ] {
            let blob = KeyBlob::Software {
                kdf,
                salt: salt.clone(),
                nonce: nonce.clone(),
                ciphertext: ciphertext.clone(),
            };
            assert!(matches!(
                vault.sign(&blob, &auth, &[0; 32]),
                Err(BackendError::BadBlob(_))
            ));
        }
    }
}
