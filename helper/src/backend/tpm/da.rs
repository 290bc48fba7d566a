//! The TPM's dictionary-attack state, read fresh on every call.

use tss_esapi::constants::tss::TPMA_PERMANENT_INLOCKOUT;
use tss_esapi::constants::{CapabilityType, PropertyTag};
use tss_esapi::structures::CapabilityData;

use super::TpmBackend;
use super::errors::Step;
use super::session::Connection;
use crate::backend::{BackendError, DaState};

/// TPM2_PT_PERMANENT .. TPM2_PT_LOCKOUT_INTERVAL through TPM2_GetCapability (never the cached
/// `get_tpm_property`: the lockout counter changes with every failure).
pub(super) fn read_da_state(
    backend: &TpmBackend,
    conn: &mut Connection,
) -> Result<DaState, BackendError> {
    let first = u32::from(PropertyTag::Permanent);
    let last = u32::from(PropertyTag::LockoutInterval);
    let (mut permanent, mut counter, mut max_tries, mut interval) = (None, None, None, None);
    let mut next = first;
    // A TPM may return fewer properties than asked for; continue where it stopped.
    for _ in 0..4 {
        let (data, more) = conn
            .ctx
            .execute_without_session(|c| {
                c.get_capability(CapabilityType::TpmProperties, next, last - next + 1)
            })
            .map_err(|e| backend.tpm_error(Step::Capability, &e))?;
        let CapabilityData::TpmProperties(list) = data else {
            return Err(BackendError::Unavailable(
                "the TPM answered a property query with other data".into(),
            ));
        };
        for p in list.iter() {
            next = next.max(u32::from(p.property()).saturating_add(1));
            match p.property() {
                PropertyTag::Permanent => permanent = Some(p.value()),
                PropertyTag::LockoutCounter => counter = Some(p.value()),
                PropertyTag::MaxAuthFail => max_tries = Some(p.value()),
                PropertyTag::LockoutInterval => interval = Some(p.value()),
                _ => {}
            }
        }
        if !more || next > last {
            break;
        }
    }
    match (permanent, counter, max_tries, interval) {
        (Some(permanent), Some(counter), Some(max_tries), Some(recovery_seconds)) => Ok(DaState {
            counter,
            max_tries,
            recovery_seconds,
            in_lockout: permanent & TPMA_PERMANENT_INLOCKOUT != 0,
        }),
        _ => Err(BackendError::Unavailable(format!(
            "the TPM at {} did not report its dictionary-attack properties",
            backend.tcti_text
        ))),
    }
}
