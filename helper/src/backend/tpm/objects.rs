//! What alohad asks the TPM to create, and what it accepts back from a container: the key
//! templates, the stored blob (TPM2B framing, parsing, the checks that keep a foreign key out)
//! and the conversions of authValues and public points.

use aloha::challenge::pad32;
use tss_esapi::Error as TssError;
use tss_esapi::attributes::{ObjectAttributes, ObjectAttributesBuilder};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::structures::{
    Auth, Digest, EccParameter, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme,
    KeyedHashScheme, Private, Public, PublicBuffer, PublicBuilder, PublicEccParameters,
    PublicEccParametersBuilder, PublicKeyedHashParameters, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};

use super::errors::{describe, internal};
use crate::backend::{AuthValue, BackendError, KeyBlob};

/// The TCG SRK template, ECC NIST P-256 with AES-128-CFB: deterministic, so the same key is
/// derived from the owner seed at every start.
pub(super) fn storage_primary_template() -> Result<Public, TssError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    ecc_p256(
        attributes,
        PublicEccParametersBuilder::new_restricted_decryption_key(
            SymmetricDefinitionObject::AES_128_CFB,
            EccCurve::NistP256,
        )
        .build()?,
    )
}

/// A P-256 key's public area, to be filled in by the TPM (unique: the point, empty here).
fn ecc_p256(
    attributes: ObjectAttributes,
    parameters: PublicEccParameters,
) -> Result<Public, TssError> {
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn ecdsa_sha256() -> EccScheme {
    EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256))
}

/// The PIN-history key's attributes: it never leaves this TPM, is made inside it, signs (HMAC)
/// and does nothing else, and its use judges no PIN (noDA).
fn history_key_attributes() -> Result<ObjectAttributes, TssError> {
    ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(false)
        .with_no_da(true)
        .build()
}

/// A user's authentication key: P-256, not restricted, DA-protected, that signs (ECDSA-SHA256,
/// the scheme given with each TPM2_Sign) and performs the key exchange that opens the user's
/// password vault (TPM2_ECDH_ZGen). The TPM requires the NULL scheme on a key that does both.
/// Both uses need the same authValue, so the vault opens only for the gesture that signs.
pub(super) fn signing_key_template() -> Result<Public, TssError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(true)
        .with_restricted(false)
        .with_no_da(false)
        .build()?;
    ecc_p256(
        attributes,
        PublicEccParametersBuilder::new()
            .with_ecc_scheme(EccScheme::Null)
            .with_curve(EccCurve::NistP256)
            .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
            .with_symmetric(SymmetricDefinitionObject::Null)
            .with_restricted(false)
            .build()?,
    )
}

/// Whether a sign-in key (checked by `TpmBlob::parse`) can open a password vault: keys made
/// before the vault existed sign only.
pub(super) fn can_exchange(public: &Public) -> bool {
    matches!(public, Public::Ecc { object_attributes, .. } if object_attributes.decrypt())
}

/// alohad's PIN-history key: HMAC-SHA256, no authValue, noDA (its use judges no PIN), fixedTPM:
/// a copied state directory is useless without this TPM.
pub(super) fn history_key_template() -> Result<Public, TssError> {
    let attributes = history_key_attributes()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(
            KeyedHashScheme::HMAC_SHA_256,
        ))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// A sealed secret (a user's face secret and profile key): a data object, no authValue, noDA
/// (unsealing judges no PIN), fixedTPM and fixedParent: it unseals only in this TPM, under
/// alohad's primary.
pub(super) fn sealed_data_template() -> Result<Public, TssError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_user_with_auth(true)
        .with_no_da(true)
        .with_sign_encrypt(false)
        .with_decrypt(false)
        .with_restricted(false)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// Refuse a sealed blob that is not a data object as alohad creates it (a key could never be
/// unsealed, but say so before the TPM does).
pub(super) fn check_sealed_public(public: &Public) -> Result<(), BackendError> {
    check_keyed_hash(public, KeyedHashScheme::Null, false, "sealed secret")
}

/// The authValue as tss-esapi wants it. The TPM drops trailing zero octets of an authValue it
/// stores, and tpm2-tss 3.2 does the same for the HMAC key; dropping them here too keeps both
/// sides equal whatever the TSS version (about one PIN in 256 derives such an authValue).
/// The `Auth` zeroizes its buffer when dropped.
pub(super) fn tss_auth(auth: &AuthValue) -> Result<Auth, BackendError> {
    let bytes = auth.as_bytes();
    let len = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1);
    Auth::try_from(&bytes[..len]).map_err(|e| internal("the authValue", &e))
}

/// What a blob's public area must be: [`check_key_public`] or [`check_history_public`].
type PublicCheck = fn(&Public) -> Result<(), BackendError>;

/// A TPM blob, parsed and checked before anything is sent to the TPM.
pub(super) struct TpmBlob {
    pub(super) public: Public,
    pub(super) private: Private,
    /// The marshalled TPM2B_PUBLIC, as stored.
    public_bytes: Vec<u8>,
}

