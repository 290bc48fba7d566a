//! Aloha's face engine: a pure-Rust infrared face pipeline.
//!
//! The seed's four steps, one module each:
//! 1. find the face and its landmarks — [`detect`] (BlazeFace) and [`landmarks`] (dlib's
//!    5-point regression trees, ported);
//! 2. check the head orientation — [`pose`] (yaw, pitch, roll; ±15° gate);
//! 3. compute the representation from the aligned face — [`chip`] (dlib's 150×150 face chip)
//!    and [`resnet`] (dlib's ResNet, run by the own executor [`cnn`]);
//! 4. decide — [`profile`] (encrypted enrolment profiles) and [`decide`] (M-of-K decision with
//!    a threshold that tightens with the number of enrolled users).
//!
//! [`Engine`] ties steps 1–3 together; [`frame`] has the [`Frame`] type and the
//! [`FrameSource`] trait that alohad feeds it from. See `docs/face-engine.md`.

pub mod attempt;
pub mod chip;
pub mod cnn;
pub mod config;
pub mod convert;
pub mod decide;
pub mod detect;
pub mod dlib;
pub mod engine;
pub mod error;
pub mod eval;
pub mod frame;
pub mod gemm;
pub mod landmarks;
pub mod liveness;
pub mod models;
mod num;
pub mod pose;
pub mod profile;
pub mod quality;
pub mod resnet;

pub use attempt::{Attempt, Progress, Refusal};
pub use config::FaceConfig;
pub use decide::{Decider, Decision, RejectReason};
pub use engine::{Analysis, Engine, Reject, RejectKind};
pub use error::{FaceError, Result};
pub use frame::{Frame, FrameSource, RecordedFrames, SourceError};
pub use profile::{Descriptor, Profile, ProfileKey, ProfileSet};

/// Length of a face descriptor.
pub const DESCRIPTOR_LEN: usize = 128;
