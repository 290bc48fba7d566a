//! The TPM 2.0 backend (tss-esapi 7.7 on tpm2-tss 3.x).
//!
//! alohad keeps one ECC P-256 storage primary loaded under the owner hierarchy for the
//! backend's life. Its template is fixed (the TCG SRK template), so the TPM derives the same key
//! from the owner seed on every start and blobs made before a restart still load.
//!
//! Every user key is an unrestricted, DA-protected P-256 ECDSA-SHA256 signing key under that
//! primary, stored outside the TPM as its marshalled TPM2B_PUBLIC and TPM2B_PRIVATE. Every
//! command that authorizes with or carries a PIN-derived authValue runs in an HMAC session
//! salted to the primary (ECDH), with AES-128-CFB parameter encryption: the authValue never
//! crosses the bus in clear, and a bus sniffer cannot brute-force the PIN offline from the HMACs.
//!
//! swtpm (and a TPM without a resource manager) holds only 3 transient objects: this module
//! keeps at most the primary, one session and one key loaded; it flushes the key on every
//! path, and the session after any failure (a session that worked is kept for the next
//! operation: see `TpmBackend::in_session`). If the TPM connection breaks (swtpm restarted,
//! tabrmd restarted) the connection is dropped and re-opened on the next operation. Without a resource manager
//! (swtpm, /dev/tpm0), opening the backend also flushes what a killed alohad left loaded, so
//! only one `TpmBackend` may use such a TPM at a time.

use std::fmt;
use std::str::FromStr;

use aloha::protocol::BackendKind;
use tss_esapi::Error as TssError;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Auth, CreateKeyResult, Digest, HashScheme, HashcheckTicket, MaxBuffer, Public, SensitiveData,
    Signature, SignatureScheme,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use zeroize::Zeroizing;

use super::{
    AuthValue, BackendError, DaState, KeyBackend, KeyBlob, NewKey, OLD_KEY, pack_signature,
};

mod da;
mod errors;
mod objects;
mod primary_pin;
mod session;

pub use primary_pin::PrimaryPin;

use da::read_da_state;
use errors::{REACH_HINT, Step, internal};
use objects::{
    TpmBlob, can_exchange, check_history_public, check_sealed_public, history_key_template,
    key_blob, sealed_data_template, sec1_public_key, signing_key_template, tpm_point, tss_auth,
};
use session::Connection;

/// Whether a stored sign-in key can also perform the vault's key exchange (see
/// [`KeyBlob::can_exchange`]); a blob that does not parse cannot.
pub(crate) fn can_exchange_blob(blob: &KeyBlob) -> bool {
    TpmBlob::parse(blob).is_ok_and(|b| can_exchange(&b.public))
}

/// A TPM 2.0 key store reached through a tpm2-tss TCTI.
pub struct TpmBackend {
    tcti: TctiNameConf,
    /// The TCTI as configured, for messages.
    tcti_text: String,
    /// `None` after a broken connection: the next operation re-opens it.
    conn: Option<Connection>,
    /// The storage primary's recorded name, checked at every (re)connection.
    pin: Option<PrimaryPin>,
}

