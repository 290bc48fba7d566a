//! One face sign-in attempt, driven frame by frame by alohad: the match decision
//! ([`Decider`], at most T compared good frames) and liveness ([`Liveness`]) over the same
//! frames. The attempt matches only when both agree; it ends at the first sheet evidence, or
//! when its T frames are used.

use crate::config::FaceConfig;
use crate::decide::{Decider, DeciderConfig, RejectReason};
use crate::engine::{Analysis, Reject};
use crate::frame::Frame;
use crate::liveness::{Evidence, Liveness, NotLive, Verdict};
use crate::profile::{Descriptor, Profile, ProfileSet};

/// Label of the profile that confirmed sign-ins add to (see [`ProfileSet::adapt`]).
pub const ADAPTED_LABEL: &str = "adapted";

/// The hint while a matched face has not yet shown a sign of life.
pub const WAITING_FOR_LIFE: &str = "face recognised: blink or turn your head slightly";

/// A successful attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Distance of the frame that completed the match.
    pub score: f64,
    /// Threshold in force.
    pub threshold: f64,
    /// Profile of the nearest descriptor.
    pub profile: String,
    /// What the liveness check saw.
    pub liveness: Evidence,
}

/// Why an attempt ended without a match.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The user has no face profile.
    NoProfile,
    /// The face did not match within the attempt's T compared frames.
    NoMatch {
        /// Smallest distance seen (NaN when no frame was compared).
        best: f64,
        /// Threshold in force.
        threshold: f64,
    },
    /// A presentation attack, or no sign of life within the attempt.
    NotLive(NotLive),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoProfile => f.write_str("no face enrolled for this user: enrol one first"),
            Self::NoMatch { .. } => {
                f.write_str("face not recognised: use your PIN, or try again facing the camera")
            }
            Self::NotLive(n) => n.fmt(f),
        }
    }
}

/// Where the attempt stands after a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Feed the next frame; `hint` says why this one did not finish the attempt (for the
    /// user: "too dark", "1 of 2 matching frames so far", …).
    Continue {
        /// The reason of the last frame, if any.
        hint: Option<String>,
    },
    /// Recognised and live: sign the user in.
    Matched(Match),
    /// The attempt is over without a match; start a new one (a new PAM conversation).
    Refused(Refusal),
}

/// Descriptors a refused attempt offers for adaptation (see [`ProfileSet::adapt`]). Only an
/// [`Attempt`] makes one, and only from frames of a live face track that came near the
/// profile, so nothing that failed liveness can reach a profile through it.
#[derive(Debug, Clone)]
pub struct Adaptation {
    descriptors: Vec<Descriptor>,
}

impl Adaptation {
    /// Descriptors offered.
    pub fn len(&self) -> usize {
        self.descriptors.len()
    }

    /// True when nothing is offered.
    pub fn is_empty(&self) -> bool {
        self.descriptors.is_empty()
    }
}

/// One attempt for one user.
#[derive(Debug)]
pub struct Attempt<'p> {
    profiles: &'p ProfileSet,
    decider: Decider,
    liveness: Liveness,
    /// Set once M of K frames matched.
    matched: Option<Match>,
    best: f64,
    /// The decision threshold for this user.
    threshold: f64,
    /// Good frames of the current face track: distance, descriptor, and whether it may be
    /// offered for adaptation (not part of a sheet-like pair).
    track: Vec<(f64, Descriptor, bool)>,
    adapt_frames: usize,
    done: Option<Progress>,
}

impl<'p> Attempt<'p> {
    /// A fresh attempt for the owner of `profiles` on a device with `enrolled_users` users.
    pub fn new(config: &FaceConfig, profiles: &'p ProfileSet, enrolled_users: usize) -> Self {
        let decider = DeciderConfig::from_face(config, enrolled_users);
        Self {
            profiles,
            threshold: decider.threshold(profiles.references()),
            decider: Decider::new(decider),
            liveness: Liveness::new(config.liveness),
            matched: None,
            best: f64::NAN,
            track: Vec::new(),
            adapt_frames: config.adaptation_frames,
            done: None,
        }
    }

