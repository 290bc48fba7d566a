//! A user's face secrets: the face secret (the face protector's authValue comes from it) and
//! the key the profiles are sealed with. With a TPM they are sealed by it (useless on another
//! machine); on the software vault they are encrypted under alohad's `private/face.key`, which
//! protects them from nobody who can read alohad's state — `aloha status` says so.

use aloha::protocol::{BackendKind, ErrorCode, Failure};
use aloha_face::ProfileKey;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::super::Service;
use super::super::failures::{random, store_failure};
use super::super::key_stores::backend_failure;
use crate::backend::{AuthValue, KeyBackend};
use crate::store::SealedSecret;

const AAD: &[u8] = b"aloha face secret v1\0";

/// The face secret and the profile key. Zeroized on drop, never printed.
pub(in crate::service) struct FaceSecrets(Zeroizing<[u8; 64]>);

impl std::fmt::Debug for FaceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaceSecrets(<redacted>)")
    }
}

impl FaceSecrets {
    pub(in crate::service) fn generate() -> Result<FaceSecrets, Failure> {
        Ok(FaceSecrets(Zeroizing::new(random::<64>()?)))
    }

    /// The authValue of the face protector.
    pub(in crate::service) fn auth(&self) -> AuthValue {
        let mut face = Zeroizing::new([0u8; 32]);
        face.copy_from_slice(&self.0[..32]);
        AuthValue::from_secret(&face)
    }

    pub(in crate::service) fn profile_key(&self) -> ProfileKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(&self.0[32..]);
        let profile_key = ProfileKey::new(key);
        zeroize::Zeroize::zeroize(&mut key);
        profile_key
    }

    fn from_bytes(bytes: &[u8]) -> Option<FaceSecrets> {
        let mut out = Zeroizing::new([0u8; 64]);
        if bytes.len() != out.len() {
            return None;
        }
        out.copy_from_slice(bytes);
        Some(FaceSecrets(out))
    }
}

fn aad(user: &str) -> Vec<u8> {
    [AAD, user.as_bytes()].concat()
}

fn corrupt(user: &str, why: &str) -> Failure {
    Failure::new(
        ErrorCode::StateCorrupt,
        format!(
            "{user}'s face secret cannot be used ({why}); this happens after a TPM was cleared or \
             replaced, or when alohad's state was damaged. Enrol the face again with `aloha face \
             remove --all` and `aloha face enroll`; your PIN and password still work."
        ),
    )
}

impl Service {
    /// Seal `secrets` with the user's key store (`backend`), or wrap them under alohad's face
    /// key file where the store cannot seal.
    pub(in crate::service) fn seal_face_secrets(
        &self,
        user: &str,
        backend: &mut dyn KeyBackend,
        secrets: &FaceSecrets,
    ) -> Result<SealedSecret, Failure> {
        if let Some(blob) = backend
            .seal(&secrets.0[..])
            .map_err(|e| backend_failure(user, e))?
        {
            return Ok(SealedSecret::Tpm { blob });
        }
        let key = self
            .store
            .face_key(true)
            .map_err(|e| store_failure(user, e))?;
        let nonce = random::<24>()?;
        let cipher = XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| Failure::new(ErrorCode::Internal, "the face key has the wrong size"))?;
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &secrets.0[..],
                    aad: &aad(user),
                },
            )
            .map_err(|_| Failure::new(ErrorCode::Internal, "cannot encrypt the face secret"))?;
        Ok(SealedSecret::Software {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub(in crate::service) fn unseal_face_secrets(
        &self,
        user: &str,
        backend: &mut dyn KeyBackend,
        sealed: &SealedSecret,
    ) -> Result<FaceSecrets, Failure> {
        let bytes = match sealed {
            SealedSecret::Tpm { blob } => {
                if backend.kind() != BackendKind::Tpm {
                    return Err(corrupt(
                        user,
                        "it was sealed by a TPM, the key is not in one",
                    ));
                }
                backend.unseal(blob).map_err(|e| match e {
                    crate::backend::BackendError::BadBlob(m) => corrupt(user, &m),
                    other => backend_failure(user, other),
                })?
            }
            SealedSecret::Software { nonce, ciphertext } => {
                let key = self
                    .store
                    .face_key(false)
                    .map_err(|e| store_failure(user, e))?;
                let nonce = XNonce::try_from(nonce.as_slice())
                    .map_err(|_| corrupt(user, "its nonce has the wrong length"))?;
                let cipher = XChaCha20Poly1305::new_from_slice(&key)
                    .map_err(|_| corrupt(user, "the face key has the wrong size"))?;
                Zeroizing::new(
                    cipher
                        .decrypt(
                            &nonce,
                            Payload {
                                msg: ciphertext,
                                aad: &aad(user),
                            },
                        )
                        .map_err(|_| corrupt(user, "it does not decrypt"))?,
                )
            }
        };
        FaceSecrets::from_bytes(&bytes).ok_or_else(|| corrupt(user, "it has the wrong length"))
    }
}
