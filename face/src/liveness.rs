//! Presentation-attack detection from the frames of one attempt: a photograph or a screen is
//! a flat sheet, a head is not.
//!
//! Cues with a physical reason, measured between pairs of consecutive good frames of the same
//! face track (see `docs/face-accuracy.md` for how each separates live from attack):
//!
//! - **Surroundings** ([`PairCues::context`]): a sheet carries its printed surroundings with
//!   the face; a head moves in front of a room that stays still. When the face moves, the ring
//!   of pixels around it is compared with the previous frame twice, once in place and once
//!   moved the way the face moved; whichever explains the new frame better says which.
//! - **Non-rigid change** ([`PairCues::nonrigid`]): the aligned face chip of a sheet stays the
//!   same picture however the sheet is moved (alignment removes the motion; what is left is a
//!   smooth warp and lighting); a living face blinks, moves its mouth and brows, and turns in
//!   3D, which changes parts of the chip and not others. So a face that moved noticeably with
//!   an unchanged chip is a sheet moved rigidly, and a changed chip at moderate motion is life
//!   (fast motion blurs a sheet too, so it does not count).
//! - **Parallax** ([`PairCues::parallax`]): on a sheet the nose lies in the plane of the eyes,
//!   so its place along the eye axis (as a fraction of the eye distance) survives any way the
//!   sheet is turned, shifted or tilted; on a head the nose stands ~2 cm in front of the eyes
//!   and a turn of the head moves it along the axis. Measured and reported, **not used** in the
//!   verdict: with dlib's five landmarks its noise (0.01–0.03 eye distances) is as large as
//!   what the small turns of a person at a screen produce, and bent prints reach it too.
//!
//! A real infrared camera adds the emitter's lit/unlit alternation ([`EmitterCue`]); the
//! visible-light sets we have cannot measure it, so it is a hook, not a cue, for now.
//!
//! The verdict needs positive evidence of life within the attempt: no cue means "not live".

use crate::chip::{self, CHIP_PADDING, CHIP_SIZE};
use crate::engine::Analysis;
use crate::frame::{Frame, Gray};
use crate::landmarks::similarity;
use crate::profile::Descriptor;
use crate::quality::FACE_REGION;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Liveness settings (`[face.liveness]`). None of them can turn liveness off: validation
/// keeps every threshold inside a range where the cues still refuse a still photograph and a
/// sheet moved by hand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LivenessConfig {
    /// Smallest face motion between two frames, in eye distances at the ring, for the
    /// surroundings cue to say anything. Default `0.04`.
    pub min_motion: f64,
    /// Surroundings score (−1 still room … +1 moves with the face) at or above which a pair
    /// counts as a sheet. Default `0.2`.
    pub context_attack: f64,
    /// Surroundings score at or below which a pair counts as a head moving in a still room.
    /// Default `-0.2`.
    pub context_live: f64,
    /// Face motion (eye distances) from which the aligned chip must change: a head that
    /// moves this much turns and shows it, a sheet does not. Default `0.3`.
    pub rigid_motion: f64,
    /// Non-rigid change below which a pair that moved at least `rigid_motion` counts as a
    /// sheet moved rigidly. Default `0.08`.
    pub rigid_nonrigid: f64,
    /// Non-rigid change at or above which a pair counts as a living face. Default `0.15`.
    pub nonrigid_live: f64,
    /// Above this face motion (eye distances) a non-rigid change is not counted as life:
    /// motion blur and perspective change a fast-moved sheet too. Default `1.0`.
    pub max_live_motion: f64,
    /// Pairs with live evidence needed before the attempt is live. Default `2`.
    pub live_pairs: usize,
    /// Pairs with sheet evidence that refuse the attempt. Default `2`.
    pub attack_pairs: usize,
    /// Largest descriptor distance between consecutive good frames of one face track; a
    /// larger jump means another face and restarts the liveness evidence. Default `0.45`.
    pub max_track_jump: f32,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            min_motion: 0.04,
            context_attack: 0.2,
            context_live: -0.2,
            rigid_motion: 0.3,
            rigid_nonrigid: 0.08,
            nonrigid_live: 0.15,
            max_live_motion: 1.0,
            live_pairs: 2,
            attack_pairs: 2,
            max_track_jump: 0.45,
        }
    }
}

