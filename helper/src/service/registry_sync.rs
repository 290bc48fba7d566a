//! Keeping the public key registry in step with the containers. A crash between writing a
//! container and publishing its key leaves them out of step; the container is authoritative.

use aloha::registry;
use tracing::{error, warn};

use super::Service;

impl Service {
    /// A crash between writing a container and publishing its key leaves them out of step;
    /// the container is authoritative, so republish at start.
    pub(super) fn republish_drifted_keys(&self) {
        let Ok(entries) = std::fs::read_dir(self.store.root().join("private/users")) else {
            return;
        };
        for entry in entries.flatten() {
            let user = entry.file_name().to_string_lossy().into_owned();
            match self.store.load_container(&user) {
                Ok(Some(c)) => {
                    let path = registry::key_path(self.store.root(), &user);
                    let why = match registry::load(self.store.root(), &user, Some(c.uid)) {
                        Ok(k) if k == c.registered_key() => continue,
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
                Ok(None) => {}
                Err(e) => error!(user, error = %e, "container unreadable"),
            }
        }
    }
}
