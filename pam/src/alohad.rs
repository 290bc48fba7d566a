//! The real daemon side of a sign-in ([`Daemon`]): aloha.toml, the key registry, alohad's
//! socket, the clock and the system's randomness.
//!
//! `timeout=` is one [`Budget`] for all waiting on alohad in one pam_authenticate (the status
//! check and the sign-in each use a connection of their own, so that no connection idles while
//! the user types), not a deadline per step: a daemon that stalls every step costs `timeout`
//! once. Time at the PIN prompt is the user's and is not counted. If the status check leaves
//! less than the PIN step's minimum for a sign-in (`min_sign_in_time` in flow/ask.rs), no
//! PIN is asked for.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aloha::Secret;
use aloha::challenge::{ChallengeError, Nonce};
use aloha::client::Client;
use aloha::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use aloha::protocol::{Request, Response};
use aloha::registry::{self, RegisteredKey, RegistryError};

use crate::args::Args;
use crate::daemon::{CallError, Daemon};

#[cfg(test)]
mod tests;

/// What is left of `timeout=` for waiting on alohad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    left: Duration,
}

impl Budget {
    pub fn new(total: Duration) -> Budget {
        Budget { left: total }
    }

    /// When a wait that starts at `now` must end.
    pub fn deadline(&self, now: Instant) -> Instant {
        now + self.left
    }

    /// Charge the wait from `start` to `end`.
    pub fn spend(&mut self, start: Instant, end: Instant) {
        self.left = self
            .left
            .saturating_sub(end.saturating_duration_since(start));
    }

    pub fn left(&self) -> Duration {
        self.left
    }
}

/// How long alohad may take beyond `face_timeout=` to answer a face sign-in: the camera is
/// closed and the key store signs after the last frame (a software vault's Argon2id, a first
/// use's model loading).
const FACE_ANSWER_MARGIN: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Alohad {
    config_path: PathBuf,
    socket: PathBuf,
    state_dir: PathBuf,
    budget: Budget,
}

impl Alohad {
    /// Read aloha.toml (`config=`, or the default) and pick the socket (`socket=` wins).
    pub fn open(args: &Args) -> Result<Alohad, ConfigError> {
        let config = Config::load(args.config.as_deref())?;
        Ok(Alohad {
            config_path: args
                .config
                .clone()
                .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into()),
            socket: args
                .socket
                .clone()
                .unwrap_or_else(|| config.daemon.socket.clone()),
            state_dir: config.daemon.state_dir,
            budget: Budget::new(args.timeout),
        })
    }

    /// One connection, one request, all within what is left of the budget.
    fn exchange(&mut self, request: &Request) -> Result<Response, CallError> {
        let start = Instant::now();
        let deadline = self.budget.deadline(start);
        let result = match Client::connect_until(&self.socket, deadline, "pam_aloha") {
            Ok(mut client) => client.call(request).map_err(CallError::Sent),
            Err(e) => Err(CallError::NotSent(e)),
        };
        self.budget.spend(start, Instant::now());
        result
    }
}

impl Daemon for Alohad {
    fn describe(&self) -> String {
        format!(
            "config {}, socket {}, state dir {}, {:.1}s for alohad",
            self.config_path.display(),
            self.socket.display(),
            self.state_dir.display(),
            self.budget.left().as_secs_f64()
        )
    }

    fn socket(&self) -> &Path {
        &self.socket
    }

    fn key_path(&self, user: &str) -> PathBuf {
        registry::key_path(&self.state_dir, user)
    }

    fn registered_key(&self, user: &str, uid: u32) -> Result<RegisteredKey, RegistryError> {
        registry::load(&self.state_dir, user, Some(uid))
    }

    fn status(&mut self, user: &str) -> Result<Response, CallError> {
        self.exchange(&Request::Status { user: user.into() })
    }

    fn sign_in(
        &mut self,
        user: &str,
        service: &str,
        nonce: Nonce,
        pin: Secret,
        vault: bool,
    ) -> Result<Response, CallError> {
        self.exchange(&Request::SignIn {
            user: user.into(),
            service: service.into(),
            nonce,
            pin,
            vault,
        })
    }

    fn face_sign_in(
        &mut self,
        user: &str,
        service: &str,
        nonce: Nonce,
        timeout: Duration,
        vault: bool,
    ) -> Result<Response, CallError> {
        let deadline = Instant::now() + timeout + FACE_ANSWER_MARGIN;
        let request = Request::FaceSignIn {
            user: user.into(),
            service: service.into(),
            nonce,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            vault,
        };
        match Client::connect_until(&self.socket, deadline, "pam_aloha") {
            Ok(mut client) => client.call(&request).map_err(CallError::Sent),
            Err(e) => Err(CallError::NotSent(e)),
        }
    }

    fn face_resume(&mut self, user: &str) -> Result<Response, CallError> {
        self.exchange(&Request::FaceResume { user: user.into() })
    }

    fn vault_capture(&mut self, user: &str, password: Secret) -> Result<Response, CallError> {
        self.exchange(&Request::VaultCapture {
            user: user.into(),
            password,
        })
    }

    fn nonce(&mut self) -> Result<Nonce, ChallengeError> {
        Nonce::random()
    }

    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn time_left(&self) -> Duration {
        self.budget.left()
    }
}