impl LivenessConfig {
    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let in_range = |k: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!(
                    "face.liveness.{k} = {v} must be within {lo}..={hi}"
                ))
            }
        };
        in_range("min_motion", self.min_motion, 0.01, 0.2)?;
        in_range("context_attack", self.context_attack, 0.0, 0.5)?;
        in_range("context_live", self.context_live, -0.9, -0.05)?;
        in_range("rigid_motion", self.rigid_motion, 0.1, 1.0)?;
        in_range("rigid_nonrigid", self.rigid_nonrigid, 0.03, 0.15)?;
        in_range(
            "nonrigid_live",
            self.nonrigid_live,
            self.rigid_nonrigid,
            1.0,
        )?;
        in_range(
            "max_live_motion",
            self.max_live_motion,
            self.rigid_motion,
            2.0,
        )?;
        in_range("live_pairs", self.live_pairs as f64, 1.0, 100.0)?;
        in_range("attack_pairs", self.attack_pairs as f64, 1.0, 5.0)?;
        in_range("max_track_jump", f64::from(self.max_track_jump), 0.1, 0.6)?;
        Ok(())
    }
}

/// The emitter's lit/unlit alternation of an infrared camera: a face lit by the camera's own
/// emitter is much brighter in lit frames than in unlit ones, a screen (which emits no
/// infrared of its own at 850 nm, or glows the same in both) is not; a print reflects the
/// emitter like skin and needs the other cues. The v4l2 backend fills this in when the camera
/// exposes both kinds of frame; no dataset we hold has them, so nothing reads it yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmitterCue {
    /// Mean face brightness (0–255) with the emitter on.
    pub lit: f32,
    /// Mean face brightness with the emitter off, from the frame just before or after.
    pub unlit: f32,
}

/// What one pair of consecutive good frames of a face track shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairCues {
    /// How far the face moved at its surroundings, in eye distances.
    pub motion: f64,
    /// Surroundings score: −1 the surroundings stayed (a head in a room), +1 they moved with
    /// the face (a sheet); NaN when the face hardly moved or the surroundings are featureless.
    pub context: f64,
    /// Change of the aligned chip that no shift of its parts explains (0 the same picture).
    pub nonrigid: f64,
    /// Change of the nose's place along the eye axis, in eye distances.
    pub parallax: f64,
}

/// Radii (eye distances from the eye midpoint) of the surroundings ring: beyond the head and
/// its hair at eye level and above (a head is ~2.3 eye distances wide, its top ~1.8 above
/// the eyes).
const RING_RADII: [f64; 4] = [1.9, 2.2, 2.5, 2.8];
/// Angles of the ring (degrees, 0 = the subject's side of the image right, 90 = up): the sides
/// and the top; below the face the neck and shoulders move with the body, not the head.
const RING_ANGLES: (i32, i32, i32) = (-20, 200, 8);
/// Half side of a ring patch in eye distances: averaging over it tolerates landmark noise.
const RING_PATCH: f64 = 0.12;
/// Smallest mean absolute deviation (gray levels) of the ring's patches for the surroundings
/// cue: a featureless wall cannot show whether it moved.
const RING_MIN_CONTRAST: f64 = 2.0;
/// Block side (chip pixels) and search radius of the non-rigid measure.
const BLOCK: usize = 12;
const SEARCH: isize = 2;
/// Blocks flatter than this (std in units of the region's std) are not compared: their
/// correlation is noise.
const BLOCK_MIN_STD: f32 = 0.25;

/// What is kept of one good frame (no image: a few hundred numbers).
#[derive(Clone)]
struct Observation {
    landmarks: [[f64; 2]; 5],
    eye_distance: f64,
    /// The chip's face region, zero mean and unit standard deviation: a face image kept
    /// across frames, so zeroized when dropped, like descriptors.
    chip: Zeroizing<Vec<f32>>,
    /// Ring patch centres (frame pixels) and their mean gray.
    ring: Vec<([f64; 2], f64)>,
    descriptor: Descriptor,
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observation(<redacted>)")
    }
}