impl fmt::Debug for TpmBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmBackend")
            .field("tcti", &self.tcti_text)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl TpmBackend {
    /// Open the TPM at `tcti` (e.g. "device:/dev/tpmrm0") and prepare alohad's storage primary.
    pub fn open(tcti: &str) -> Result<TpmBackend, BackendError> {
        Self::open_with(tcti, None)
    }

    /// [`TpmBackend::open`], requiring the storage primary recorded at `pin` (recording it
    /// if none is): what alohad uses.
    pub fn open_pinned(tcti: &str, pin: PrimaryPin) -> Result<TpmBackend, BackendError> {
        Self::open_with(tcti, Some(pin))
    }

    fn open_with(tcti: &str, pin: Option<PrimaryPin>) -> Result<TpmBackend, BackendError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|e| {
            BackendError::Unavailable(format!(
                "the TPM address {tcti:?} is not a valid TCTI ({e}): {REACH_HINT}"
            ))
        })?;
        let mut conn = Connection::open(&conf, tcti, None)?;
        // A storage key other than the recorded one does not make the TPM absent: the backend
        // stays, without a connection, and every operation (each re-checking the key) refuses
        // with what happened and what to do, instead of TPM users being told there is no TPM.
        let trusted = match &pin {
            Some(pin) => match conn.check_pin(pin, tcti) {
                Ok(()) => Some(conn),
                Err(e) => {
                    tracing::error!(tcti, error = %e, "alohad does not use the TPM");
                    None
                }
            },
            None => Some(conn),
        };
        Ok(TpmBackend {
            tcti: conf,
            tcti_text: tcti.to_owned(),
            conn: trusted,
            pin,
        })
    }

    /// The TCTI this backend talks to, as configured.
    pub fn tcti(&self) -> &str {
        &self.tcti_text
    }

    /// Run `op` on a live connection, opening one if needed. A connection that failed in a way
    /// that may leave it unusable (or holding a handle) is dropped, so the next call re-opens it.
    fn with_connection<T>(
        &mut self,
        op: impl FnOnce(&TpmBackend, &mut Connection) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => Connection::open(&self.tcti, &self.tcti_text, self.pin.as_ref())?,
        };
        let result = op(self, &mut conn);
        if !conn.poisoned
            && !matches!(
                result,
                Err(BackendError::Unavailable(_) | BackendError::Indeterminate(_))
            )
        {
            self.conn = Some(conn);
        }
        result
    }

    /// Run `op` in the connection's HMAC session salted to the primary, starting one if there
    /// is none. The session is kept for the next operation while everything succeeds (starting
    /// one — an ECDH, a KDF and a TPM command — is a quarter of a sign-in's TPM time) and
    /// flushed after any failure, so a session whose nonces or state are in doubt is never
    /// used again.
    ///
    /// Every operation's first command is one that carries no secret the TPM judges (a load,
    /// or a create whose sensitive part goes in encrypted). A kept session the TPM lost (a
    /// resume from hibernation, a context gap under a resource manager) fails there, as
    /// `Unavailable` — nothing judged — and the operation runs once more from a fresh
    /// connection and session. The same holds for a session that cannot be started on a
    /// connection opened earlier (the TPM restarted and its transient primary is gone).
    fn in_session<T>(
        &mut self,
        op: impl Fn(&TpmBackend, &mut Connection, AuthSession) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let was_connected = self.conn.is_some();
        match self.in_session_once(&op) {
            Err(BackendError::Unavailable(_)) if was_connected => self.in_session_once(&op),
            other => other,
        }
    }

    fn in_session_once<T>(
        &mut self,
        op: &impl Fn(&TpmBackend, &mut Connection, AuthSession) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.with_connection(|me, conn| {
            let session = match conn.session {
                Some(session) => session,
                None => {
                    let session = conn
                        .start_session()
                        .map_err(|e| me.tpm_error(Step::Session, &e))?;
                    conn.session = Some(session);
                    session
                }
            };
            let result = op(me, conn, session);
            if result.is_err() {
                conn.session = None;
                // The operation's own error is the answer (a wrong PIN stays a wrong PIN); a
                // failed flush poisons the connection, which drops it.
                let _ = conn.flush(SessionHandle::from(session).into());
            }
            result
        })
    }

    /// Load `blob` under the primary, run `op` with the key's handle, flush the key on every path.
    fn with_loaded_key<T>(
        &self,
        conn: &mut Connection,
        session: AuthSession,
        blob: &TpmBlob,
        op: impl FnOnce(&mut Connection, KeyHandle) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        conn.set_encryption(session, false, false)
            .map_err(|e| self.tpm_error(Step::Session, &e))?;
        let primary = conn.primary;
        let (private, public) = (blob.private.clone(), blob.public.clone());
        let key = conn
            .ctx
            .execute_with_session(Some(session), |c| c.load(primary, private, public))
            .map_err(|e| self.tpm_error(Step::Load, &e))?;
        let result = op(conn, key);
        let flushed = conn
            .flush(key.into())
            .map_err(|e| self.tpm_error(Step::Flush, &e));
        let value = result?;
        flushed?;
        Ok(value)
    }

    /// Create an object from `template` under the primary, released by `auth` (`None`: no
    /// authValue), holding `data` if it is a sealed data object.
    fn create_key(
        &mut self,
        template: Public,
        auth: Option<Auth>,
        data: Option<SensitiveData>,
    ) -> Result<CreateKeyResult, BackendError> {
        self.in_session(|me, conn, session| {
            let primary = conn.primary;
            // Both directions encrypted: the sensitive area (with the authValue) goes in encrypted.
            conn.set_encryption(session, true, true)
                .map_err(|e| me.tpm_error(Step::Session, &e))?;
            conn.ctx
                .execute_with_session(Some(session), |c| {
                    c.create(
                        primary,
                        template.clone(),
                        auth.clone(),
                        data.clone(),
                        None,
                        None,
                    )
                })
                .map_err(|e| me.tpm_error(Step::Create, &e))
        })
    }

    fn tpm_error(&self, step: Step, e: &TssError) -> BackendError {
        errors::tpm_error(&self.tcti_text, step, e)
    }
}

