//! A scripted camera and face recognition for the service tests. A frame is a small gray image
//! whose first pixel says what it shows: 0 nobody, 1–99 a live person with that number,
//! 101–199 a photo of person `n − 100`. Person `n`'s descriptor is the unit vector on axis `n`,
//! so two people lie √2 apart and one person at 0.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aloha::protocol::{CameraReport, EmitterReport, FaceProgress, FrameVerdict};
use aloha_face::pose::Pose;
use aloha_face::quality::Quality;
use aloha_face::{
    Analysis, DESCRIPTOR_LEN, Descriptor, FaceError, Frame, FrameSource, Profile, ProfileSet,
    Reject, RejectKind, SourceError,
};

use crate::camera::{Camera, CameraError, Cameras, EmitterLook};
use crate::recognition::{Judge, Recognition, Step};
use crate::service::lock;

pub const NOBODY: u8 = 0;
pub const ALICE_FACE: u8 = 1;
pub const BOB_FACE: u8 = 2;
pub const PHOTO_OF_ALICE: u8 = 101;

/// What the scripted camera does.
#[derive(Debug, Clone)]
pub enum Shot {
    /// Deliver these frames in order, looping, one every 5 ms.
    Frames(Vec<u8>),
    /// Cannot be opened.
    Missing,
    /// Opens, then delivers nothing (every frame times out).
    Silent,
    /// Delivers these frames, then is unplugged.
    ThenGone(Vec<u8>),
}

/// Runs at every frame a scripted camera delivers.
pub type FrameHook = Box<dyn FnMut() + Send>;

/// The scripted cameras: what the next opened camera shows, and a hook run at every frame
/// (e.g. to look at the state on disk while the attempt runs).
#[derive(Clone)]
pub struct ScriptedCameras {
    pub shot: Arc<Mutex<Shot>>,
    pub on_frame: Arc<Mutex<Option<FrameHook>>>,
    /// How many cameras are open right now.
    pub open_now: Arc<Mutex<usize>>,
}

impl Default for ScriptedCameras {
    fn default() -> Self {
        ScriptedCameras {
            shot: Arc::new(Mutex::new(Shot::Frames(vec![ALICE_FACE]))),
            on_frame: Arc::new(Mutex::new(None)),
            open_now: Arc::new(Mutex::new(0)),
        }
    }
}

impl ScriptedCameras {
    pub fn show(&self, shot: Shot) {
        *lock(&self.shot) = shot;
    }
}

struct ScriptedSource {
    frames: VecDeque<u8>,
    looped: Vec<u8>,
    gone_after: bool,
    silent: bool,
    cameras: ScriptedCameras,
}

impl Drop for ScriptedSource {
    fn drop(&mut self) {
        *lock(&self.cameras.open_now) -= 1;
    }
}

impl FrameSource for ScriptedSource {
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame<'static>, SourceError> {
        if self.silent {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            return Err(SourceError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
        if Instant::now() > deadline {
            return Err(SourceError::Timeout);
        }
        if let Some(hook) = lock(&self.cameras.on_frame).as_mut() {
            hook();
        }
        let value = match self.frames.pop_front() {
            Some(v) => v,
            None if self.gone_after => {
                return Err(SourceError::Unavailable("unplugged".into()));
            }
            None => {
                self.frames.extend(self.looped.iter().copied());
                self.frames.pop_front().unwrap_or(NOBODY)
            }
        };
        Frame::gray8(4, 4, vec![value; 16]).map_err(|e| SourceError::Bad(e.to_string()))
    }
}

impl Cameras for ScriptedCameras {
    fn open(&self) -> Result<Camera, CameraError> {
        let shot = lock(&self.shot).clone();
        let (frames, gone_after, silent) = match shot {
            Shot::Missing => return Err(CameraError::NotFound("no camera here".into())),
            Shot::Frames(f) => (f, false, false),
            Shot::ThenGone(f) => (f, true, false),
            Shot::Silent => (vec![], false, true),
        };
        *lock(&self.open_now) += 1;
        let source = ScriptedSource {
            frames: frames.iter().copied().collect(),
            looped: frames,
            gone_after,
            silent,
            cameras: self.clone(),
        };
        Ok(Camera::new(Box::new(source), "scripted".into(), false))
    }

    fn present(&self) -> Result<String, String> {
        match *lock(&self.shot) {
            Shot::Missing => Err("no camera here".into()),
            _ => Ok("scripted".into()),
        }
    }