/// Summed-area table of a gray image (u64: no overflow at any accepted frame size).
struct Integral {
    w: usize,
    h: usize,
    sum: Vec<u64>,
}

impl Integral {
    fn new(img: &Gray<'_>) -> Self {
        let (w, h) = (img.w, img.h);
        let mut sum = vec![0u64; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0u64;
            for x in 0..w {
                row += u64::from(img.data[y * w + x]);
                sum[(y + 1) * (w + 1) + x + 1] = sum[y * (w + 1) + x + 1] + row;
            }
        }
        Self { w, h, sum }
    }

    /// Mean over the square of half side `half` around `p`; None when it leaves the image.
    fn mean(&self, p: [f64; 2], half: f64) -> Option<f64> {
        let x0 = (p[0] - half).round();
        let y0 = (p[1] - half).round();
        let x1 = (p[0] + half).round() + 1.0;
        let y1 = (p[1] + half).round() + 1.0;
        if x0 < 0.0 || y0 < 0.0 || x1 > self.w as f64 || y1 > self.h as f64 || x1 <= x0 || y1 <= y0
        {
            return None;
        }
        let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
        let s = |x: usize, y: usize| self.sum[y * (self.w + 1) + x];
        let total = s(x1, y1) + s(x0, y0) - s(x0, y1) - s(x1, y0);
        Some(total as f64 / ((x1 - x0) * (y1 - y0)) as f64)
    }
}

fn mid(a: [f64; 2], b: [f64; 2]) -> [f64; 2] {
    [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0]
}

fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Eye midpoint, unit eye axis (image-left eye → image-right eye) and eye distance.
fn eye_frame(l: &[[f64; 2]; 5]) -> ([f64; 2], [f64; 2], f64) {
    let (right, left) = (mid(l[0], l[1]), mid(l[2], l[3]));
    let e = dist(right, left).max(1.0);
    (
        mid(right, left),
        [(right[0] - left[0]) / e, (right[1] - left[1]) / e],
        e,
    )
}

fn ring_points(l: &[[f64; 2]; 5]) -> Vec<[f64; 2]> {
    let (o, u, e) = eye_frame(l);
    // "Up" in the face: the eye axis turned a quarter against image y (which points down).
    let up = [u[1], -u[0]];
    let (a0, a1, step) = RING_ANGLES;
    let mut pts = Vec::new();
    for r in RING_RADII {
        let mut a = a0;
        while a <= a1 {
            let (s, c) = f64::from(a).to_radians().sin_cos();
            pts.push([
                o[0] + r * e * (c * u[0] + s * up[0]),
                o[1] + r * e * (c * u[1] + s * up[1]),
            ]);
            a += step;
        }
    }
    pts
}

/// The chip's face region, normalised to zero mean and unit standard deviation.
fn normalised_chip(img: &Gray<'_>, l: &[[f64; 2]; 5]) -> Vec<f32> {
    let details = chip::face_chip_details(l, CHIP_SIZE, CHIP_PADDING);
    let c = chip::extract_chip(img, &details, CHIP_SIZE);
    let [x0, y0, x1, y1] = FACE_REGION;
    let mut v: Vec<f32> = Vec::with_capacity((x1 - x0) * (y1 - y0));
    for y in y0..y1 {
        for x in x0..x1 {
            v.push(f32::from(c.data.get(y * c.w + x).copied().unwrap_or(0)));
        }
    }
    let n = v.len().max(1) as f32;
    let mean = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n)
        .sqrt()
        .max(1e-3);
    v.iter_mut().for_each(|x| *x = (*x - mean) / sd);
    v
}

