//! `[face]`: face sign-in in alohad — the camera, the attempt's limits, enrolment.
//!
//! The face engine's own keys (the model directory, thresholds, quality gates; see
//! `aloha_face::FaceConfig` and docs/face-engine.md) sit in the same section. Only alohad uses
//! them, so only alohad checks them (at start and in `alohad --check-config`); the PAM module
//! and the CLI carry them along unread.

use serde::{Deserialize, Serialize};

/// `[face]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaceSettings {
    /// Which camera: "auto" (the infrared capture node, chosen by its pixel formats), a device
    /// path such as "/dev/video2" or "/dev/v4l/by-id/…", or "replay:DIR" (the image files in
    /// DIR played in name order, looping, as an 8-bit infrared camera: for the demo, tests and
    /// evaluation without the hardware). Default "auto".
    pub camera: String,
    /// Allow a colour-only camera for sign-in. This weakens spoof resistance: a photo or a
    /// screen shows up in visible light as it does to the eye. Default false.
    pub allow_visible_camera: bool,
    /// Frames per second a `replay:` camera plays at. Default 30.
    pub replay_fps: f64,
    /// Longest wait for one frame from the camera before it counts as not delivering, in
    /// milliseconds. Default 2000.
    pub frame_timeout_ms: u64,
    /// Time between the frames alohad analyses, in milliseconds; frames the camera delivers in
    /// between are dropped. Liveness compares consecutive analysed frames, and its cues were
    /// measured on motion over about this interval (docs/face-engine.md). Default 150.
    pub frame_interval_ms: u64,
    /// Longest one face sign-in may run in alohad, whatever the PAM module allows, in
    /// milliseconds. Default 5000.
    pub attempt_timeout_ms: u64,
    /// Failed face attempts in a row (faces compared, none matched or not live) after which
    /// face sign-in is off for that user until a PIN sign-in succeeds (or an administrator
    /// runs `aloha admin unlock`). No face seen is not a failure. Default 5.
    pub max_failures: u32,
    /// Longest an enrolment may take, in milliseconds. Default 30000.
    pub enrol_timeout_ms: u64,
    /// The infrared emitter: "auto" switches it on through the camera's UVC extension-unit
    /// control where Aloha knows the camera (built-in quirks, or one found with
    /// `aloha camera --probe`), "off" never touches camera controls. Default "auto".
    pub emitter: EmitterChoice,
    /// The face engine's keys, checked by alohad.
    #[serde(flatten)]
    pub engine: toml::Table,
}

impl Default for FaceSettings {
    fn default() -> Self {
        FaceSettings {
            camera: "auto".into(),
            allow_visible_camera: false,
            replay_fps: 30.0,
            frame_timeout_ms: 2000,
            frame_interval_ms: 150,
            attempt_timeout_ms: 5000,
            max_failures: 5,
            enrol_timeout_ms: 30_000,
            emitter: EmitterChoice::Auto,
            engine: toml::Table::new(),
        }
    }
}

/// `face.emitter`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmitterChoice {
    Auto,
    Off,
}

/// What `face.camera` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraChoice {
    Auto,
    Device(std::path::PathBuf),
    Replay(std::path::PathBuf),
}

impl FaceSettings {
    pub fn camera_choice(&self) -> CameraChoice {
        match self.camera.as_str() {
            "auto" => CameraChoice::Auto,
            other => match other.strip_prefix("replay:") {
                Some(dir) => CameraChoice::Replay(dir.into()),
                None => CameraChoice::Device(other.into()),
            },
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match self.camera_choice() {
            CameraChoice::Auto => {}
            CameraChoice::Device(p) if !p.is_absolute() => {
                return Err(format!(
                    "face.camera = {:?} must be \"auto\", an absolute device path or \"replay:DIR\"",
                    self.camera
                ));
            }
            CameraChoice::Replay(d) if !d.is_absolute() => {
                return Err(format!(
                    "face.camera = {:?}: the replay directory must be an absolute path",
                    self.camera
                ));
            }
            CameraChoice::Device(_) | CameraChoice::Replay(_) => {}
        }
        if !(self.replay_fps > 0.0 && self.replay_fps <= 240.0) {
            return Err(format!(
                "face.replay_fps = {} must be more than 0 and at most 240",
                self.replay_fps
            ));
        }
        for (key, ms) in [
            ("frame_timeout_ms", self.frame_timeout_ms),
            ("attempt_timeout_ms", self.attempt_timeout_ms),
            ("enrol_timeout_ms", self.enrol_timeout_ms),
        ] {
            if ms == 0 || ms > 600_000 {
                return Err(format!(
                    "face.{key} = {ms} must be more than 0 and at most 600000 (10 minutes)"
                ));
            }
        }
        if self.frame_interval_ms > 1000 {
            return Err(format!(
                "face.frame_interval_ms = {} must be at most 1000",
                self.frame_interval_ms
            ));
        }
        if self.max_failures == 0 {
            return Err("face.max_failures must be at least 1".into());
        }
        Ok(())
    }
}