impl TpmBlob {
    pub(super) fn parse(blob: &KeyBlob) -> Result<TpmBlob, BackendError> {
        TpmBlob::parse_as(blob, check_key_public)
    }

    pub(super) fn parse_as(blob: &KeyBlob, check: PublicCheck) -> Result<TpmBlob, BackendError> {
        let KeyBlob::Tpm { public, private } = blob else {
            return Err(BackendError::BadBlob(
                "this key is in the software vault, not in the TPM: use the backend it was created with".into(),
            ));
        };
        let public_area = unwrap_tpm2b("public part", public)?;
        let parsed = Public::unmarshall(public_area).map_err(|e| {
            BackendError::BadBlob(format!(
                "the key's public part does not parse: {}",
                describe(&e)
            ))
        })?;
        // The TSS unmarshaller ignores trailing bytes: insist on the canonical encoding.
        if parsed.marshall().ok().as_deref() != Some(public_area) {
            return Err(BackendError::BadBlob(
                "the key's public part has trailing or non-canonical bytes".into(),
            ));
        }
        check(&parsed)?;
        let private_area = unwrap_tpm2b("private part", private)?;
        let private = Private::try_from(private_area).map_err(|e| {
            BackendError::BadBlob(format!(
                "the key's private part is too large: {}",
                describe(&e)
            ))
        })?;
        Ok(TpmBlob {
            public: parsed,
            private,
            public_bytes: public.clone(),
        })
    }

    /// The same key with the private part TPM2_ObjectChangeAuth returned (a new authValue).
    pub(super) fn with_private(self, private: &Private) -> Result<KeyBlob, BackendError> {
        Ok(KeyBlob::Tpm {
            public: self.public_bytes,
            private: wrap_tpm2b(private.value())?,
        })
    }
}

/// The container form of a key the TPM created; `what` names its public part in the error.
pub(super) fn key_blob(
    what: &str,
    public: Public,
    private: &Private,
) -> Result<KeyBlob, BackendError> {
    let public = PublicBuffer::try_from(public)
        .and_then(|buffer| buffer.marshall())
        .map_err(|e| internal(what, &e))?;
    Ok(KeyBlob::Tpm {
        public,
        private: wrap_tpm2b(private.value())?,
    })
}

/// Refuse a blob that is not the kind of key alohad creates, before it reaches the TPM (a noDA
/// key, a decryption key or a sealed secret must never be usable as a sign-in key).
fn check_key_public(public: &Public) -> Result<(), BackendError> {
    let Public::Ecc {
        object_attributes: a,
        parameters,
        ..
    } = public
    else {
        return Err(BackendError::BadBlob("the key is not an ECC key".into()));
    };
    // Two kinds: sign-only with the ECDSA-SHA256 scheme (made before the password vault), and
    // sign-and-exchange with the NULL scheme (what `signing_key_template` makes now).
    let kind_ok = if a.decrypt() {
        parameters.ecc_scheme() == EccScheme::Null
    } else {
        parameters.ecc_scheme() == ecdsa_sha256()
    };
    if parameters.ecc_curve() != EccCurve::NistP256 || !kind_ok {
        return Err(BackendError::BadBlob(
            "the key is not a P-256 key as Aloha makes them".into(),
        ));
    }
    if !a.sign_encrypt() || a.restricted() || a.no_da() || !a.user_with_auth() || !a.fixed_tpm() {
        return Err(BackendError::BadBlob(
            "the key's attributes are not those of an Aloha sign-in key (signing, DA-protected, fixedTPM)".into(),
        ));
    }
    Ok(())
}

/// Refuse a PIN-history blob that is not an HMAC key as alohad creates it.
pub(super) fn check_history_public(public: &Public) -> Result<(), BackendError> {
    check_keyed_hash(
        public,
        KeyedHashScheme::HMAC_SHA_256,
        true,
        "PIN-history key",
    )
}

/// A keyed-hash object as alohad creates it: `scheme`, signing (an HMAC key) or not (sealed
/// data), never a decryption key, fixedTPM and fixedParent. `what` names it in the error.
fn check_keyed_hash(
    public: &Public,
    scheme: KeyedHashScheme,
    signs: bool,
    what: &str,
) -> Result<(), BackendError> {
    let Public::KeyedHash {
        object_attributes: a,
        parameters,
        ..
    } = public
    else {
        return Err(BackendError::BadBlob(format!(
            "the {what} is not a TPM keyed-hash object"
        )));
    };
    if *parameters != PublicKeyedHashParameters::new(scheme)
        || a.sign_encrypt() != signs
        || a.decrypt()
        || !a.fixed_tpm()
        || !a.fixed_parent()
    {
        return Err(BackendError::BadBlob(format!(
            "the {what}'s attributes are not those alohad creates"
        )));
    }
    Ok(())
}