/// Mean over the textured blocks of the face region of the smallest `1 − correlation` over
/// shifts of ±2 px: what local motion cannot explain. A sheet's aligned chip changes by a
/// smooth warp and lighting (small), a face's by a blink, a mouth or a turn (large, local).
fn nonrigid(a: &[f32], b: &[f32]) -> f64 {
    let [x0, y0, x1, y1] = FACE_REGION;
    let (w, h) = (x1 - x0, y1 - y0);
    if a.len() != w * h || b.len() != w * h {
        return f64::NAN;
    }
    let mut scores = Vec::new();
    let margin = SEARCH as usize;
    let mut by = margin;
    while by + BLOCK + margin <= h {
        let mut bx = margin;
        while bx + BLOCK + margin <= w {
            let block = |img: &[f32], dx: isize, dy: isize| -> Vec<f32> {
                let mut v = Vec::with_capacity(BLOCK * BLOCK);
                for y in 0..BLOCK {
                    let yy = (by + y) as isize + dy;
                    for x in 0..BLOCK {
                        let xx = (bx + x) as isize + dx;
                        v.push(img[yy as usize * w + xx as usize]);
                    }
                }
                v
            };
            let stats = |v: &[f32]| {
                let n = v.len() as f32;
                let m = v.iter().sum::<f32>() / n;
                let sd = (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / n).sqrt();
                (m, sd)
            };
            let ba = block(a, 0, 0);
            let (ma, sa) = stats(&ba);
            if sa >= BLOCK_MIN_STD {
                let mut best = f32::INFINITY;
                for dy in -SEARCH..=SEARCH {
                    for dx in -SEARCH..=SEARCH {
                        let bb = block(b, dx, dy);
                        let (mb, sb) = stats(&bb);
                        if sb < 1e-3 {
                            continue;
                        }
                        let cov = ba
                            .iter()
                            .zip(&bb)
                            .map(|(p, q)| (p - ma) * (q - mb))
                            .sum::<f32>()
                            / ba.len() as f32;
                        best = best.min(1.0 - cov / (sa * sb));
                    }
                }
                if best.is_finite() {
                    scores.push(f64::from(best));
                }
            }
            bx += BLOCK;
        }
        by += BLOCK;
    }
    if scores.is_empty() {
        return f64::NAN;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

/// Where the nose sits along the eye axis, from the image-left eye centre, in eye
/// distances. On a flat sheet this ratio survives any turn, shift, scaling and tilt about the
/// eye axis or across it (they keep ratios along the axis); on a head the nose stands ~2 cm
/// in front of the eyes, so a turn of the head moves it along the axis.
fn nose_along_eyes(l: &[[f64; 2]; 5]) -> f64 {
    let (o, u, e) = eye_frame(l);
    let left = [o[0] - u[0] * e / 2.0, o[1] - u[1] * e / 2.0];
    ((l[4][0] - left[0]) * u[0] + (l[4][1] - left[1]) * u[1]) / e
}

/// Nose parallax between two landmark sets: the change of [`nose_along_eyes`].
fn parallax(a: &[[f64; 2]; 5], b: &[[f64; 2]; 5]) -> f64 {
    (nose_along_eyes(a) - nose_along_eyes(b)).abs()
}

impl Observation {
    fn new(img: &Gray<'_>, integral: &Integral, a: &Analysis) -> Self {
        let (_, _, e) = eye_frame(&a.landmarks);
        let half = RING_PATCH * e;
        let ring = ring_points(&a.landmarks)
            .into_iter()
            .filter_map(|p| integral.mean(p, half).map(|v| (p, v)))
            .collect();
        Self {
            landmarks: a.landmarks,
            eye_distance: e,
            chip: Zeroizing::new(normalised_chip(img, &a.landmarks)),
            ring,
            descriptor: a.descriptor.clone(),
        }
    }
}

/// The cues between an earlier observation and the current frame (`integral` is the current
/// frame's).
fn pair_cues(prev: &Observation, cur: &Observation, integral: &Integral) -> PairCues {
    let e = (prev.eye_distance + cur.eye_distance) / 2.0;
    // The face's motion as a similarity of its five landmarks.
    let (m, t) = similarity(&prev.landmarks, &cur.landmarks);
    let moved = |p: [f64; 2]| {
        [
            m[0][0] * p[0] + m[0][1] * p[1] + t[0],
            m[1][0] * p[0] + m[1][1] * p[1] + t[1],
        ]
    };
    let half = RING_PATCH * e;
    let (mut motion, mut n) = (0.0, 0usize);
    let mut triples = Vec::with_capacity(prev.ring.len());
    for &(p, v) in &prev.ring {
        let q = moved(p);
        if let (Some(still), Some(with)) = (integral.mean(p, half), integral.mean(q, half)) {
            triples.push((v, still, with));
            motion += dist(p, q);
            n += 1;
        }
    }
    let motion = if n > 0 { motion / n as f64 / e } else { 0.0 };
    let context = context_score(&triples, motion);
    PairCues {
        motion,
        context,
        nonrigid: nonrigid(&prev.chip, &cur.chip),
        parallax: parallax(&prev.landmarks, &cur.landmarks),
    }
}

/// Surroundings score from (earlier value, current value in place, current value moved with
/// the face) of each ring patch; NaN when the face hardly moved or the ring is featureless.
fn context_score(triples: &[(f64, f64, f64)], motion: f64) -> f64 {
    if triples.len() < 12 || motion <= 0.0 {
        return f64::NAN;
    }
    let n = triples.len() as f64;
    let mean = |f: fn(&(f64, f64, f64)) -> f64| triples.iter().map(f).sum::<f64>() / n;
    let (m0, m1, m2) = (mean(|t| t.0), mean(|t| t.1), mean(|t| t.2));
    let contrast = triples.iter().map(|t| (t.0 - m0).abs()).sum::<f64>() / n;
    if contrast < RING_MIN_CONTRAST {
        return f64::NAN;
    }
    // Mean-removed errors: a change of exposure moves every patch alike.
    let still = triples
        .iter()
        .map(|t| ((t.1 - m1) - (t.0 - m0)).abs())
        .sum::<f64>();
    let with = triples
        .iter()
        .map(|t| ((t.2 - m2) - (t.0 - m0)).abs())
        .sum::<f64>();
    if still + with <= 0.0 {
        return f64::NAN;
    }
    (still - with) / (still + with)
}

/// Why an attempt is refused as not live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotLive {
    /// The face moved like a flat sheet (photo, screen): its surroundings moved with it, or
    /// it moved without its picture changing.
    Sheet {
        /// Pairs of frames that showed it.
        pairs: usize,
    },
    /// No blink, expression, turn or still room behind a moving head within the attempt.
    NoSignOfLife {
        /// Pairs of frames compared.
        pairs: usize,
    },
}

impl std::fmt::Display for NotLive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sheet { pairs } => write!(
                f,
                "the face moved like a photo or a screen in {pairs} pairs of frames: show your own face"
            ),
            Self::NoSignOfLife { pairs } => write!(
                f,
                "no sign of a live face in {pairs} pairs of frames: blink or turn your head slightly"
            ),
        }
    }
}

