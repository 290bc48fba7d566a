//! The end-to-end harness: real binaries, real sockets, real files, a private swtpm, real libpam.
//!
//! Everything lives in temp dirs and is stopped by pid when a test ends (also on panic, via
//! `Drop`), so the machine is left as it was found.

pub mod bench;
pub mod build;
pub mod daemon;
pub mod face;
pub mod fixture;
pub mod fuzz;
pub mod guest;
pub mod namespace;
pub mod packages;
pub mod pam;
pub mod pty;
pub mod swtpm;
pub mod syslog;