// Ours: tss-esapi 7.7 cannot marshal `Private`, and `PublicBuffer` lets bad sizes and tails in.
/// A TPM2B: big-endian u16 size, then exactly that many bytes.
fn wrap_tpm2b(bytes: &[u8]) -> Result<Vec<u8>, BackendError> {
    let size = u16::try_from(bytes.len())
        .map_err(|_| BackendError::Unavailable("the TPM returned an oversized structure".into()))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(out)
}

fn unwrap_tpm2b<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8], BackendError> {
    let Some((size, rest)) = bytes.split_first_chunk::<2>() else {
        return Err(BackendError::BadBlob(format!(
            "the key's {what} is truncated ({} bytes)",
            bytes.len()
        )));
    };
    let size = usize::from(u16::from_be_bytes(*size));
    if rest.len() != size || size == 0 {
        return Err(BackendError::BadBlob(format!(
            "the key's {what} declares {size} bytes but holds {}",
            rest.len()
        )));
    }
    Ok(rest)
}

/// SEC1 uncompressed point (0x04 || x || y) of a P-256 public area.
pub(super) fn sec1_public_key(public: &Public) -> Result<Vec<u8>, BackendError> {
    let Public::Ecc { unique, .. } = public else {
        return Err(BackendError::Unavailable(
            "the TPM created a key that is not an ECC key".into(),
        ));
    };
    let bad =
        || BackendError::Unavailable("the TPM returned a public point longer than 32 bytes".into());
    let x = pad32(unique.x().value()).ok_or_else(bad)?;
    let y = pad32(unique.y().value()).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(65);
    out.push(0x04);
    out.extend_from_slice(&x);
    out.extend_from_slice(&y);
    Ok(out)
}

/// A SEC1 uncompressed point as the TPM takes it.
pub(super) fn tpm_point(sec1: &[u8]) -> Result<EccPoint, BackendError> {
    let [0x04, coords @ ..] = sec1 else {
        return Err(BackendError::BadBlob(
            "the point is not SEC1 uncompressed".into(),
        ));
    };
    if coords.len() != 64 {
        return Err(BackendError::BadBlob(
            "the point is not a P-256 point".into(),
        ));
    }
    let (x, y) = coords.split_at(32);
    let coord =
        |c: &[u8]| EccParameter::try_from(c).map_err(|e| internal("a point coordinate", &e));
    Ok(EccPoint::new(coord(x)?, coord(y)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tpm2b_framing_is_strict() {
        assert_eq!(unwrap_tpm2b("x", &[0, 2, 7, 8]).ok(), Some(&[7u8, 8][..]));
        assert!(unwrap_tpm2b("x", &[0, 3, 7, 8]).is_err());
        assert!(unwrap_tpm2b("x", &[0, 1, 7, 8]).is_err());
        assert!(unwrap_tpm2b("x", &[0]).is_err());
        assert!(unwrap_tpm2b("x", &[0, 0]).is_err());
        assert_eq!(wrap_tpm2b(&[7, 8]).ok(), Some(vec![0, 2, 7, 8]));
    }

    #[test]
    fn templates_build() {
        assert!(storage_primary_template().is_ok());
        let key = signing_key_template().expect("key template");
        assert!(check_key_public(&key).is_ok());
        let history = history_key_template().expect("history key template");
        assert!(check_history_public(&history).is_ok());
        assert!(check_key_public(&history).is_err());
        assert!(check_history_public(&key).is_err());
    }

    /// Containers written before `key_blob` used `PublicBuffer` hold our own framing of the
    /// public area: the two must agree byte for byte, and what is written must read back.
    #[test]
    fn key_blob_writes_the_stored_format_and_reads_it_back() {
        let cases: [(_, PublicCheck); 2] = [
            (signing_key_template(), check_key_public),
            (history_key_template(), check_history_public),
        ];
        for (template, check) in cases {
            let template = template.expect("template");
            let private = Private::try_from(&[7u8; 48][..]).expect("private");
            let blob = key_blob("x", template.clone(), &private).expect("blob");
            let framed = wrap_tpm2b(&template.marshall().expect("marshall")).expect("frame");
            let KeyBlob::Tpm {
                public,
                private: stored_private,
            } = &blob
            else {
                panic!("not a TPM blob")
            };
            assert_eq!(*public, framed);
            assert_eq!(*stored_private, [&[0u8, 48][..], &[7; 48]].concat());
            let parsed = TpmBlob::parse_as(&blob, check).expect("parses");
            assert_eq!(parsed.public, template);
            assert_eq!(parsed.private, private);
            assert_eq!(parsed.with_private(&private).expect("rewrap"), blob);
        }
    }

    /// The primary is derived from this template: any change orphans every stored key.
    #[test]
    fn storage_primary_template_is_unchanged() {
        let bytes = storage_primary_template()
            .and_then(|t| t.marshall())
            .expect("primary template");
        assert_eq!(
            aloha::hex::encode(&bytes),
            "0023000b00030472000000060080004300100003001000000000"
        );
    }
}