/// Counts of what the pairs of one face track showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Evidence {
    /// Pairs of consecutive good frames compared.
    pub pairs: usize,
    /// Pairs where the face moved and its surroundings stayed.
    pub still_surroundings: usize,
    /// Pairs with a non-rigid change of the face at moderate motion.
    pub nonrigid: usize,
    /// Pairs with either live sign and no sheet sign.
    pub live: usize,
    /// Pairs where the surroundings moved with the face.
    pub carried: usize,
    /// Pairs where the face moved without its chip changing.
    pub rigid: usize,
    /// Pairs with either sheet sign.
    pub sheet: usize,
    /// Times the track restarted because another face appeared.
    pub restarts: usize,
}

/// The liveness state after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Enough live pairs and no sheet evidence.
    Live,
    /// A presentation attack.
    NotLive(NotLive),
    /// Not enough pairs yet.
    Undecided,
}

/// Liveness over the good frames of one attempt (start one per attempt).
#[derive(Debug, Clone)]
pub struct Liveness {
    config: LivenessConfig,
    last: Option<Observation>,
    evidence: Evidence,
}

impl Liveness {
    /// A fresh tracker.
    pub fn new(config: LivenessConfig) -> Self {
        Self {
            config,
            last: None,
            evidence: Evidence::default(),
        }
    }

    /// The counts so far (of the current face track).
    pub fn evidence(&self) -> Evidence {
        self.evidence
    }

