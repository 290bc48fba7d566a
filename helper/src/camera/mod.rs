//! The camera, as alohad opens it for one enrolment or one attempt: the infrared V4L2 node
//! `face.camera` names (or `auto` picks), or a `replay:` directory of recorded frames played
//! through the same [`FrameSource`] interface. A camera is open only while a [`Camera`] value
//! lives; dropping it closes the device on every path.

mod replay;

use std::path::{Path, PathBuf};
use std::time::Instant;

use aloha::config::{CameraChoice, FaceSettings};
use aloha::protocol::CameraReport;
use aloha_face::{Frame, FrameSource, SourceError};

pub use replay::Replay;

/// Why a camera cannot be used for face sign-in now. Every variant means "use the PIN".
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// No camera (or no infrared one), or the configured device or directory does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Only colour cameras, and `face.allow_visible_camera` is off.
    #[error("{0}")]
    VisibleOnly(String),
    /// Another program uses the camera.
    #[error("{0}")]
    Busy(String),
    /// The camera is there but cannot be used (permissions, an unsupported format, an ioctl
    /// failure).
    #[error("{0}")]
    Unavailable(String),
}

/// An open camera for one enrolment or attempt.
pub struct Camera {
    source: Box<dyn FrameSource + Send>,
    /// What was opened, for logs: "/dev/video2 (GREY 640x480)", "replay /srv/frames".
    pub description: String,
    /// A colour-only camera allowed by `face.allow_visible_camera`.
    pub visible_light: bool,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("description", &self.description)
            .field("visible_light", &self.visible_light)
            .finish_non_exhaustive()
    }
}

impl Camera {
    /// A camera over any frame source (the V4L2 and replay cameras; scripted ones in tests).
    pub fn new(
        source: Box<dyn FrameSource + Send>,
        description: String,
        visible_light: bool,
    ) -> Camera {
        Camera {
            source,
            description,
            visible_light,
        }
    }
}

/// The cameras alohad may open: the system's in production, scripted ones in tests.
pub trait Cameras: Send + Sync {
    /// Open the camera for one enrolment or attempt.
    fn open(&self) -> Result<Camera, CameraError>;
    /// Whether there is a camera to open, without opening it (cheap enough for every status
    /// request): what would be opened, or why nothing can be.
    fn present(&self) -> Result<String, String>;
    /// The survey `aloha camera` shows.
    fn survey(&self) -> CameraReport;
}

/// The system's cameras as `[face]` names them.
#[derive(Debug, Clone)]
pub struct SystemCameras {
    pub settings: FaceSettings,
    /// alohad's state directory (emitter controls recorded by a probe live there).
    pub state_dir: PathBuf,
}

impl Cameras for SystemCameras {
    fn open(&self) -> Result<Camera, CameraError> {
        open(&self.settings, &self.state_dir)
    }

    fn present(&self) -> Result<String, String> {
        let report = survey(&self.settings, &self.state_dir);
        match (report.usable, report.chosen) {
            (true, Some(chosen)) => Ok(chosen),
            _ => Err(report.why),
        }
    }

    fn survey(&self) -> CameraReport {
        survey(&self.settings, &self.state_dir)
    }
}

impl FrameSource for Camera {
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame<'static>, SourceError> {
        self.source.next_frame(deadline)
    }
}

/// Open the camera `settings` names. `state_dir` holds emitter controls recorded by a probe.
pub fn open(settings: &FaceSettings, state_dir: &Path) -> Result<Camera, CameraError> {
    let _ = state_dir;
    match settings.camera_choice() {
        CameraChoice::Replay(dir) => Ok(Camera {
            description: format!("replay {}", dir.display()),
            source: Box::new(Replay::open(&dir, settings.replay_fps)?),
            visible_light: false,
        }),
        CameraChoice::Auto | CameraChoice::Device(_) => Err(CameraError::NotFound(
            "this alohad has no V4L2 camera support".into(),
        )),
    }
}

/// The camera survey for `aloha camera` and `aloha status`: every capture node, the one
/// `face.camera` picks and why.
pub fn survey(settings: &FaceSettings, state_dir: &Path) -> CameraReport {
    let _ = state_dir;
    let (chosen, why, usable) = match settings.camera_choice() {
        CameraChoice::Replay(dir) => match Replay::open(&dir, settings.replay_fps) {
            Ok(_) => (
                Some(format!("replay:{}", dir.display())),
                "face.camera names recorded frames".to_string(),
                true,
            ),
            Err(e) => (None, e.to_string(), false),
        },
        CameraChoice::Auto | CameraChoice::Device(_) => (
            None,
            "this alohad has no V4L2 camera support".to_string(),
            false,
        ),
    };
    CameraReport {
        configured: settings.camera.clone(),
        nodes: Vec::new(),
        chosen,
        why,
        usable,
        visible_light: false,
        emitter: None,
    }
}
