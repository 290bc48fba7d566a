//! Aloha's shared library: what the CLI, the PAM module and the daemon must agree on.
//!
//! - [`config`]: `/etc/aloha/aloha.toml`, versioned, every key optional and documented.
//! - [`protocol`] and [`frame`]: the versioned, length-prefixed, bounded socket protocol.
//! - [`client`]: a synchronous client with a deadline on every step (CLI and PAM module).
//! - [`challenge`] and [`registry`]: the sign-in proof — a fresh nonce signed by the user's key
//!   and verified against the public key alohad registered at enrolment.
//! - [`presence`]: an application's "is the user here?" question and how it checks the answer.
//! - [`policy`] and [`lockout`]: PIN policy and lockout arithmetic (enforced by alohad).
//! - [`secret`]: PINs and passwords, zeroized and never printed.
//! - [`pam_stack`]: what a PAM service's auth stack runs (alohad's password service check,
//!   `aloha doctor`).
//! - [`untrusted`]: outside strings made safe for a log line.
//! - `bus_calls` (feature `bus`): the inbox and error replies the presence service and agent share.

#[cfg(feature = "bus")]
pub mod bus_calls;
pub mod challenge;
pub mod client;
pub mod config;
pub mod frame;
pub mod hex;
pub mod lockout;
pub mod pam_stack;
pub mod policy;
pub mod presence;
pub mod protocol;
pub mod registry;
pub mod secret;
pub mod timefmt;
pub mod untrusted;

pub use secret::Secret;
