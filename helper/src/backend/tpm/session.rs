//! The connection to the TPM: an ESYS context with alohad's storage primary loaded, the salted
//! HMAC sessions every secret-carrying command runs in, and releasing what was loaded.

use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::tss::{TPM2_LOADED_SESSION_FIRST, TPM2_TRANSIENT_FIRST};
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{CapabilityData, SymmetricDefinition};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::{Context, Error as TssError, WrapperErrorKind};

use super::errors::{self, REACH_HINT, Step, describe, internal, is_auth_failure};
use super::objects::storage_primary_template;
use super::primary_pin::PrimaryPin;
use crate::backend::BackendError;

/// An open ESYS context with alohad's storage primary loaded.
pub(super) struct Connection {
    pub(super) ctx: Context,
    pub(super) primary: KeyHandle,
    /// The salted session kept between operations (see `TpmBackend::in_session`); the
    /// context flushes it when the connection is dropped.
    pub(super) session: Option<AuthSession>,
    /// A flush failed: the TPM may still hold one of our handles. Drop the connection (its
    /// `Drop` retries the flushes) instead of reusing it.
    pub(super) poisoned: bool,
}

impl Connection {
    /// Open the TPM at `tcti` (`tcti_text` as configured, for messages) and create alohad's
    /// storage primary in it.
    /// With `pin`, the primary's name must be the recorded one (see [`super::primary_pin`]).
    pub(super) fn open(
        tcti: &TctiNameConf,
        tcti_text: &str,
        pin: Option<&PrimaryPin>,
    ) -> Result<Connection, BackendError> {
        let mut ctx = Context::new(tcti.clone()).map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot open the TPM at {tcti_text}: {}; {REACH_HINT}",
                describe(&e)
            ))
        })?;
        if !has_resource_manager(tcti_text) {
            let flushed = flush_leftovers(&mut ctx);
            if flushed > 0 {
                tracing::info!(
                    flushed,
                    tcti = %tcti_text,
                    "flushed TPM handles left loaded by an earlier alohad"
                );
            }
        }
        let template =
            storage_primary_template().map_err(|e| internal("the storage primary template", &e))?;
        let created = ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        });
        match created {
            Ok(primary) => {
                let mut conn = Connection {
                    ctx,
                    primary: primary.key_handle,
                    session: None,
                    poisoned: false,
                };
                if let Some(pin) = pin {
                    conn.check_pin(pin, tcti_text)?;
                }
                Ok(conn)
            }
            Err(e) if is_auth_failure(&e) => Err(BackendError::Unavailable(format!(
                "the TPM at {tcti_text} refused to create alohad's storage key: the owner \
                 hierarchy has an authorization value ({}). Aloha needs the owner hierarchy \
                 without a password; clear it with tpm2_changeauth -c owner, or use the software \
                 vault",
                describe(&e)
            ))),
            Err(e) => Err(errors::tpm_error(tcti_text, Step::Primary, &e)),
        }
    }

    /// The primary must be the one recorded at first use (see [`super::primary_pin`]).
    pub(super) fn check_pin(
        &mut self,
        pin: &PrimaryPin,
        tcti_text: &str,
    ) -> Result<(), BackendError> {
        // The name ESYS computed from the public area the TPM returned.
        let name = self
            .ctx
            .tr_get_name(self.primary.into())
            .map_err(|e| errors::tpm_error(tcti_text, Step::Primary, &e))?;
        pin.check(name.value(), tcti_text)
    }

    /// A new HMAC session salted to the primary (ECDH), encrypting both directions.
    pub(super) fn start_session(&mut self) -> Result<AuthSession, TssError> {
        let primary = self.primary;
        let session = self
            .ctx
            .execute_without_session(|c| {
                c.start_auth_session(
                    Some(primary),
                    None,
                    None,
                    SessionType::Hmac,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
            })?
            .ok_or(TssError::WrapperError(WrapperErrorKind::WrongValueFromTpm))?;
        if let Err(e) = self.set_encryption(session, true, true) {
            if self
                .ctx
                .flush_context(SessionHandle::from(session).into())
                .is_err()
            {
                self.poisoned = true;
            }
            return Err(e);
        }
        Ok(session)
    }

    /// Turn parameter encryption on or off for the next command. `decrypt` encrypts the
    /// command's first parameter, `encrypt` the response's; a command may refuse either
    /// (TPM2_Sign's response is not a sized buffer, so it must not ask for `encrypt`).
    pub(super) fn set_encryption(
        &mut self,
        session: AuthSession,
        decrypt: bool,
        encrypt: bool,
    ) -> Result<(), TssError> {
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_continue_session(true)
            .with_decrypt(decrypt)
            .with_encrypt(encrypt)
            .build();
        self.ctx.tr_sess_set_attributes(session, attributes, mask)
    }

    /// Release a loaded key or session; if that fails, the connection is poisoned.
    pub(super) fn flush(&mut self, handle: ObjectHandle) -> Result<(), TssError> {
        self.ctx.flush_context(handle).inspect_err(|_| {
            self.poisoned = true;
        })
    }
}

/// Whether the TCTI goes through a resource manager (the kernel's /dev/tpmrm*, tpm2-abrmd),
/// which flushes a client's handles when it disconnects and hides other clients' handles.
fn has_resource_manager(tcti: &str) -> bool {
    let (name, conf) = tcti.split_once(':').unwrap_or((tcti, ""));
    match name {
        "tabrmd" => true,
        "device" => conf.contains("tpmrm"),
        _ => false,
    }
}

/// Without a resource manager (swtpm, mssim, /dev/tpm0) nothing flushes what an alohad that was
/// killed left loaded: its primary, a key or a session would hold one of the TPM's few slots
/// until the TPM restarts (0x902 for everyone after a few crashes). There, alohad is the TPM's
/// only user (/dev/tpm0 opens exclusively; a simulator is private), so flush every transient
/// object and loaded session before creating the primary. Best effort: returns how many went.
/// Consequence: two `TpmBackend`s must not share a TPM that has no resource manager.
fn flush_leftovers(ctx: &mut Context) -> usize {
    let mut flushed = 0;
    for first in [TPM2_TRANSIENT_FIRST, TPM2_LOADED_SESSION_FIRST] {
        let Ok((CapabilityData::Handles(handles), _)) = ctx.execute_without_session(|c| {
            c.get_capability(CapabilityType::Handles, first, LEFTOVERS_MAX)
        }) else {
            continue;
        };
        for handle in handles.into_inner() {
            let Ok(object) = ctx.execute_without_session(|c| c.tr_from_tpm_public(handle)) else {
                continue;
            };
            if ctx.flush_context(object).is_ok() {
                flushed += 1;
            }
        }
    }
    flushed
}

/// More than any TPM has slots for.
const LEFTOVERS_MAX: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_manager_is_recognised_from_the_tcti() {
        assert!(has_resource_manager("device:/dev/tpmrm0"));
        assert!(has_resource_manager("tabrmd"));
        assert!(has_resource_manager("tabrmd:bus_type=system"));
        assert!(!has_resource_manager("device:/dev/tpm0"));
        assert!(!has_resource_manager("device"));
        assert!(!has_resource_manager("swtpm:host=127.0.0.1,port=2321"));
        assert!(!has_resource_manager("mssim"));
    }
}