    /// The emitter "fires" when the survey may look; otherwise it says why not.
    fn survey(&self, look: EmitterLook) -> CameraReport {
        let (fires, detail) = match look {
            EmitterLook::Look => (Some(true), "looked".to_string()),
            EmitterLook::Skip(why) => (None, format!("not checked: {why}")),
        };
        CameraReport {
            configured: "scripted".into(),
            nodes: vec![],
            chosen: Some("scripted".into()),
            why: "tests".into(),
            usable: true,
            visible_light: false,
            emitter: Some(EmitterReport {
                control: None,
                fires,
                detail,
            }),
        }
    }

    fn probe(
        &self,
        _progress: &mut dyn FnMut(FaceProgress) -> bool,
    ) -> Result<String, CameraError> {
        Err(CameraError::Unavailable(
            "a scripted camera has no controls to probe".into(),
        ))
    }
}

fn descriptor(person: u8) -> Descriptor {
    let mut d = [0f32; DESCRIPTOR_LEN];
    d[usize::from(person) % DESCRIPTOR_LEN] = 1.0;
    Descriptor(d)
}

/// Face recognition by the first pixel; M = 2 matching frames, T = 4 compared frames, and three
/// photo frames make an attempt not live.
pub struct ScriptedRecognition;

impl Recognition for ScriptedRecognition {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn analyze(&self, frame: &Frame<'_>) -> Result<Analysis, Reject> {
        let value = frame.to_gray8().first().copied().unwrap_or(NOBODY);
        if value == NOBODY {
            return Err(Reject {
                kind: RejectKind::NoFace,
                reason: "no face".into(),
                pose: None,
            });
        }
        Ok(Analysis {
            descriptor: descriptor(value % 100),
            pose: Pose {
                yaw: f32::from(value),
                pitch: 0.0,
                roll: 0.0,
            },
            quality: Quality {
                brightness: 100.0,
                saturated: 0.0,
                contrast: 40.0,
                sharpness: 1.0,
                eye_distance: 60.0,
            },
            landmarks: [[f64::from(value); 2]; 5],
            face_box: [0.0; 4],
        })
    }

    fn judge<'a>(
        &'a self,
        profiles: &'a ProfileSet,
        _enrolled_users: usize,
    ) -> Box<dyn Judge + 'a> {
        Box::new(ScriptedJudge {
            profiles,
            matched: 0,
            compared: 0,
            photos: 0,
        })
    }

    fn adapt(&self, _: &mut ProfileSet, _: aloha_face::attempt::Adaptation) -> usize {
        0
    }

    fn enrol(&self, label: &str, frames: &[Analysis]) -> Result<Profile, FaceError> {
        Ok(Profile {
            label: label.into(),
            descriptors: frames.iter().map(|a| a.descriptor.clone()).collect(),
        })
    }

    fn enrol_frames(&self) -> usize {
        3
    }
}

struct ScriptedJudge<'a> {
    profiles: &'a ProfileSet,
    matched: usize,
    compared: usize,
    photos: usize,
}

impl Judge for ScriptedJudge<'_> {
    fn push(&mut self, frame: &Frame<'_>, analysis: &Result<Analysis, Reject>) -> Step {
        let Ok(a) = analysis else {
            return Step::Continue {
                verdict: FrameVerdict::NoFace,
                distance: None,
            };
        };
        if frame.to_gray8().first().is_some_and(|v| *v > 100) {
            self.photos += 1;
            if self.photos >= 3 {
                return Step::NotLive("a flat picture".into());
            }
        }
        self.compared += 1;
        let distance = self
            .profiles
            .best_match(&a.descriptor)
            .map_or(f32::INFINITY, |(d, _)| d);
        if distance < 0.5 {
            self.matched += 1;
        }
        if self.matched >= 2 && self.photos == 0 {
            return Step::Matched { distance };
        }
        if self.compared >= 4 {
            return Step::NoMatch;
        }
        Step::Continue {
            verdict: if distance < 0.5 {
                FrameVerdict::Match
            } else {
                FrameVerdict::NoMatch
            },
            distance: Some(distance),
        }
    }

    fn compared(&self) -> usize {
        self.compared
    }

    fn adaptation(&self) -> Option<aloha_face::attempt::Adaptation> {
        None
    }
}