    /// The liveness counts so far.
    pub fn evidence(&self) -> Evidence {
        self.liveness.evidence()
    }

    /// Good frames compared so far (at most `max_attempt_frames`).
    pub fn compared(&self) -> usize {
        self.decider.compared()
    }

    /// Feeds the next camera frame and the engine's result for it. After the attempt has
    /// ended every call returns the same final progress.
    pub fn push(&mut self, frame: &Frame<'_>, analysis: &Result<Analysis, Reject>) -> Progress {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let progress = self.step(frame, analysis);
        if !matches!(progress, Progress::Continue { .. }) {
            self.done = Some(progress.clone());
        }
        progress
    }

    fn step(&mut self, frame: &Frame<'_>, analysis: &Result<Analysis, Reject>) -> Progress {
        if self.profiles.references() == 0 {
            return Progress::Refused(Refusal::NoProfile);
        }
        if self.compared() >= self.decider.config().max_frames {
            return self.out_of_frames();
        }
        let mut sheet_pair = false;
        if let Ok(a) = analysis {
            let restarts = self.liveness.evidence().restarts;
            let cues = self.liveness.observe(frame, a);
            if self.liveness.evidence().restarts != restarts {
                // Another face took over: only its own frames count from here (the frames
                // compared so far still count towards T).
                self.track.clear();
                self.matched = None;
                self.decider.clear_window();
            }
            if cues.is_some_and(|c| self.liveness.is_sheet(&c)) {
                // Neither frame of a sheet-like pair may ever reach a profile.
                if let Some(prev) = self.track.last_mut() {
                    prev.2 = false;
                }
                sheet_pair = true;
            }
        }
        let decision = self.decider.push(analysis, self.profiles);
        match &decision.reason {
            Some(RejectReason::NoProfile) => return Progress::Refused(Refusal::NoProfile),
            Some(RejectReason::FrameLimit { .. }) => return self.out_of_frames(),
            _ => {}
        }
        let Ok(a) = analysis else {
            return Progress::Continue {
                hint: decision.reason.as_ref().map(ToString::to_string),
            };
        };
        // NaN until the first comparison.
        if self.best.is_nan() || decision.score < self.best {
            self.best = decision.score;
        }
        self.track
            .push((decision.score, a.descriptor.clone(), !sheet_pair));
        if decision.accepted && self.matched.is_none() {
            self.matched = Some(Match {
                score: decision.score,
                threshold: self.threshold,
                profile: decision.profile.clone().unwrap_or_default(),
                liveness: Evidence::default(),
            });
        }
        match self.liveness.verdict() {
            Verdict::NotLive(why) => return Progress::Refused(Refusal::NotLive(why)),
            Verdict::Live => {
                if let Some(m) = &self.matched {
                    return Progress::Matched(Match {
                        liveness: self.liveness.evidence(),
                        ..m.clone()
                    });
                }
            }
            Verdict::Undecided => {}
        }
        if self.compared() >= self.decider.config().max_frames {
            return self.out_of_frames();
        }
        let hint = match (&self.matched, &decision.reason) {
            (Some(_), _) => Some(WAITING_FOR_LIFE.to_string()),
            (None, r) => r.as_ref().map(ToString::to_string),
        };
        Progress::Continue { hint }
    }

    /// The attempt has compared its T frames.
    fn out_of_frames(&self) -> Progress {
        match self.liveness.final_verdict() {
            Verdict::NotLive(why) if self.matched.is_some() => {
                Progress::Refused(Refusal::NotLive(why))
            }
            Verdict::NotLive(why @ NotLive::Sheet { .. }) => {
                Progress::Refused(Refusal::NotLive(why))
            }
            _ => Progress::Refused(Refusal::NoMatch {
                best: self.best,
                threshold: self.threshold,
            }),
        }
    }

