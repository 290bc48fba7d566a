//! The camera, as alohad opens it for one enrolment or one attempt: the infrared V4L2 node
//! `face.camera` names (or `auto` picks), or a `replay:` directory of recorded frames played
//! through the same [`FrameSource`] interface. A camera is open only while a [`Camera`] value
//! lives; dropping it closes the device on every path.
//!
//! - [`select`]: the capture nodes and the rules that pick one;
//! - [`v4l2`]: opening and the capture thread; [`negotiate`] the format and size;
//!   [`stream`] the capture buffers; [`pixels`] the formats and their conversion to frames;
//! - [`emitter`]: the IR emitter's controls (quirks, the recorded one) and whether it fires;
//!   [`uvc`] the extension-unit queries; [`probe`] the search for an unknown camera's control;
//! - [`survey`]: what `aloha camera` and `aloha status` are told, without or with a look at
//!   the emitter;
//! - [`replay`]: recorded frames.
//!
//! alohad reaches all of it through [`Cameras`]: [`SystemCameras`] in production (the V4L2
//! camera or a replay, with the emitter control recorded under the state directory applied
//! at every open), scripted cameras in the service tests.

mod emitter;
mod negotiate;
pub mod pixels;
mod probe;
mod replay;
mod select;
mod stream;
mod survey;
mod uvc;
mod v4l2;

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aloha::config::{CameraChoice, EmitterChoice, FaceSettings};
use aloha::protocol::{CameraReport, FaceProgress};
use aloha_face::{Frame, FrameSource, SourceError};
use tracing::{info, warn};

pub use replay::Replay;
pub use survey::{EmitterLook, present, survey};
use v4l2::V4l2;

/// Why a camera cannot be used for face sign-in now. Every variant means "use the PIN".
#[derive(Debug, Clone, thiserror::Error)]
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
    /// failure, unplugged).
    #[error("{0}")]
    Unavailable(String),
}

impl From<CameraError> for SourceError {
    fn from(e: CameraError) -> SourceError {
        match e {
            CameraError::Busy(s) => SourceError::Busy(s),
            other => SourceError::Unavailable(other.to_string()),
        }
    }
}

impl From<SourceError> for CameraError {
    fn from(e: SourceError) -> CameraError {
        match e {
            SourceError::Busy(s) => CameraError::Busy(s),
            other => CameraError::Unavailable(other.to_string()),
        }
    }
}

/// What an errno from `doing` something to `path` means for sign-in.
fn classify(e: &io::Error, doing: &str, path: &Path) -> CameraError {
    let at = format!("cannot {doing} {}", path.display());
    match e.raw_os_error() {
        Some(libc::EBUSY) => CameraError::Busy(format!(
            "{} is in use by another program ({at}: {e})",
            path.display()
        )),
        Some(libc::ENOENT) => CameraError::NotFound(format!("{at}: it does not exist")),
        Some(libc::ENODEV | libc::ENXIO | libc::EIO | libc::EPIPE | libc::ESHUTDOWN) => {
            CameraError::Unavailable(format!("{at}: the camera is gone (unplugged?): {e}"))
        }
        Some(libc::EACCES | libc::EPERM) => {
            CameraError::Unavailable(format!("{at}: permission denied (alohad runs as root)"))
        }
        _ => CameraError::Unavailable(format!("{at}: {e}")),
    }
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
    /// The survey `aloha camera` shows; `look`: whether it may open the camera to see the
    /// emitter fire.
    fn survey(&self, look: EmitterLook) -> CameraReport;
    /// `aloha camera --probe`: find and record the control that lights the IR emitter.
    fn probe(&self, progress: &mut dyn FnMut(FaceProgress) -> bool) -> Result<String, CameraError>;
}

/// The system's cameras as `[face]` names them.
#[derive(Debug, Clone)]
pub struct SystemCameras {
    pub settings: FaceSettings,
    /// alohad's state directory: the emitter control a probe records there is applied at
    /// every open.
    pub state_dir: PathBuf,
}

impl Cameras for SystemCameras {
    fn open(&self) -> Result<Camera, CameraError> {
        open(&self.settings, &self.state_dir)
    }