impl KeyBackend for TpmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tpm
    }

    fn create(&mut self, auth: &AuthValue) -> Result<NewKey, BackendError> {
        let template = signing_key_template().map_err(|e| internal("the key template", &e))?;
        let key_auth = tss_auth(auth)?;
        let created = self.create_key(template, Some(key_auth), None)?;
        let public_key = sec1_public_key(&created.out_public)?;
        Ok(NewKey {
            public_key,
            blob: key_blob(
                "the new key's public part",
                created.out_public,
                &created.out_private,
            )?,
        })
    }

    fn sign(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        let blob = TpmBlob::parse(blob)?;
        let digest = Digest::try_from(&digest[..]).map_err(|e| internal("the digest", &e))?;
        let ticket = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(|e| internal("the null hashcheck ticket", &e))?;
        let scheme = SignatureScheme::EcDsa {
            hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
        };
        let key_auth = tss_auth(auth)?;
        let signature = self.in_session(|me, conn, session| {
            me.with_loaded_key(conn, session, &blob, |conn, key| {
                conn.ctx
                    .tr_set_auth(key.into(), key_auth.clone())
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                // The digest goes in encrypted; the response (a TPMT_SIGNATURE) cannot be.
                conn.set_encryption(session, true, false)
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                conn.ctx
                    .execute_with_session(Some(session), |c| {
                        c.sign(key, digest.clone(), scheme, ticket.clone())
                    })
                    .map_err(|e| me.tpm_error(Step::Authorize, &e))
            })
        })?;
        let Signature::EcDsa(sig) = signature else {
            return Err(BackendError::Unavailable(
                "the TPM returned a signature that is not ECDSA".into(),
            ));
        };
        pack_signature(sig.signature_r().value(), sig.signature_s().value())
    }

    fn change_auth(
        &mut self,
        blob: &KeyBlob,
        old: &AuthValue,
        new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        let blob = TpmBlob::parse(blob)?;
        let old_auth = tss_auth(old)?;
        let new_auth = tss_auth(new)?;
        let private = self.in_session(|me, conn, session| {
            me.with_loaded_key(conn, session, &blob, |conn, key| {
                let primary = conn.primary;
                conn.ctx
                    .tr_set_auth(key.into(), old_auth.clone())
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                // newAuth is the first parameter: it goes in encrypted.
                conn.set_encryption(session, true, true)
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                conn.ctx
                    .execute_with_session(Some(session), |c| {
                        c.object_change_auth(key.into(), primary.into(), new_auth.clone())
                    })
                    .map_err(|e| me.tpm_error(Step::Authorize, &e))
            })
        })?;
        blob.with_private(&private)
    }

    fn exchange(
        &mut self,
        blob: &KeyBlob,
        auth: &AuthValue,
        point: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, BackendError> {
        let blob = TpmBlob::parse(blob)?;
        if !can_exchange(&blob.public) {
            return Err(BackendError::BadBlob(OLD_KEY.into()));
        }
        let in_point = tpm_point(point)?;
        let key_auth = tss_auth(auth)?;
        let shared = self.in_session(|me, conn, session| {
            me.with_loaded_key(conn, session, &blob, |conn, key| {
                conn.ctx
                    .tr_set_auth(key.into(), key_auth.clone())
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                // The shared point is the secret: it comes back encrypted.
                conn.set_encryption(session, true, true)
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                conn.ctx
                    .execute_with_session(Some(session), |c| c.ecdh_z_gen(key, in_point.clone()))
                    .map_err(|e| me.tpm_error(Step::Authorize, &e))
            })
        })?;
        let x = aloha::challenge::pad32(shared.x().value()).ok_or_else(|| {
            BackendError::Unavailable("the TPM returned a shared point longer than 32 bytes".into())
        })?;
        Ok(Zeroizing::new(x))
    }

    fn create_history_key(&mut self) -> Result<Option<KeyBlob>, BackendError> {
        let template =
            history_key_template().map_err(|e| internal("the PIN-history key template", &e))?;
        let created = self.create_key(template, None, None)?;
        key_blob(
            "the PIN-history key's public part",
            created.out_public,
            &created.out_private,
        )
        .map(Some)
    }

    fn history_mac(&mut self, key: &KeyBlob, data: &[u8; 32]) -> Result<[u8; 32], BackendError> {
        let blob = TpmBlob::parse_as(key, check_history_public)?;
        // Copied straight into MaxBuffer's zeroizing storage, never into a plain Vec.
        let buffer =
            MaxBuffer::try_from(&data[..]).map_err(|e| internal("the PIN-history input", &e))?;
        let mac = self.in_session(|me, conn, session| {
            me.with_loaded_key(conn, session, &blob, |conn, key| {
                // The input (derived from the PIN) goes in encrypted, the HMAC comes back encrypted.
                conn.set_encryption(session, true, true)
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                conn.ctx
                    .execute_with_session(Some(session), |c| {
                        c.hmac(key.into(), buffer.clone(), HashingAlgorithm::Sha256)
                    })
                    .map_err(|e| me.tpm_error(Step::History, &e))
            })
        })?;
        let bytes: &[u8] = mac.value();
        <[u8; 32]>::try_from(bytes).map_err(|_| {
            BackendError::Unavailable("the TPM returned an HMAC that is not 32 bytes".into())
        })
    }

    fn seal(&mut self, data: &[u8]) -> Result<Option<KeyBlob>, BackendError> {
        let template =
            sealed_data_template().map_err(|e| internal("the sealed-secret template", &e))?;
        // Copied straight into SensitiveData's zeroizing storage; it goes in encrypted.
        let data = SensitiveData::try_from(data).map_err(|e| internal("the secret", &e))?;
        let created = self.create_key(template, None, Some(data))?;
        key_blob(
            "the sealed secret's public part",
            created.out_public,
            &created.out_private,
        )
        .map(Some)
    }

    fn unseal(&mut self, blob: &KeyBlob) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let blob = TpmBlob::parse_as(blob, check_sealed_public)?;
        let data = self.in_session(|me, conn, session| {
            me.with_loaded_key(conn, session, &blob, |conn, item| {
                // The secret comes back encrypted (TPM2_Unseal has no command parameter).
                conn.set_encryption(session, false, true)
                    .map_err(|e| me.tpm_error(Step::Session, &e))?;
                conn.ctx
                    .execute_with_session(Some(session), |c| c.unseal(item.into()))
                    .map_err(|e| me.tpm_error(Step::Unseal, &e))
            })
        })?;
        Ok(Zeroizing::new(data.value().to_vec()))
    }

    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        let was_connected = self.conn.is_some();
        // Reading capabilities sends nothing secret: after a stale connection, retry once.
        match self.with_connection(read_da_state) {
            Err(BackendError::Unavailable(_)) if was_connected => {
                self.with_connection(read_da_state).map(Some)
            }
            other => other.map(Some),
        }
    }
}
