//! Typed errors of the face engine. Every message says what happened and what to do.

use std::path::PathBuf;

/// Errors of the face engine (loading models, reading frames, profiles).
///
/// A frame that is readable but unusable for recognition is not an error: it is a
/// [`crate::Reject`] with a reason.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// A model file is missing from the model directory.
    #[error(
        "model file {path} is missing: face sign-in needs the face models — install the \
         aloha-face-models package, or from a source checkout run `packaging/models/fetch.sh \
         {dir}`; the PIN works without them",
        dir = .dir.display(), path = .path.display()
    )]
    ModelMissing {
        /// The missing file.
        path: PathBuf,
        /// The model directory that was searched.
        dir: PathBuf,
    },
    /// A model file exists but cannot be parsed or does not have the expected layout.
    #[error(
        "model file {path} is corrupt or of the wrong kind ({why}): delete it and run `packaging/models/fetch.sh` again",
        path = .path.display()
    )]
    ModelCorrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// The inference runtime refused a model or an input.
    #[error("inference failed in {stage}: {why}")]
    Inference {
        /// Which network.
        stage: &'static str,
        /// The runtime's message.
        why: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}", path = .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An image file cannot be decoded.
    #[error("cannot decode image {path}: {why} (expected an 8- or 16-bit PNG, JPEG, PGM/PPM or BMP)", path = .path.display())]
    Image {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        why: String,
    },
    /// A frame's buffer does not match its declared size, or the size is zero.
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
    /// A frame source cannot be set up (no files, an unreadable directory).
    #[error("frame source: {0}")]
    Source(String),
    /// A serialized profile cannot be opened.
    #[error("face profile cannot be opened: {0}")]
    Profile(String),
    /// A configuration value is out of range.
    #[error("invalid face configuration: {0}")]
    Config(String),
}

/// Result alias of the face engine.
pub type Result<T, E = FaceError> = std::result::Result<T, E>;
