//! The CLI's pieces that are not argument parsing.

pub mod camera;
pub mod prompt;
pub mod status;