    /// Feeds a good frame and its analysis; returns the cues against the previous good frame
    /// of the same track (None for a track's first frame).
    pub fn observe(&mut self, frame: &Frame<'_>, a: &Analysis) -> Option<PairCues> {
        let gray = frame.to_gray8();
        let img = Gray {
            w: frame.width(),
            h: frame.height(),
            data: &gray,
        };
        let integral = Integral::new(&img);
        let cur = Observation::new(&img, &integral, a);
        let prev = self.last.replace(cur);
        let (prev, cur) = (prev?, self.last.as_ref()?);
        if prev.descriptor.distance(&cur.descriptor) > self.config.max_track_jump {
            // Another face: what the previous one showed says nothing about this one.
            self.evidence = Evidence {
                restarts: self.evidence.restarts + 1,
                ..Evidence::default()
            };
            return None;
        }
        let cues = pair_cues(&prev, cur, &integral);
        self.count(&cues);
        Some(cues)
    }

    /// Whether a pair shows a sheet sign (surroundings carried, or rigid motion).
    pub fn is_sheet(&self, c: &PairCues) -> bool {
        self.signs(c).2 || self.signs(c).3
    }

    /// (still surroundings, non-rigid change, surroundings carried, rigid motion).
    fn signs(&self, c: &PairCues) -> (bool, bool, bool, bool) {
        let cfg = &self.config;
        let measured = c.motion >= cfg.min_motion && c.context.is_finite();
        (
            measured && c.context <= cfg.context_live,
            c.motion <= cfg.max_live_motion && c.nonrigid >= cfg.nonrigid_live,
            measured && c.context >= cfg.context_attack,
            c.motion >= cfg.rigid_motion && c.nonrigid < cfg.rigid_nonrigid,
        )
    }

    fn count(&mut self, c: &PairCues) {
        let (still, nonrigid, carried, rigid) = self.signs(c);
        let sheet = carried || rigid;
        let e = &mut self.evidence;
        e.pairs += 1;
        e.still_surroundings += usize::from(still);
        e.nonrigid += usize::from(nonrigid);
        e.carried += usize::from(carried);
        e.rigid += usize::from(rigid);
        e.sheet += usize::from(sheet);
        e.live += usize::from(!sheet && (still || nonrigid));
    }

    /// The verdict so far: sheet evidence refuses at once, live evidence needs
    /// `live_pairs` pairs.
    pub fn verdict(&self) -> Verdict {
        let e = &self.evidence;
        if e.sheet >= self.config.attack_pairs {
            Verdict::NotLive(NotLive::Sheet { pairs: e.sheet })
        } else if e.live >= self.config.live_pairs {
            Verdict::Live
        } else {
            Verdict::Undecided
        }
    }

