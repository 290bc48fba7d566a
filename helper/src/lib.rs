//! alohad: the only process that touches the TPM, key containers and lockout state.
//!
//! - [`backend`]: the key stores (TPM, software vault) behind [`backend::KeyBackend`].
//! - [`camera`]: the infrared camera (V4L2) or recorded frames, open only during face work.
//! - [`store`]: root-only state files, written atomically.
//! - [`service`]: who may ask what, PIN policy, lockout — the daemon's whole policy.
//! - [`server`]: the Unix socket, one thread per client, deadlines on every frame.

pub mod backend;
pub mod camera;
pub mod history;
pub mod pam_app;
pub mod password;
pub mod recognition;
pub mod semaphore;
pub mod server;
pub mod service;
pub mod store;
pub mod users;
pub mod vault;
