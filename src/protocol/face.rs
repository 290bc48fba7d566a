//! The face part of the protocol: enrolment and test progress, profiles, the camera survey, and
//! a user's face status.

use serde::{Deserialize, Serialize};

/// What one frame of an enrolment, a test or an attempt showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameVerdict {
    /// A usable face (enrolment: collected; test: compared).
    Good,
    /// Compared and close enough to the profile.
    Match,
    /// Compared and not close enough.
    NoMatch,
    NoFace,
    SeveralFaces,
    TooSmall,
    TooDark,
    TooBright,
    Blurred,
    TurnedAway,
    /// The attempt so far looks like a photo or a screen.
    NotLive,
}

impl FrameVerdict {
    /// What a person in front of the camera should do, in a few words.
    pub fn hint(self) -> &'static str {
        match self {
            FrameVerdict::Good | FrameVerdict::Match => "good",
            FrameVerdict::NoMatch => "not recognised",
            FrameVerdict::NoFace => "no face seen — look at the camera",
            FrameVerdict::SeveralFaces => "several faces — only you in front of the camera",
            FrameVerdict::TooSmall => "move closer",
            FrameVerdict::TooDark => "too dark",
            FrameVerdict::TooBright => "too bright — move out of direct light",
            FrameVerdict::Blurred => "blurred — hold still",
            FrameVerdict::TurnedAway => "turn less — face the camera",
            FrameVerdict::NotLive => "looks like a photo or a screen",
        }
    }
}

/// One progress report of a long face operation (enrolment, `aloha face test`, a camera probe):
/// sent while it runs, before its final reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceProgress {
    /// Frames seen so far.
    pub frame: u32,
    pub verdict: FrameVerdict,
    /// Distance to the nearest enrolled descriptor, for compared frames (`aloha face test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    /// Good frames collected (enrolment) or compared (test) so far, and how many are wanted.
    pub done: u32,
    pub wanted: u32,
    /// A line for the person, e.g. "move closer".
    pub message: String,
}

/// One labelled set of enrolled descriptors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceProfileInfo {
    pub label: String,
    /// Descriptors (never images) in this set.
    pub descriptors: u32,
    /// Unix seconds.
    pub enrolled_at: u64,
}

/// A video device as `aloha camera` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraNode {
    /// /dev/videoN.
    pub path: String,
    /// /dev/v4l/by-id/… or by-path/… when udev made one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_path: Option<String>,
    /// The driver's card name.
    pub name: String,
    /// USB vendor:product, for USB cameras.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usb_id: Option<String>,
    /// Pixel formats the node captures (fourccs, e.g. "GREY", "YUYV").
    pub formats: Vec<String>,
    /// It offers an infrared-style format (GREY, Y8I, Y10, Y12, Y16…).
    pub infrared: bool,
}

/// The IR emitter of the chosen camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitterReport {
    /// The control Aloha sets to light it ("built-in quirk 04f2:b67c unit 14 selector 14",
    /// "recorded by `aloha camera --probe`"), or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Whether lit and unlit frames were seen (`None`: not checked, or no frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires: Option<bool>,
    /// In words.
    pub detail: String,
}

/// The camera survey: every capture node, the one `face.camera` picks, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraReport {
    /// `face.camera` as configured.
    pub configured: String,
    pub nodes: Vec<CameraNode>,
    /// The device (or replay directory) sign-in would use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
    /// Why that one, or why none.
    pub why: String,
    /// Whether face sign-in may use it (an infrared camera, a replay, or a colour camera with
    /// `face.allow_visible_camera`).
    pub usable: bool,
    /// A colour-only camera is in use (`face.allow_visible_camera`): spoofing is easier.
    pub visible_light: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitter: Option<EmitterReport>,
}

/// A user's face sign-in, in `aloha status` and for pam_aloha's decision to try the face.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceStatus {
    pub profiles: Vec<FaceProfileInfo>,
    /// The user's face protector exists (a face can release the key).
    pub protector: bool,
    /// Failed face attempts in a row, and the limit.
    pub failures: u32,
    pub max_failures: u32,
    /// Face sign-in is off until a PIN or password sign-in succeeds (or an administrator unlocks).
    pub paused: bool,
    /// The camera face sign-in would use, or why none (no camera, colour only, models
    /// missing…).
    pub camera: String,
    /// Whether a face attempt can run now: enrolled, not paused, camera and models usable.
    pub usable: bool,
    /// What protects the face secret and the profiles, in words.
    pub protection: String,
}
