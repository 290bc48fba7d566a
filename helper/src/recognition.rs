//! Face recognition as alohad uses it, behind [`Recognition`]: the face engine in production
//! (models loaded on first use and kept), scripted in tests. alohad's face operations drive it
//! frame by frame: [`Recognition::analyze`] for every frame, a [`Judge`] per attempt for the
//! decision (match and liveness), [`Recognition::enrol`] to turn good frames into a profile.

use std::sync::OnceLock;

use aloha::config::FaceSettings;
use aloha::protocol::FrameVerdict;
use aloha_face::attempt::Adaptation;
use aloha_face::decide::DeciderConfig;
use aloha_face::profile::EnrolSettings;
use aloha_face::{
    Analysis, Attempt, Engine, FaceConfig, FaceError, Frame, Profile, ProfileSet, Progress,
    Refusal, Reject, RejectKind,
};

/// What one frame did to an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Go on with the next frame.
    Continue {
        verdict: FrameVerdict,
        /// Distance to the nearest enrolled descriptor, for a compared frame.
        distance: Option<f32>,
    },
    /// A live face matched.
    Matched { distance: f32 },
    /// The attempt is over without a match: faces were compared and none matched closely
    /// enough within the frames one attempt may compare.
    NoMatch,
    /// The frames look like a photo or a screen.
    NotLive(String),
}

/// The decision of one attempt, frame by frame.
pub trait Judge: Send {
    fn push(&mut self, frame: &Frame<'_>, analysis: &Result<Analysis, Reject>) -> Step;
    /// Good frames compared so far (a timeout after any is a failed attempt, not "no face").
    fn compared(&self) -> usize;
    /// After a near miss of a live face, what a PIN sign-in right after it may add to the
    /// user's profiles (see `aloha_face::attempt`).
    fn adaptation(&self) -> Option<Adaptation>;
}

/// Face recognition for alohad.
pub trait Recognition: Send + Sync {
    /// Load the models if that has not happened yet; `Err` says why face cannot run.
    fn ready(&self) -> Result<(), String>;
    fn analyze(&self, frame: &Frame<'_>) -> Result<Analysis, Reject>;
    /// A judge for one attempt against `profiles`, with `enrolled_users` users with a face on
    /// this machine (the threshold tightens as more enrol).
    fn judge<'a>(&'a self, profiles: &'a ProfileSet, enrolled_users: usize) -> Box<dyn Judge + 'a>;
    /// Add a confirmed near miss's descriptors to the profiles (bounded, labelled "adapted").
    /// Returns how many adapted descriptors the profiles now hold.
    fn adapt(&self, profiles: &mut ProfileSet, adaptation: Adaptation) -> usize;
    /// Turn an enrolment's good frames into a profile.
    fn enrol(&self, label: &str, frames: &[Analysis]) -> Result<Profile, FaceError>;
    /// Good frames an enrolment collects.
    fn enrol_frames(&self) -> usize;
}

/// The face engine's settings from `[face]` in aloha.toml (its keys sit beside alohad's own),
/// checked: unknown keys and values out of range are refused by name.
pub fn face_config(settings: &FaceSettings) -> Result<FaceConfig, String> {
    let config: FaceConfig = toml::Value::Table(settings.engine.clone())
        .try_into()
        .map_err(|e: toml::de::Error| format!("[face]: {}", e.message()))?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// How a frame the engine could not use reads to a person.
pub fn verdict_of(kind: RejectKind) -> FrameVerdict {
    match kind {
        RejectKind::NoFace | RejectKind::BadFrame => FrameVerdict::NoFace,
        RejectKind::SeveralFaces => FrameVerdict::SeveralFaces,
        RejectKind::FaceTooSmall => FrameVerdict::TooSmall,
        RejectKind::TooDark => FrameVerdict::TooDark,
        RejectKind::OverExposed => FrameVerdict::TooBright,
        RejectKind::TooBlurry => FrameVerdict::Blurred,
        RejectKind::PoseOutOfRange => FrameVerdict::TurnedAway,
    }
}

/// The face engine, loaded on first use and kept (models are ~90 MB in memory and take a few
/// hundred milliseconds to load).
pub struct EngineRecognition {
    config: FaceConfig,
    engine: OnceLock<Result<Engine, String>>,
}

impl std::fmt::Debug for EngineRecognition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineRecognition")
            .field("model_dir", &self.config.model_dir)
            .field("loaded", &self.engine.get().is_some())
            .finish()
    }
}

impl EngineRecognition {
    pub fn new(config: FaceConfig) -> EngineRecognition {
        EngineRecognition {
            config,
            engine: OnceLock::new(),
        }
    }

    fn engine(&self) -> Result<&Engine, String> {
        self.engine
            .get_or_init(|| Engine::with_config(&self.config).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl Recognition for EngineRecognition {
    fn ready(&self) -> Result<(), String> {
        self.engine().map(|_| ())
    }

    fn analyze(&self, frame: &Frame<'_>) -> Result<Analysis, Reject> {
        match self.engine() {
            Ok(engine) => engine.analyze(frame),
            Err(why) => Err(Reject {
                kind: RejectKind::BadFrame,
                reason: why,
                pose: None,
            }),
        }
    }

    fn judge<'a>(&'a self, profiles: &'a ProfileSet, enrolled_users: usize) -> Box<dyn Judge + 'a> {
        Box::new(AttemptJudge {
            attempt: Attempt::new(&self.config, profiles, enrolled_users),
            profiles,
            config: &self.config,
        })
    }

    fn adapt(&self, profiles: &mut ProfileSet, adaptation: Adaptation) -> usize {
        profiles.adapt(adaptation, &self.config)
    }

    fn enrol(&self, label: &str, frames: &[Analysis]) -> Result<Profile, FaceError> {
        Profile::enrol(label, frames, &EnrolSettings::default())
    }

    fn enrol_frames(&self) -> usize {
        EnrolSettings::default().max_frames
    }
}

/// The engine's attempt: the M-of-K decision over the T frames an attempt may compare, and
/// liveness over the same frames.
struct AttemptJudge<'a> {
    attempt: Attempt<'a>,
    profiles: &'a ProfileSet,
    config: &'a FaceConfig,
}

impl Judge for AttemptJudge<'_> {
    fn push(&mut self, frame: &Frame<'_>, analysis: &Result<Analysis, Reject>) -> Step {
        match self.attempt.push(frame, analysis) {
            Progress::Matched(m) => Step::Matched {
                distance: m.score as f32,
            },
            Progress::Refused(Refusal::NotLive(why)) => Step::NotLive(why.to_string()),
            Progress::Refused(_) => Step::NoMatch,
            Progress::Continue { .. } => match analysis {
                Err(reject) => Step::Continue {
                    verdict: verdict_of(reject.kind),
                    distance: None,
                },
                Ok(a) => {
                    let distance = self.profiles.best_match(&a.descriptor).map(|(d, _)| d);
                    let threshold = DeciderConfig::from_face(self.config, 1)
                        .threshold(self.profiles.references());
                    Step::Continue {
                        verdict: if distance.is_some_and(|d| f64::from(d) <= threshold) {
                            FrameVerdict::Match
                        } else {
                            FrameVerdict::NoMatch
                        },
                        distance,
                    }
                }
            },
        }
    }

    fn compared(&self) -> usize {
        self.attempt.compared()
    }

    fn adaptation(&self) -> Option<Adaptation> {
        self.attempt.adaptation(self.config)
    }
}
