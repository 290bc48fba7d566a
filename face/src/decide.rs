//! The decision: 1:1 verification of a user's frames against that user's profiles, M of the
//! last K good frames, with a threshold that tightens as users enrol.
//!
//! # How the threshold is chosen
//! The device-wide false-accept rate per sign-in attempt must stay at or below `target_far`
//! with `N` enrolled users (an impostor may be any of them). An attempt compares at most `T`
//! good frames (`max_frames`; the decider refuses more) with each of the user's `R` enrolled
//! descriptors (all profiles together; a frame's score is the smallest distance) and accepts
//! once `M` frames of the last `K` match. A frame matches an impostor with probability at most
//! `R·f` (union bound over the references, `f` = FAR of one descriptor-to-descriptor
//! comparison), so the number of matching frames in the whole attempt has expectation at most
//! `T·R·f` whatever the correlation between frames, and acceptance needs at least `M` of them:
//! by Markov's inequality P(accept) ≤ `T·R·f / M`. Hence the per-comparison target
//!
//! `f = target_far · M / (N · T · R)`
//!
//! and the threshold is the distance at which a fraction `f` of impostor comparisons fall,
//! from the impostor tail fitted on 1-image comparisons ([`ThresholdModel`]), capped at
//! `max_threshold`. `K` does not enter: the bound must hold over the whole attempt, not one
//! window.

use crate::config::{FaceConfig, ThresholdModel};
use crate::engine::{Analysis, Reject, RejectKind};
use crate::profile::ProfileSet;
use std::collections::VecDeque;

/// The inverse of the standard normal CDF (Acklam's rational approximation, relative error
/// below 1.2e-9 on (0, 1)).
pub fn probit(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.357_751_867_269,
        -30.66479806614716,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -54.47609879822406,
        161.5858368580409,
        -155.6989798598866,
        66.80131188771972,
        -13.28068155288572,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996,
        3.754408661907416,
    ];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Distance threshold at per-comparison false-accept rate `f`. A settings value that makes no
/// sense (NaN, a negative rate, a non-finite cap, a non-positive slope) gives "never accept"
/// (negative infinity), never the loosest threshold: the fields are public and unchecked here.
pub fn threshold_at(model: &ThresholdModel, f: f64) -> f64 {
    let sane = f >= 0.0
        && model.intercept.is_finite()
        && model.slope > 0.0
        && model.max_threshold.is_finite();
    let t = model.intercept + model.slope * probit(f);
    if !sane || t.is_nan() {
        return f64::NEG_INFINITY;
    }
    t.min(model.max_threshold)
}

/// Decision settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeciderConfig {
    /// Device-wide FAR per attempt. Default 1e-5.
    pub target_far: f64,
    /// Users enrolled on the device (N ≥ 1).
    pub enrolled_users: usize,
    /// M.
    pub match_frames: usize,
    /// K.
    pub window_frames: usize,
    /// T: most good frames compared in one attempt (the FAR bound counts them all).
    pub max_frames: usize,
    /// Impostor tail.
    pub model: ThresholdModel,
}

impl DeciderConfig {
    /// From the `[face]` settings and the number of enrolled users.
    pub fn from_face(c: &FaceConfig, enrolled_users: usize) -> Self {
        Self {
            target_far: c.target_far,
            enrolled_users: enrolled_users.max(1),
            match_frames: c.match_frames.max(1),
            window_frames: c.window_frames.max(c.match_frames).max(1),
            max_frames: c
                .max_attempt_frames
                .max(c.window_frames)
                .max(c.match_frames)
                .max(1),
            model: c.threshold_model,
        }
    }

    /// Per-comparison FAR for a user with `references` enrolled descriptors over all
    /// profiles (see the module docs).
    pub fn per_comparison_far(&self, references: usize) -> f64 {
        self.target_far * self.match_frames as f64
            / (self.enrolled_users.max(1) as f64
                * self.max_frames.max(1) as f64
                * references.max(1) as f64)
    }

    /// The distance threshold for a user with `references` enrolled descriptors.
    pub fn threshold(&self, references: usize) -> f64 {
        threshold_at(&self.model, self.per_comparison_far(references))
    }
}

/// Why an attempt is not (yet) accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum RejectReason {
    /// The user has no profile.
    NoProfile,
    /// The last frame was unusable.
    BadFrame(RejectKind, String),
    /// The last frame did not match closely enough.
    NoMatch,
    /// Matches so far are fewer than M in the window.
    NeedMoreFrames {
        /// Matching frames in the window.
        matched: usize,
        /// M.
        needed: usize,
    },
    /// The attempt already compared T frames; the frame was not compared.
    FrameLimit {
        /// T.
        limit: usize,
    },
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoProfile => f.write_str("no face enrolled for this user"),
            Self::BadFrame(_, why) => f.write_str(why),
            Self::NoMatch => f.write_str("face does not match the enrolled profiles"),
            Self::NeedMoreFrames { matched, needed } => {
                write!(f, "{matched} of {needed} matching frames so far")
            }
            Self::FrameLimit { limit } => write!(
                f,
                "no match within the {limit} frames one attempt may compare: start a new sign-in attempt"
            ),
        }
    }
}