    /// After a refused attempt, what the daemon may add to the user's profiles once the user
    /// has proved who they are with the PIN or password right after it: the descriptors of the
    /// live face track that came within the threshold cap (`threshold_model.max_threshold`)
    /// of the profile, at most `adaptation_frames` of them, spread over the track. None when the
    /// attempt matched, was not seen live, or never came near.
    pub fn adaptation(&self, config: &FaceConfig) -> Option<Adaptation> {
        if self.adapt_frames == 0
            || !matches!(self.done, Some(Progress::Refused(Refusal::NoMatch { .. })))
            || self.liveness.verdict() != Verdict::Live
        {
            return None;
        }
        let cap = config.threshold_model.max_threshold;
        let near: Vec<&Descriptor> = self
            .track
            .iter()
            .filter(|(d, _, ok)| *ok && *d <= cap)
            .map(|(_, d, _)| d)
            .collect();
        // Spread over the track (time order), not the nearest: the frames that came closest
        // are the ones most like the enrolment, the least new.
        let n = near.len().min(self.adapt_frames);
        let descriptors: Vec<Descriptor> = (0..n)
            .filter_map(|i| near.get(i * near.len() / n.max(1)).map(|d| (*d).clone()))
            .collect();
        (!descriptors.is_empty()).then_some(Adaptation { descriptors })
    }
}

impl ProfileSet {
    /// Adds an attempt's [`Adaptation`] to the profile labelled [`ADAPTED_LABEL`], keeping at
    /// most `max` adapted descriptors (the oldest go first). Call it only after the user
    /// proved who they are with the PIN or password right after that refused attempt. Every
    /// added descriptor counts in R, so the threshold tightens as the profile grows (see
    /// `decide`). Returns the number of adapted descriptors kept.
    pub fn adapt(&mut self, adaptation: Adaptation, config: &FaceConfig) -> usize {
        let max = config.adaptation_max_descriptors;
        let mut kept: Vec<Descriptor> = self
            .profiles
            .iter()
            .find(|p| p.label == ADAPTED_LABEL)
            .map(|p| p.descriptors.clone())
            .unwrap_or_default();
        kept.extend(adaptation.descriptors);
        let excess = kept.len().saturating_sub(max);
        kept.drain(..excess);
        let n = kept.len();
        if n == 0 {
            self.remove(ADAPTED_LABEL);
        } else {
            self.upsert(Profile {
                label: ADAPTED_LABEL.into(),
                descriptors: kept,
            });
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DESCRIPTOR_LEN;

    fn desc(x: f32) -> Descriptor {
        let mut d = [0f32; DESCRIPTOR_LEN];
        d[0] = x;
        Descriptor(d)
    }

    #[test]
    fn adaptation_is_bounded_labelled_and_keeps_the_newest() {
        let cfg = FaceConfig {
            adaptation_max_descriptors: 5,
            ..FaceConfig::default()
        };
        let mut set = ProfileSet::new("alice");
        set.upsert(Profile {
            label: "default".into(),
            descriptors: vec![desc(0.0); 3],
        });
        let offer = |from: u8, n: u8| Adaptation {
            descriptors: (from..from + n).map(|i| desc(f32::from(i))).collect(),
        };
        assert_eq!(set.adapt(offer(1, 3), &cfg), 3);
        assert_eq!(set.references(), 6);
        assert_eq!(set.adapt(offer(10, 4), &cfg), 5);
        let adapted = set
            .profiles
            .iter()
            .find(|p| p.label == ADAPTED_LABEL)
            .unwrap();
        let firsts: Vec<f32> = adapted.descriptors.iter().map(|d| d.0[0]).collect();
        assert_eq!(
            firsts,
            [3.0, 10.0, 11.0, 12.0, 13.0],
            "oldest dropped first"
        );
        assert_eq!(set.references(), 8, "the enrolled profile is untouched");
        // A limit of 0 removes what adaptation added, never the enrolled profile.
        let none = FaceConfig {
            adaptation_max_descriptors: 0,
            ..FaceConfig::default()
        };
        assert_eq!(set.adapt(offer(20, 1), &none), 0);
        assert!(set.profiles.iter().all(|p| p.label != ADAPTED_LABEL));
        assert_eq!(set.references(), 3);
    }
}
