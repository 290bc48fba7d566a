//! The TPM 2.0 backend (tss-esapi). Work in progress: see the module's owner.

use aloha::protocol::BackendKind;

use super::{AuthValue, BackendError, DaState, KeyBackend, KeyBlob, NewKey};

/// A TPM 2.0 key store reached through a tpm2-tss TCTI.
#[derive(Debug)]
pub struct TpmBackend {
    _private: (),
}

impl TpmBackend {
    /// Open the TPM at `tcti` (e.g. "device:/dev/tpmrm0") and prepare alohad's storage primary.
    pub fn open(tcti: &str) -> Result<TpmBackend, BackendError> {
        Err(BackendError::Unavailable(format!(
            "TPM backend not built yet ({tcti})"
        )))
    }
}

impl KeyBackend for TpmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tpm
    }
    fn create(&mut self, _auth: &AuthValue) -> Result<NewKey, BackendError> {
        Err(BackendError::Unavailable("not built yet".into()))
    }
    fn sign(
        &mut self,
        _blob: &KeyBlob,
        _auth: &AuthValue,
        _digest: &[u8; 32],
    ) -> Result<[u8; 64], BackendError> {
        Err(BackendError::Unavailable("not built yet".into()))
    }
    fn change_auth(
        &mut self,
        _blob: &KeyBlob,
        _old: &AuthValue,
        _new: &AuthValue,
    ) -> Result<KeyBlob, BackendError> {
        Err(BackendError::Unavailable("not built yet".into()))
    }
    fn dictionary_attack_state(&mut self) -> Result<Option<DaState>, BackendError> {
        Err(BackendError::Unavailable("not built yet".into()))
    }
}