/// Outcome after one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// True when M of the last K good frames matched.
    pub accepted: bool,
    /// Distance of this frame to the nearest enrolled descriptor over all profiles. NaN when
    /// no comparison was made: an unusable frame, no profile, or past the frame limit.
    pub score: f64,
    /// Threshold in force.
    pub threshold: f64,
    /// Label of the profile holding the nearest descriptor (None when no comparison was made).
    pub profile: Option<String>,
    /// Why not accepted (None when accepted).
    pub reason: Option<RejectReason>,
}

/// M-of-K decision over a stream of frames for one user.
#[derive(Debug, Clone)]
pub struct Decider {
    config: DeciderConfig,
    window: VecDeque<bool>,
    compared: usize,
}

impl Decider {
    /// A fresh decider (start one per sign-in attempt).
    pub fn new(config: DeciderConfig) -> Self {
        Self {
            config,
            window: VecDeque::new(),
            compared: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &DeciderConfig {
        &self.config
    }

    /// Good frames compared so far in this attempt.
    pub fn compared(&self) -> usize {
        self.compared
    }

    /// Forgets the window's matches (another face took over) but not the frames compared:
    /// the attempt's cap T still counts them.
    pub fn clear_window(&mut self) {
        self.window.clear();
    }

    /// Feeds the engine's result for the next frame.
    pub fn push(&mut self, frame: &Result<Analysis, Reject>, profiles: &ProfileSet) -> Decision {
        match frame {
            Ok(a) => self.push_score(
                profiles
                    .best_match(&a.descriptor)
                    .map(|(d, l)| (f64::from(d), l.to_string())),
                profiles.references(),
            ),
            Err(r) => Decision {
                accepted: false,
                score: f64::NAN,
                threshold: self.config.threshold(profiles.references()),
                profile: None,
                reason: Some(RejectReason::BadFrame(r.kind, r.reason.clone())),
            },
        }
    }

    /// Feeds a precomputed best distance (and its profile label) of a good frame, for a user
    /// with `references` enrolled descriptors. Past `max_frames` compared frames the frame is
    /// refused without comparing it (start a new attempt). Private: `references` must be the
    /// profile set's, which [`Decider::push`] guarantees (a smaller R would loosen the threshold).
    fn push_score(&mut self, best: Option<(f64, String)>, references: usize) -> Decision {
        let threshold = self.config.threshold(references);
        let Some((score, label)) = best else {
            return Decision {
                accepted: false,
                score: f64::NAN,
                threshold,
                profile: None,
                reason: Some(RejectReason::NoProfile),
            };
        };
        if self.compared >= self.config.max_frames {
            return Decision {
                accepted: false,
                score: f64::NAN,
                threshold,
                profile: None,
                reason: Some(RejectReason::FrameLimit {
                    limit: self.config.max_frames,
                }),
            };
        }
        self.compared += 1;
        let matched = score <= threshold;
        self.window.push_back(matched);
        while self.window.len() > self.config.window_frames {
            self.window.pop_front();
        }
        let count = self.window.iter().filter(|m| **m).count();
        let accepted = count >= self.config.match_frames;
        let reason = if accepted {
            None
        } else if !matched {
            Some(RejectReason::NoMatch)
        } else {
            Some(RejectReason::NeedMoreFrames {
                matched: count,
                needed: self.config.match_frames,
            })
        };
        Decision {
            accepted,
            score,
            threshold,
            profile: Some(label),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: usize, m: usize, k: usize) -> DeciderConfig {
        DeciderConfig {
            target_far: 1e-5,
            enrolled_users: n,
            match_frames: m,
            window_frames: k,
            max_frames: 10,
            model: ThresholdModel {
                intercept: 0.8,
                slope: 0.08,
                max_threshold: 0.6,
            },
        }
    }

    #[test]
    fn probit_inverts_the_cdf() {
        for p in [1e-9, 1e-5, 0.01, 0.3, 0.5, 0.9, 0.999] {
            assert!((normal_cdf(probit(p)) - p).abs() / p < 1e-6, "p = {p}");
        }
        assert!((probit(0.5)).abs() < 1e-9);
        assert!((probit(0.975) - 1.959964).abs() < 1e-5);
    }

    #[test]
    fn threshold_tightens_with_users_and_profiles() {
        let one = cfg(1, 2, 3).threshold(1);
        let ten = cfg(10, 2, 3).threshold(1);
        let hundred = cfg(100, 2, 3).threshold(1);
        assert!(one > ten && ten > hundred, "{one} {ten} {hundred}");
        assert!(cfg(1, 2, 3).threshold(4) < one);
        // Exactly target·M/(N·T·R): the attempt's frame cap T, not the window K.
        assert!((cfg(10, 2, 4).per_comparison_far(5) - 1e-5 * 2.0 / 500.0).abs() < 1e-18);
        let longer = DeciderConfig {
            max_frames: 20,
            ..cfg(1, 2, 3)
        };
        assert!(
            longer.threshold(1) < one,
            "more frames per attempt must tighten"
        );
        // The cap applies when the target is lax.
        let lax = DeciderConfig {
            target_far: 0.5,
            ..cfg(1, 1, 1)
        };
        assert_eq!(lax.threshold(1), 0.6);
    }

    #[test]
    fn nonsense_settings_never_accept() {
        let nan_target = DeciderConfig {
            target_far: f64::NAN,
            ..cfg(1, 1, 1)
        };
        assert_eq!(nan_target.threshold(1), f64::NEG_INFINITY);
        let mut d = Decider::new(nan_target);
        let r = d.push_score(Some((0.0, "default".to_string())), 1);
        assert!(
            !r.accepted && r.reason == Some(RejectReason::NoMatch),
            "{r:?}"
        );
        let base = cfg(1, 1, 1).model;
        for model in [
            ThresholdModel {
                max_threshold: f64::NAN,
                ..base
            },
            ThresholdModel {
                max_threshold: f64::INFINITY,
                ..base
            },
            ThresholdModel {
                intercept: f64::NAN,
                ..base
            },
            ThresholdModel {
                slope: f64::NAN,
                ..base
            },
            ThresholdModel {
                slope: -0.08,
                ..base
            },
        ] {
            assert_eq!(threshold_at(&model, 1e-7), f64::NEG_INFINITY, "{model:?}");
        }
        assert_eq!(threshold_at(&base, -1.0), f64::NEG_INFINITY);
        assert_eq!(threshold_at(&base, f64::NAN), f64::NEG_INFINITY);
        // A sane model still gives a finite threshold under the cap.
        let t = threshold_at(&base, 1e-7);
        assert!(t.is_finite() && t < base.max_threshold, "{t}");
    }

    #[test]
    fn m_of_k_window() {
        let c = cfg(1, 2, 3);
        let t = c.threshold(1);
        let mut d = Decider::new(c);
        let good = || Some((t - 0.01, "default".to_string()));
        let bad = || Some((t + 0.01, "default".to_string()));
        let r = d.push_score(good(), 1);
        assert!(!r.accepted);
        assert_eq!(
            r.reason,
            Some(RejectReason::NeedMoreFrames {
                matched: 1,
                needed: 2
            })
        );
        assert_eq!(d.push_score(bad(), 1).reason, Some(RejectReason::NoMatch));
        assert!(
            !d.push_score(bad(), 1).accepted,
            "the first match left the window of 3"
        );
        assert!(!d.push_score(good(), 1).accepted);
        let r = d.push_score(good(), 1);
        assert!(r.accepted && r.reason.is_none());
        assert_eq!(r.threshold, t);
        assert_eq!(d.push_score(None, 0).reason, Some(RejectReason::NoProfile));
    }

    #[test]
    fn frames_past_the_attempt_cap_are_refused() {
        let c = DeciderConfig {
            max_frames: 4,
            ..cfg(1, 2, 3)
        };
        let t = c.threshold(1);
        let mut d = Decider::new(c);
        let bad = || Some((t + 0.01, "default".to_string()));
        let good = || Some((t - 0.01, "default".to_string()));
        for _ in 0..4 {
            assert_eq!(d.push_score(bad(), 1).reason, Some(RejectReason::NoMatch));
        }
        assert_eq!(d.compared(), 4);
        // Two matching frames now would satisfy M of K, but the attempt has used its T frames.
        for _ in 0..2 {
            let r = d.push_score(good(), 1);
            assert!(!r.accepted && r.score.is_nan(), "{r:?}");
            assert_eq!(r.reason, Some(RejectReason::FrameLimit { limit: 4 }));
            assert!(
                r.reason
                    .unwrap()
                    .to_string()
                    .contains("new sign-in attempt")
            );
        }
        assert_eq!(d.compared(), 4);
        // A new attempt starts afresh.
        let mut d = Decider::new(c);
        d.push_score(good(), 1);
        assert!(d.push_score(good(), 1).accepted);
    }

    #[test]
    fn from_face_keeps_the_cap_at_least_the_window() {
        let f = FaceConfig {
            max_attempt_frames: 1,
            ..FaceConfig::default()
        };
        let c = DeciderConfig::from_face(&f, 1);
        assert_eq!(c.max_frames, f.window_frames);
        assert_eq!(
            DeciderConfig::from_face(&FaceConfig::default(), 1).max_frames,
            FaceConfig::default().max_attempt_frames
        );
    }
}
