//! The CLI's pieces that are not argument parsing: talking to alohad ([`Ctx`]), the exit
//! statuses ([`Failure`]), and one module per group of commands.

pub mod camera;
pub mod doctor;
pub mod face;
pub mod presence;
pub mod prompt;
pub mod status;

use std::path::PathBuf;
use std::time::Duration;

use aloha::client::{Client, ClientError};
use aloha::config::Config;
use aloha::protocol::{Request, Response};
use anyhow::anyhow;

/// Replies can wait on other users' attempts and on Argon2id or a slow TPM.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Failures and their exit statuses: 1 refused, 3 alohad unreachable or misbehaving.
pub enum Failure {
    Refused(anyhow::Error),
    Unreachable(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Refused(e)
    }
}

pub struct Ctx {
    pub config: Config,
    pub socket: PathBuf,
    pub is_root: bool,
}

impl Ctx {
    pub fn connect(&self) -> Result<Client, Failure> {
        Client::connect(&self.socket, REPLY_TIMEOUT, "aloha-cli").map_err(client_failure)
    }

    pub fn call(&self, request: Request) -> Result<Response, Failure> {
        self.connect()?.call(&request).map_err(client_failure)
    }

    /// `--user NAME`, or the caller's own name.
    pub fn user(&self, named: Option<&str>) -> Result<String, Failure> {
        if let Some(u) = named {
            return Ok(u.to_string());
        }
        let uid = nix::unistd::getuid();
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .ok_or_else(|| {
                Failure::Refused(anyhow!("cannot find the name of uid {uid}; pass --user"))
            })
    }
}

pub fn client_failure(e: ClientError) -> Failure {
    match e {
        ClientError::Refused(f) => Failure::Refused(anyhow!(f.message)),
        other => Failure::Unreachable(anyhow!(other)),
    }
}

/// Print to stdout; a closed pipe (`aloha status | head`) is not an error worth a panic.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

pub fn done(response: Response) -> Result<(), Failure> {
    match response {
        Response::Done { message } => {
            say(&format!("{message}\n"));
            Ok(())
        }
        other => Err(Failure::Unreachable(anyhow!(
            "alohad sent an unexpected reply: {other:?}"
        ))),
    }
}

/// A reply that is not the one asked for.
pub fn unexpected(what: &str) -> Failure {
    Failure::Unreachable(anyhow!("alohad sent an unexpected reply to {what}"))
}

/// A reply as pretty JSON for scripts (`--json`).
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value).map_err(|e| Failure::Refused(e.into()))
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A user without a PIN on a machine whose TPM has failed 30 of its 32 tries: the status the
/// renderers' tests start from.
#[cfg(test)]
pub fn sample_status() -> aloha::protocol::UserStatus {
    use aloha::lockout::{DaState, Gate};
    use aloha::protocol::{BackendKind, UserStatus};
    UserStatus {
        user: "alice".into(),
        uid: 1000,
        enrolled: false,
        backend: None,
        protectors: vec![],
        pin_set_at: None,
        pin_expires_at: None,
        failed_attempts: 0,
        max_attempts: 10,
        gate: Gate::Open {
            left_before_delay: 3,
            left_before_lock: 10,
        },
        tpm: Some(DaState {
            counter: 30,
            max_tries: 32,
            recovery_seconds: 7200,
            in_lockout: false,
        }),
        tpm_pause: None,
        tpm_share: None,
        default_backend: Some(BackendKind::Tpm),
        protection: Some(BackendKind::Tpm.protection().into()),
        problem: None,
        face: None,
        vault: Default::default(),
    }
}
