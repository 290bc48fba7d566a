//! The password vault's cryptography: a user's account password sealed to their own key.
//!
//! Sealing needs only the public key (ECIES on P-256): an ephemeral key pair, the x-coordinate
//! of the shared point, HMAC-SHA256 over it and the context as the ChaCha20-Poly1305 key. So a
//! password sign-in can refresh the vault without the PIN, while opening it needs the private
//! key's half of the exchange — which the key store performs only for the PIN's (or the face's)
//! authValue, the same gesture that releases the key for a sign-in. With a TPM the exchange is
//! TPM2_ECDH_ZGen inside it: a copied disk opens nothing.

use aloha::Secret;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use hmac::Mac;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{AffinePoint, NonZeroScalar, ProjectivePoint, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
/// SEC1 uncompressed P-256 point.
pub const POINT_LEN: usize = 65;
/// The longest password the vault keeps (PAM's own limit, PAM_MAX_RESP_SIZE, is 512).
pub const MAX_PASSWORD_LEN: usize = 512;
const LABEL: &[u8] = b"aloha password vault v1\0";

/// A password sealed to a user's key, as stored in `vault.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedPassword {
    /// The ephemeral public point (SEC1 uncompressed).
    #[serde(with = "aloha::hex::serde")]
    pub ephemeral: Vec<u8>,
    #[serde(with = "aloha::hex::serde")]
    pub nonce: Vec<u8>,
    #[serde(with = "aloha::hex::serde")]
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedPassword({} B)", self.ciphertext.len())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("the user's public key is not a P-256 point")]
    BadPublicKey,
    #[error("the sealed password is malformed: {0}")]
    Malformed(&'static str),
    #[error("the sealed password does not open with this key (made for another key or changed)")]
    DoesNotOpen,
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("no randomness: {0}")]
    Random(String),
}

/// Who the password belongs to: bound into the key and the AEAD, so a vault moved to another
/// user's directory (or kept across a re-created account) does not open.
#[derive(Debug)]
pub struct Owner<'a> {
    pub user: &'a str,
    pub uid: u32,
    /// The user's public key (SEC1 uncompressed), the one the password is sealed to.
    pub public_key: &'a [u8],
}

impl Owner<'_> {
    fn context(&self, ephemeral: &[u8]) -> Vec<u8> {
        let mut c = Vec::with_capacity(LABEL.len() + self.user.len() + 140);
        c.extend_from_slice(LABEL);
        c.extend_from_slice(self.user.as_bytes());
        c.push(0);
        c.extend_from_slice(&self.uid.to_be_bytes());
        c.extend_from_slice(self.public_key);
        c.extend_from_slice(ephemeral);
        c
    }

    fn cipher(
        &self,
        shared_x: &[u8; 32],
        ephemeral: &[u8],
    ) -> Result<ChaCha20Poly1305, VaultError> {
        let mut mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(shared_x)
            .map_err(|_| VaultError::Malformed("shared secret"))?;
        mac.update(&self.context(ephemeral));
        let key = Zeroizing::new(mac.finalize().into_bytes());
        ChaCha20Poly1305::new_from_slice(&key).map_err(|_| VaultError::Malformed("key"))
    }
}

/// The x-coordinate of `scalar · point`, the ECDH shared secret (what TPM2_ECDH_ZGen returns).
pub fn shared_x(scalar: &NonZeroScalar, point: &AffinePoint) -> Zeroizing<[u8; 32]> {
    let shared = (ProjectivePoint::from(*point) * **scalar).to_affine();
    let encoded = shared.to_sec1_point(false);
    let mut out = Zeroizing::new([0u8; 32]);
    if let Some(x) = encoded.x() {
        out.copy_from_slice(x);
    }
    out
}

/// A SEC1 uncompressed point, checked to be on the curve (and not the identity).
pub fn parse_point(bytes: &[u8]) -> Option<AffinePoint> {
    if bytes.len() != POINT_LEN {
        return None;
    }
    PublicKey::from_sec1_bytes(bytes)
        .ok()
        .map(|k| *k.as_affine())
}

fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| VaultError::Random(e.to_string()))?;
    Ok(out)
}