    /// For `aloha status`: the camera, what lights its IR emitter, and the plain warning
    /// when a colour camera is allowed.
    fn present(&self) -> Result<String, String> {
        let Some(wanted) = wanted_device(&self.settings) else {
            return present(&self.settings);
        };
        let chosen = pick(&self.settings, wanted.as_deref())
            .1
            .map_err(|e| e.to_string())?;
        let emitter = match self.settings.emitter {
            EmitterChoice::Off => "IR emitter not touched (face.emitter = \"off\")".to_string(),
            EmitterChoice::Auto => {
                match emitter::control_for(&self.state_dir, chosen.node.usb_id.as_deref()) {
                    Some(c) => format!("IR emitter control: {}", c.origin),
                    None => "no IR emitter control needed or known (if frames stay dark: \
                             `sudo aloha camera --probe`)"
                        .to_string(),
                }
            }
        };
        let mut shown = format!("{}; {emitter}", chosen.node.shown_path().display());
        if chosen.visible_light {
            shown = format!("{shown}; {}", select::VISIBLE_WARNING);
        }
        Ok(shown)
    }

    fn survey(&self, look: EmitterLook) -> CameraReport {
        survey(&self.settings, &self.state_dir, look)
    }

    fn probe(&self, progress: &mut dyn FnMut(FaceProgress) -> bool) -> Result<String, CameraError> {
        probe(&self.settings, &self.state_dir, progress)
    }
}

impl FrameSource for Camera {
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame<'static>, SourceError> {
        self.source.next_frame(deadline)
    }
}

/// How long a V4L2 camera may take to start streaming.
fn start_timeout(settings: &FaceSettings) -> Duration {
    Duration::from_millis(settings.frame_timeout_ms)
}

/// `face.camera` as a path, or `None` for `auto`; a replay has no device.
fn wanted_device(settings: &FaceSettings) -> Option<Option<PathBuf>> {
    match settings.camera_choice() {
        CameraChoice::Auto => Some(None),
        CameraChoice::Device(p) => Some(Some(p)),
        CameraChoice::Replay(_) => None,
    }
}

fn pick(
    settings: &FaceSettings,
    wanted: Option<&Path>,
) -> (Vec<select::Node>, Result<select::Pick, CameraError>) {
    let nodes = select::scan();
    let pick = select::choose(&nodes, wanted, settings.allow_visible_camera, &|p| {
        fs::canonicalize(p)
    });
    (nodes, pick)
}

/// The emitter control `face.emitter` wants applied to this camera.
fn control(
    settings: &FaceSettings,
    state_dir: &Path,
    node: &select::Node,
) -> Option<emitter::Control> {
    match settings.emitter {
        EmitterChoice::Auto => emitter::control_for(state_dir, node.usb_id.as_deref()),
        EmitterChoice::Off => None,
    }
}

fn open_pick(
    settings: &FaceSettings,
    state_dir: &Path,
    pick: &select::Pick,
) -> Result<V4l2, CameraError> {
    let control = control(settings, state_dir, &pick.node);
    V4l2::open(&pick.node.path, control, start_timeout(settings))
}

/// Open the camera `settings` names, with the emitter control `face.emitter` wants (the one
/// recorded under `state_dir` by a probe, else a built-in quirk) applied before it streams.
pub fn open(settings: &FaceSettings, state_dir: &Path) -> Result<Camera, CameraError> {
    let wanted = match settings.camera_choice() {
        CameraChoice::Replay(dir) => {
            let replay = Replay::open(&dir, settings.replay_fps)?;
            return Ok(Camera::new(
                Box::new(replay),
                format!("replay {}", dir.display()),
                false,
            ));
        }
        CameraChoice::Auto => None,
        CameraChoice::Device(path) => Some(path),
    };
    let pick = pick(settings, wanted.as_deref()).1?;
    if pick.visible_light {
        warn!(device = %pick.node.path.display(), "{}", select::VISIBLE_WARNING);
    }
    let camera = open_pick(settings, state_dir, &pick)?;
    let mut description = format!(
        "{} ({})",
        pick.node.shown_path().display(),
        camera.negotiated
    );
    if let Some(e) = &camera.emitter {
        description.push_str(&format!("; emitter: {e}"));
    }
    info!(camera = %description, "camera open");
    Ok(Camera::new(
        Box::new(camera),
        description,
        pick.visible_light,
    ))
}

