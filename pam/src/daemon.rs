//! What the module asks of Aloha's side of a sign-in ([`Daemon`]): alohad, and what the module
//! reads beside it — the config, the key registry, the clock and randomness. [`crate::alohad`]
//! is the real one; the tests script it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aloha::Secret;
use aloha::challenge::{ChallengeError, Nonce};
use aloha::client::ClientError;
use aloha::protocol::Response;
use aloha::registry::{RegisteredKey, RegistryError};

/// How a request to alohad failed.
#[derive(Debug)]
pub enum CallError {
    /// Before the request left: no connection, no greeting, not root, out of time.
    NotSent(ClientError),
    /// After the request was sent: a refusal, or no well-formed reply.
    Sent(ClientError),
}

/// The Aloha side of a sign-in: where the registered key is, alohad, the clock, randomness.
pub trait Daemon {
    /// Config, socket and state dir in effect, for the debug log.
    fn describe(&self) -> String;
    fn socket(&self) -> &Path;
    /// Where `user`'s registered public key lives.
    fn key_path(&self, user: &str) -> PathBuf;
    /// The key the answer is checked against: from the registry, never from the socket.
    fn registered_key(&self, user: &str, uid: u32) -> Result<RegisteredKey, RegistryError>;
    fn status(&mut self, user: &str) -> Result<Response, CallError>;
    fn sign_in(
        &mut self,
        user: &str,
        service: &str,
        nonce: Nonce,
        pin: Secret,
        vault: bool,
    ) -> Result<Response, CallError>;
    /// Sign `nonce` with the user's key, released by a live face match within `timeout`.
    /// Waits at most `timeout` plus a margin for alohad's answer, outside `timeout=`'s budget
    /// (the time the camera looks is the user's, like the time at the PIN prompt).
    fn face_sign_in(
        &mut self,
        user: &str,
        service: &str,
        nonce: Nonce,
        timeout: Duration,
        vault: bool,
    ) -> Result<Response, CallError>;
    /// Another module (the password) signed `user` in: face sign-in may resume (root only).
    fn face_resume(&mut self, user: &str) -> Result<Response, CallError>;
    /// Another module signed `user` in with `password`: re-seal it in their vault (root only).
    fn vault_capture(&mut self, user: &str, password: Secret) -> Result<Response, CallError>;
    fn nonce(&mut self) -> Result<Nonce, ChallengeError>;
    /// Unix seconds (for "try again in …").
    fn now(&self) -> u64;
    /// What is left of `timeout=` for waiting on alohad.
    fn time_left(&self) -> Duration;
}
