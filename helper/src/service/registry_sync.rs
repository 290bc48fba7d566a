//! Keeping the public key registry in step with the containers. A crash, a full disk or a
//! read-only file system between writing a container and publishing its key leaves them out of
//! step; the container is authoritative. alohad republishes at start, and whenever an
//! operation loads a user's container (pam_aloha reads the registry again when a signature
//! does not verify against what it read first, so the first sign-in after the repair works).

use aloha::registry;
use tracing::{error, warn};

use super::Service;
use crate::store::Container;

impl Service {
    /// At start: every user's registry entry made to match their container, and entries
    /// without a container (a removal cut short) removed.
    pub(super) fn republish_drifted_keys(&self) {
        let Ok(entries) = std::fs::read_dir(self.store.root().join("private/users")) else {
            return;
        };
        for entry in entries.flatten() {
            let user = entry.file_name().to_string_lossy().into_owned();
            match self.store.load_container(&user) {
                Ok(Some(c)) => self.republish_if_drifted(&c),
                Ok(None) => {}
                Err(e) => error!(user, error = %e, "container unreadable"),
            }
        }
        let Ok(keys) = std::fs::read_dir(registry::public_dir(self.store.root())) else {
            return;
        };
        for entry in keys.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(user) = name.strip_suffix(".pub") else {
                continue;
            };
            if registry::valid_user_name(user)
                && matches!(self.store.load_container(user), Ok(None))
            {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => warn!(user, "removed a public key left without a key container"),
                    Err(e) => {
                        error!(user, error = %e, "cannot remove a public key left without a key container")
                    }
                }
            }
        }
    }

    /// Republish `container`'s public key if the registry says something else (or nothing).
    pub(super) fn republish_if_drifted(&self, c: &Container) {
        let user = c.user.as_str();
        let path = registry::key_path(self.store.root(), user);
        let why = match registry::load(self.store.root(), user, Some(c.uid)) {
            Ok(k) if k == c.registered_key() => return,
            Ok(_) => "it did not match the user's key container".to_string(),
            Err(_) if !path.exists() => "it was missing".to_string(),
            Err(e) => format!("it was corrupt or unusable ({e})"),
        };
        let shown = path.display().to_string();
        match self.store.publish_key(&c.registered_key()) {
            Ok(()) => warn!(
                user,
                path = shown,
                why,
                "replaced the public key file with the one in the user's container"
            ),
            Err(e) => {
                error!(user, path = shown, why, error = %e, "cannot republish the public key")
            }
        }
    }
}