    /// The verdict when the attempt can take no more frames: undecided becomes "no sign of
    /// life".
    pub fn final_verdict(&self) -> Verdict {
        match self.verdict() {
            Verdict::Undecided => Verdict::NotLive(NotLive::NoSignOfLife {
                pairs: self.evidence.pairs,
            }),
            v => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3D head's five landmarks (eye corners on the eye plane z = 0, nose base 0.35 eye
    /// distances in front), turned by `yaw` degrees and projected orthographically at 60 px
    /// per eye distance.
    fn head(yaw: f64) -> [[f64; 2]; 5] {
        let pts = [
            [0.75, 0.0, -0.1],
            [0.25, 0.0, 0.0],
            [-0.75, 0.0, -0.1],
            [-0.25, 0.0, 0.0],
            [0.0, 0.6, 0.35],
        ];
        let (s, c) = yaw.to_radians().sin_cos();
        let mut out = [[0.0; 2]; 5];
        for (o, p) in out.iter_mut().zip(pts) {
            *o = [300.0 + 60.0 * (c * p[0] + s * p[2]), 200.0 + 60.0 * p[1]];
        }
        out
    }

    /// The same points as a flat sheet moved by `frame = A·p + t` (no shear).
    fn sheet(l: &[[f64; 2]; 5], angle: f64, sx: f64, sy: f64) -> [[f64; 2]; 5] {
        let (s, c) = angle.to_radians().sin_cos();
        l.map(|p| {
            let (x, y) = (sx * (p[0] - 300.0), sy * (p[1] - 200.0));
            [320.0 + c * x - s * y, 210.0 + s * x + c * y]
        })
    }

    #[test]
    fn a_sheet_keeps_the_nose_in_place_a_turned_head_does_not() {
        let front = head(0.0);
        for (angle, sx, sy) in [(10.0, 1.0, 1.0), (-7.0, 0.8, 1.0), (3.0, 1.1, 0.85)] {
            let moved = sheet(&front, angle, sx, sy);
            assert!(parallax(&front, &moved) < 1e-9, "{angle} {sx} {sy}");
        }
        let turned = head(8.0);
        let p = parallax(&front, &turned);
        assert!(p > 0.04, "{p}");
    }

    #[test]
    fn surroundings_score_tells_still_from_carried() {
        let base: Vec<f64> = (0..40).map(|i| f64::from(i % 7) * 10.0).collect();
        let shifted: Vec<f64> = base.iter().rev().copied().collect();
        let still: Vec<_> = base
            .iter()
            .zip(&shifted)
            .map(|(&b, &s)| (b, b, s))
            .collect();
        let carried: Vec<_> = base
            .iter()
            .zip(&shifted)
            .map(|(&b, &s)| (b, s, b))
            .collect();
        assert!((context_score(&still, 0.2) + 1.0).abs() < 1e-9);
        assert!((context_score(&carried, 0.2) - 1.0).abs() < 1e-9);
        let flat: Vec<_> = base.iter().map(|_| (90.0, 91.0, 89.0)).collect();
        assert!(
            context_score(&flat, 0.2).is_nan(),
            "a featureless ring says nothing"
        );
        assert!(context_score(&still[..5], 0.2).is_nan(), "too few patches");
    }

    #[test]
    fn nonrigid_is_zero_for_the_same_picture_and_grows_with_a_local_change() {
        let [x0, y0, x1, y1] = FACE_REGION;
        let (w, h) = (x1 - x0, y1 - y0);
        let a: Vec<f32> = (0..w * h)
            .map(|i| ((i % w) as f32 * 0.7).sin() + ((i / w) as f32 * 0.45).cos())
            .collect();
        assert!(nonrigid(&a, &a) < 1e-4);
        // Shifted by one pixel: explained by the local search.
        let shifted: Vec<f32> = (0..w * h)
            .map(|i| a[(i / w) * w + (i % w).saturating_sub(1)])
            .collect();
        assert!(nonrigid(&a, &shifted) < 0.02, "{}", nonrigid(&a, &shifted));
        // A third of the region replaced by something else.
        let mut changed = a.clone();
        for (i, v) in changed.iter_mut().enumerate().take(w * h / 3) {
            *v = ((i * 7919) % 13) as f32 / 6.0 - 1.0;
        }
        assert!(nonrigid(&a, &changed) > 0.2, "{}", nonrigid(&a, &changed));
        assert!(nonrigid(&a, &a[1..]).is_nan(), "wrong size");
    }

    #[test]
    fn no_setting_turns_liveness_off() {
        LivenessConfig::default().validate().unwrap();
        for bad in [
            LivenessConfig {
                nonrigid_live: 10.0,
                ..LivenessConfig::default()
            },
            LivenessConfig {
                max_live_motion: f64::NAN,
                ..LivenessConfig::default()
            },
            LivenessConfig {
                live_pairs: 0,
                ..LivenessConfig::default()
            },
            LivenessConfig {
                rigid_nonrigid: 0.0,
                ..LivenessConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let c: crate::FaceConfig =
            serde_json::from_str(r#"{"liveness": {"live_pairs": 3}}"#).unwrap();
        assert_eq!(c.liveness.live_pairs, 3);
        assert!(
            serde_json::from_str::<crate::FaceConfig>(r#"{"liveness": {"enabled": false}}"#)
                .is_err()
        );
        let c: crate::FaceConfig =
            serde_json::from_str(r#"{"liveness": {"live_pairs": 0}}"#).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("face.liveness.live_pairs"), "{e}");
    }
}
