//! Both sides of a sign-in, scripted, for every unit test of the flow: a [`ScriptedHost`] that
//! records what the module did, and a [`ScriptedDaemon`] that answers as alohad would.

mod daemon;
mod host;

pub use daemon::{Face, FaceReply, Reply, ScriptedDaemon, Status, VAULT_PASSWORD};
pub use host::{Answer, ScriptedHost};

/// The PIN the scripted user types.
pub const PIN: &str = "482915";
