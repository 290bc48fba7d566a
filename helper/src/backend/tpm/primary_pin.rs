//! The storage primary's name, recorded at first use and required ever after.
//!
//! alohad salts every secret-carrying session to the storage primary's public key, which the
//! TPM returns at each start. Something between alohad and the TPM (an interposer on the bus,
//! a TCTI pointed elsewhere) could return a key of its own and then read the salt, and with it
//! the PIN-derived authValues. The primary's template is fixed, so a TPM derives the same key
//! — the same name — every time, until its owner seed is cleared. alohad records that name
//! (`private/tpm-primary.json`) the first time and refuses a different one, before any secret
//! is sent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendError;

const PIN_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinFile {
    version: u32,
    /// The primary's TPM name (nameAlg ‖ digest of its public area), hex.
    name: String,
}

/// Where the recorded name lives.
#[derive(Debug, Clone)]
pub struct PrimaryPin {
    path: PathBuf,
}

impl PrimaryPin {
    pub fn new(path: &Path) -> PrimaryPin {
        PrimaryPin {
            path: path.to_path_buf(),
        }
    }

    /// Accept `name` if it is the recorded one, or record it if none is; refuse any other.
    pub fn check(&self, name: &[u8], tcti_text: &str) -> Result<(), BackendError> {
        let seen = aloha::hex::encode(name);
        let shown = self.path.display();
        let recorded = match std::fs::read(&self.path) {
            Ok(bytes) => {
                let file: PinFile = serde_json::from_slice(&bytes).map_err(|e| {
                    BackendError::Unavailable(format!(
                        "{shown} is corrupt ({e}); it records the TPM's storage key that alohad \
                         trusts. An administrator should look at it; removing it makes alohad \
                         trust whatever storage key the TPM shows next"
                    ))
                })?;
                if file.version != PIN_VERSION {
                    return Err(BackendError::Unavailable(format!(
                        "{shown} has version {}, which this alohad does not know (it knows \
                         {PIN_VERSION}); it was written by a newer Aloha — upgrade alohad",
                        file.version
                    )));
                }
                file.name
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let file = PinFile {
                    version: PIN_VERSION,
                    name: seen.clone(),
                };
                let bytes = serde_json::to_vec_pretty(&file).map_err(|e| {
                    BackendError::Unavailable(format!("cannot encode {shown}: {e}"))
                })?;
                crate::store::write_atomic(&self.path, &bytes, 0o600).map_err(|e| {
                    BackendError::Unavailable(format!(
                        "cannot record the TPM's storage key, so alohad does not use the TPM: {e}"
                    ))
                })?;
                tracing::info!(tcti = tcti_text, name = seen, path = %shown, "recorded the TPM's storage key");
                return Ok(());
            }
            Err(e) => {
                return Err(BackendError::Unavailable(format!(
                    "cannot read {shown}: {e}"
                )));
            }
        };
        if recorded == seen {
            return Ok(());
        }
        tracing::error!(
            tcti = tcti_text,
            recorded,
            seen,
            "the TPM's storage key changed"
        );
        Err(BackendError::Unavailable(format!(
            "the TPM at {tcti_text} shows a storage key ({seen}) other than the one alohad \
             recorded at first use ({recorded}, in {shown}), so alohad sends it no PIN. Either \
             something sits between alohad and the TPM — have the machine inspected — or the \
             TPM was cleared or replaced, which also destroyed every key made in it: then remove \
             {shown} and have every user set a new PIN with `aloha pin reset`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_at_first_use_then_requires_the_same_name() {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!("aloha-pin-{}", aloha::hex::encode(&b)));
        std::fs::create_dir_all(&dir).unwrap();
        let pin = PrimaryPin::new(&dir.join("tpm-primary.json"));
        pin.check(&[0, 11, 1, 2, 3], "swtpm:x").unwrap();
        pin.check(&[0, 11, 1, 2, 3], "swtpm:x").unwrap();
        let Err(BackendError::Unavailable(m)) = pin.check(&[0, 11, 9, 9, 9], "swtpm:x") else {
            panic!("another name was accepted")
        };
        assert!(m.contains("000b090909") && m.contains("000b010203"), "{m}");
        assert!(m.contains("aloha pin reset"), "{m}");
        std::fs::write(dir.join("tpm-primary.json"), "{").unwrap();
        assert!(
            matches!(pin.check(&[0, 11, 1, 2, 3], "swtpm:x"), Err(BackendError::Unavailable(m)) if m.contains("corrupt"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