/// `aloha camera --probe`: try the known emitter controls on the camera `face.camera` picks,
/// keep the one that makes the emitter fire and record it under `state_dir`. Progress goes
/// to `progress` (false: nobody listens; the probe stops and puts the control back). The
/// answer says what was recorded.
pub fn probe(
    settings: &FaceSettings,
    state_dir: &Path,
    progress: &mut dyn FnMut(FaceProgress) -> bool,
) -> Result<String, CameraError> {
    let Some(wanted) = wanted_device(settings) else {
        return Err(CameraError::NotFound(format!(
            "face.camera = {:?} is a recording: the probe needs a V4L2 camera",
            settings.camera
        )));
    };
    let pick = pick(settings, wanted.as_deref()).1?;
    let node = &pick.node;
    let shown = node.shown_path().display().to_string();
    if pick.visible_light {
        return Err(CameraError::Unavailable(format!(
            "{shown} is a colour camera: it has no infrared emitter to probe"
        )));
    }
    let (Some(usb_id), Some((usb_dir, interface))) = (&node.usb_id, &node.usb) else {
        return Err(CameraError::Unavailable(format!(
            "{shown} is not a USB (UVC) camera: it has no extension-unit controls to try"
        )));
    };
    if let Some((_, why)) = emitter::NEVER_PROBE
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(usb_id))
    {
        return Err(CameraError::Unavailable(format!(
            "{shown} ({usb_id}) is {why}; the probe writes nothing on it"
        )));
    }
    let descriptors = fs::read(usb_dir.join("descriptors")).map_err(|e| {
        CameraError::Unavailable(format!("cannot read the USB descriptors of {shown}: {e}"))
    })?;
    let units = uvc::extension_units(&descriptors, *interface);
    // The camera as it is, no control applied; a second fd for the controls (UVC allows
    // extension-unit queries beside a running stream).
    let camera = V4l2::open(&node.path, None, start_timeout(settings))?;
    let controls = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&node.path)
        .map_err(|e| classify(&e, "open", &node.path))?;
    let mut xu = uvc::UvcFd(controls.as_raw_fd());
    let candidates = probe::candidates(&mut xu, emitter::quirk_for(usb_id), &units);
    if candidates.is_empty() {
        return Err(CameraError::Unavailable(format!(
            "{shown} ({usb_id}) advertises none of the controls the probe knows (a built-in \
             quirk, the Microsoft face-authentication control); nothing was written"
        )));
    }
    // Enough for the frames of one look at 10 fps, plus the wait for the first.
    let look = start_timeout(settings) + Duration::from_millis(100) * emitter::FIRES_FRAMES as u32;
    let mut measure = || camera.frame_means(emitter::FIRES_FRAMES, Instant::now() + look);
    let outcome = probe::run(&mut xu, &candidates, &mut measure, progress)?;
    match outcome {
        probe::Outcome::AlreadyFires => Ok(format!(
            "The emitter of {shown} already fires with no control set; nothing was recorded."
        )),
        probe::Outcome::Found(c) => {
            let recorded = emitter::Recorded {
                usb_id: usb_id.clone(),
                device: shown.clone(),
                unit: c.unit,
                selector: c.selector,
                value: c.value.clone(),
            };
            emitter::save_recorded(state_dir, &recorded)?;
            let control = emitter::Control {
                unit: c.unit,
                selector: c.selector,
                value: c.value,
                origin: c.what,
            };
            info!(%control, usb_id, "emitter control recorded");
            let applied = match settings.emitter {
                EmitterChoice::Auto => "alohad sets it whenever it opens this camera",
                EmitterChoice::Off => {
                    "face.emitter = \"off\", so alohad will not set it until that is \"auto\""
                }
            };
            Ok(format!(
                "Recorded for {usb_id} ({shown}): {control}; {applied}. Kept in {}.",
                emitter::recorded_path(state_dir).display()
            ))
        }
        probe::Outcome::NothingWorked { tried } => Err(CameraError::Unavailable(format!(
            "none of the {tried} controls tried made the emitter of {shown} fire; each was put \
             back and nothing was recorded"
        ))),
    }
}