/// Seal `password` to `owner`'s public key.
pub fn seal(owner: &Owner<'_>, password: &Secret) -> Result<SealedPassword, VaultError> {
    if password.expose().len() > MAX_PASSWORD_LEN {
        return Err(VaultError::TooLong);
    }
    let recipient = parse_point(owner.public_key).ok_or(VaultError::BadPublicKey)?;
    let ephemeral_scalar = loop {
        let bytes = Zeroizing::new(random::<32>()?);
        if let Some(s) = Option::<NonZeroScalar>::from(NonZeroScalar::from_repr((*bytes).into())) {
            break s;
        }
    };
    let ephemeral = (ProjectivePoint::GENERATOR * *ephemeral_scalar)
        .to_affine()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    let x = shared_x(&ephemeral_scalar, &recipient);
    let nonce = random::<NONCE_LEN>()?;
    let context = owner.context(&ephemeral);
    let ciphertext = owner
        .cipher(&x, &ephemeral)?
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: password.expose().as_bytes(),
                aad: &context,
            },
        )
        .map_err(|_| VaultError::Malformed("encryption"))?;
    Ok(SealedPassword {
        ephemeral,
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

/// Open `sealed` with the shared secret the key store computed for `sealed.ephemeral`.
pub fn open(
    owner: &Owner<'_>,
    sealed: &SealedPassword,
    shared_x: &[u8; 32],
) -> Result<Secret, VaultError> {
    let nonce = Nonce::try_from(sealed.nonce.as_slice())
        .map_err(|_| VaultError::Malformed("nonce length"))?;
    let context = owner.context(&sealed.ephemeral);
    let plain = Zeroizing::new(
        owner
            .cipher(shared_x, &sealed.ephemeral)?
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &context,
                },
            )
            .map_err(|_| VaultError::DoesNotOpen)?,
    );
    let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Malformed("not UTF-8"))?;
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::SecretKey;
    use p256::elliptic_curve::sec1::ToSec1Point;

    fn key(seed: u8) -> (NonZeroScalar, Vec<u8>) {
        let secret = SecretKey::from_slice(&[seed; 32]).unwrap();
        let public = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
        (secret.to_nonzero_scalar(), public)
    }

    fn shared_for(scalar: &NonZeroScalar, sealed: &SealedPassword) -> Zeroizing<[u8; 32]> {
        shared_x(scalar, &parse_point(&sealed.ephemeral).unwrap())
    }

    #[test]
    fn a_sealed_password_opens_only_with_its_key_for_its_owner() {
        let (scalar, public) = key(7);
        let owner = Owner {
            user: "alice",
            uid: 1000,
            public_key: &public,
        };
        let sealed = seal(&owner, &Secret::new("correct horse 7")).unwrap();
        assert!(!format!("{sealed:?}").contains("horse"));
        let opened = open(&owner, &sealed, &shared_for(&scalar, &sealed)).unwrap();
        assert_eq!(opened.expose(), "correct horse 7");
        // Each sealing is fresh: a new ephemeral key and nonce.
        let again = seal(&owner, &Secret::new("correct horse 7")).unwrap();
        assert_ne!(again.ephemeral, sealed.ephemeral);
        assert_ne!(again.ciphertext, sealed.ciphertext);

        // Another key, another user name, another uid: nothing opens.
        let (other, _) = key(9);
        assert_eq!(
            open(&owner, &sealed, &shared_for(&other, &sealed)),
            Err(VaultError::DoesNotOpen)
        );
        for (user, uid) in [("bob", 1000), ("alice", 1001)] {
            let moved = Owner {
                user,
                uid,
                public_key: &public,
            };
            assert_eq!(
                open(&moved, &sealed, &shared_for(&scalar, &sealed)),
                Err(VaultError::DoesNotOpen)
            );
        }
        // A flipped bit anywhere is refused.
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            open(&owner, &tampered, &shared_for(&scalar, &tampered)),
            Err(VaultError::DoesNotOpen)
        );
        let mut short_nonce = sealed.clone();
        short_nonce.nonce.pop();
        assert!(matches!(
            open(&owner, &short_nonce, &shared_for(&scalar, &sealed)),
            Err(VaultError::Malformed(_))
        ));
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_sealed() {
        let (_, public) = key(7);
        let owner = Owner {
            user: "alice",
            uid: 1000,
            public_key: &public,
        };
        let long = Secret::new("x".repeat(MAX_PASSWORD_LEN + 1));
        assert_eq!(seal(&owner, &long).unwrap_err(), VaultError::TooLong);
        let mut off_curve = public.clone();
        off_curve[64] ^= 1;
        let bad = Owner {
            public_key: &off_curve,
            ..owner
        };
        assert_eq!(
            seal(&bad, &Secret::new("pw")).unwrap_err(),
            VaultError::BadPublicKey
        );
        assert!(parse_point(&[4; 10]).is_none());
        assert!(parse_point(&off_curve).is_none());
    }
}
