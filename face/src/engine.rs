//! The engine: models loaded once, one call per frame.

use crate::chip::{self, CHIP_PADDING, CHIP_SIZE, GrayImage};
use crate::config::FaceConfig;
use crate::detect::{Detection, Detector};
use crate::dlib::ShapePredictorModel;
use crate::error::{FaceError, Result};
use crate::frame::{Frame, Gray};
use crate::landmarks::{Rect, ShapePredictor};
use crate::models;
use crate::pose::{self, Pose};
use crate::profile::Descriptor;
use crate::quality::{self, Quality};
use crate::resnet::Resnet;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a good frame yields.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The 128-D representation.
    pub descriptor: Descriptor,
    /// Head orientation.
    pub pose: Pose,
    /// Image quality of the face.
    pub quality: Quality,
    /// dlib's five landmarks in frame pixels.
    pub landmarks: [[f64; 2]; 5],
    /// The detector's box `(x0, y0, x1, y1)`.
    pub face_box: [f32; 4],
}

/// Why a frame cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectKind {
    /// No face found.
    NoFace,
    /// More than one face of similar size.
    SeveralFaces,
    /// The face is too small for a reliable representation.
    FaceTooSmall,
    /// The face is too dark.
    TooDark,
    /// The face is over-exposed.
    OverExposed,
    /// The face is too blurry.
    TooBlurry,
    /// The head is turned or nodded beyond the configured range.
    PoseOutOfRange,
    /// The frame itself is invalid or inference failed.
    BadFrame,
}

/// A rejected frame: the kind, a sentence for the user or the log, and the pose when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Category.
    pub kind: RejectKind,
    /// Human-readable reason.
    pub reason: String,
    /// Head pose, when the landmarks were found.
    pub pose: Option<Pose>,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Reject {
    fn new(kind: RejectKind, reason: impl Into<String>, pose: Option<Pose>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            pose,
        }
    }
}

/// Time spent in each stage of one [`Engine::analyze_timed`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// 16→8-bit conversion.
    pub convert: Duration,
    /// BlazeFace.
    pub detect: Duration,
    /// Landmarks.
    pub landmarks: Duration,
    /// Chip extraction and quality.
    pub align: Duration,
    /// ResNet.
    pub descriptor: Duration,
}

/// Mapping from a BlazeFace box to the rectangle dlib's HOG detector would give, which the
/// landmark model was trained on: centre shift and side, in units of the BlazeFace box width.
/// The mean relation over the five reference frames (dlib's HOG rectangles against BlazeFace's
/// boxes); see `docs/face-engine.md`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RectCalibration {
    /// Horizontal centre shift.
    pub dx: f64,
    /// Vertical centre shift.
    pub dy: f64,
    /// Side of the square.
    pub side: f64,
}

/// The calibration in use.
pub const RECT_CALIBRATION: RectCalibration = RectCalibration {
    dx: 0.029,
    dy: -0.084,
    side: 1.044,
};

/// Landmark passes averaged around the canonical rectangle (see
/// [`ShapePredictor::predict_refined`]).
pub const LANDMARK_PASSES: usize = 5;

/// dlib-style rectangle from a detection.
pub fn rect_from_detection(d: &Detection) -> Rect {
    let w = f64::from(d.width());
    let cx = f64::from(d.bbox[0] + d.bbox[2]) / 2.0 + RECT_CALIBRATION.dx * w;
    let cy = f64::from(d.bbox[1] + d.bbox[3]) / 2.0 + RECT_CALIBRATION.dy * w;
    let half = RECT_CALIBRATION.side * w / 2.0;
    Rect {
        left: (cx - half).round(),
        top: (cy - half).round(),
        right: (cx + half).round(),
        bottom: (cy + half).round(),
    }
}

/// The loaded models and the quality settings.
#[derive(Debug, Clone)]
pub struct Engine {
    detector: Detector,
    landmarks: ShapePredictor,
    resnet: Resnet,
    config: FaceConfig,
}

impl Engine {
    /// Loads every model from `dir` with the default settings.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::with_config(&FaceConfig {
            model_dir: dir.to_path_buf(),
            ..FaceConfig::default()
        })
    }

    /// Loads the models from `config.model_dir` and applies `config`'s gates.
    pub fn with_config(config: &FaceConfig) -> Result<Self> {
        config.validate()?;
        let dir = config.model_dir.as_path();
        // Check all files first so one message names the first missing file.
        for name in models::ALL {
            if !dir.join(name).is_file() {
                return Err(FaceError::ModelMissing {
                    path: dir.join(name),
                    dir: dir.into(),
                });
            }
        }
        let lm_path = dir.join(models::LANDMARKS);
        let lm =
            ShapePredictorModel::parse(&models::read(dir, models::LANDMARKS)?).map_err(|e| {
                FaceError::ModelCorrupt {
                    path: lm_path.clone(),
                    why: e.to_string(),
                }
            })?;
        if lm.parts() != 5 {
            return Err(FaceError::ModelCorrupt {
                path: lm_path,
                why: format!("{} landmarks, expected 5", lm.parts()),
            });
        }
        let mut detector = Detector::from_onnx(
            &models::read(dir, models::BLAZEFACE)?,
            &dir.join(models::BLAZEFACE),
        )?;
        detector.threshold = config.detector_threshold;
        let resnet = Resnet::from_onnx(
            &models::read(dir, models::RESNET)?,
            &dir.join(models::RESNET),
        )?;
        Ok(Self {
            detector,
            landmarks: ShapePredictor::new(lm),
            resnet,
            config: config.clone(),
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &FaceConfig {
        &self.config
    }

    /// The detector (for benchmarks and tools).
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The landmark model.
    pub fn landmark_model(&self) -> &ShapePredictor {
        &self.landmarks
    }

    /// The descriptor network.
    pub fn resnet(&self) -> &Resnet {
        &self.resnet
    }

    /// Finds, checks, aligns and describes the face in `frame`.
    pub fn analyze(&self, frame: &Frame<'_>) -> std::result::Result<Analysis, Reject> {
        self.analyze_timed(frame).0
    }

    /// [`Engine::analyze`] plus the time of each stage.
    pub fn analyze_timed(
        &self,
        frame: &Frame<'_>,
    ) -> (std::result::Result<Analysis, Reject>, Timings) {
        let mut t = Timings::default();
        let r = self.run(frame, &mut t);
        (r, t)
    }

    fn run(&self, frame: &Frame<'_>, t: &mut Timings) -> std::result::Result<Analysis, Reject> {
        let c = &self.config;
        let start = Instant::now();
        let gray = frame.to_gray8();
        let img = Gray {
            w: frame.width(),
            h: frame.height(),
            data: &gray,
        };
        t.convert = start.elapsed();

        let start = Instant::now();
        let faces = self.detector.detect(&img).map_err(|e| {
            Reject::new(
                RejectKind::BadFrame,
                format!("face detector failed: {e}"),
                None,
            )
        })?;
        t.detect = start.elapsed();
        let Some(face) = faces.first() else {
            return Err(Reject::new(
                RejectKind::NoFace,
                "no face found: look at the camera",
                None,
            ));
        };
        if let Some(other) = faces.get(1)
            && other.width() >= c.other_face_ratio * face.width()
        {
            return Err(Reject::new(
                RejectKind::SeveralFaces,
                format!(
                    "{} faces in view: only the person signing in should face the camera",
                    faces.len()
                ),
                None,
            ));
        }

        let start = Instant::now();
        let rect = rect_from_detection(face);
        let pts = self.landmarks.predict_refined(&img, rect, LANDMARK_PASSES);
        let mut landmarks = [[0.0; 2]; 5];
        for (o, p) in landmarks.iter_mut().zip(&pts) {
            *o = *p;
        }
        t.landmarks = start.elapsed();

        let pose = pose::estimate_from_keypoints(&face.keypoints);
        let eye = |a: usize, b: usize| {
            [
                (landmarks[a][0] + landmarks[b][0]) / 2.0,
                (landmarks[a][1] + landmarks[b][1]) / 2.0,
            ]
        };
        let (r, l) = (eye(0, 1), eye(2, 3));
        let eye_distance = ((r[0] - l[0]).powi(2) + (r[1] - l[1]).powi(2)).sqrt() as f32;
        if eye_distance < c.min_eye_distance {
            return Err(Reject::new(
                RejectKind::FaceTooSmall,
                format!(
                    "face too small ({eye_distance:.0} px between the eyes, need {:.0}): come closer to the camera",
                    c.min_eye_distance
                ),
                Some(pose),
            ));
        }
        let start = Instant::now();
        let details = chip::face_chip_details(&landmarks, CHIP_SIZE, CHIP_PADDING);
        let chip = chip::extract_chip(&img, &details, CHIP_SIZE);
        let mut q = quality::measure(&chip);
        q.eye_distance = eye_distance;
        t.align = start.elapsed();
        if q.brightness < c.min_brightness {
            return Err(Reject::new(
                RejectKind::TooDark,
                format!(
                    "face too dark (mean {:.0}, need {:.0}): check the infrared emitter",
                    q.brightness, c.min_brightness
                ),
                Some(pose),
            ));
        }
        if q.brightness > c.max_brightness || q.saturated > c.max_saturated {
            return Err(Reject::new(
                RejectKind::OverExposed,
                format!(
                    "face over-exposed (mean {:.0}, {:.0} % saturated): move a little further from the camera",
                    q.brightness,
                    q.saturated * 100.0
                ),
                Some(pose),
            ));
        }
        // Pose after exposure: on a badly exposed face the keypoints, hence the pose, are
        // unreliable, and the exposure is what the user must fix first.
        if pose.yaw.abs() > c.max_yaw || pose.pitch.abs() > c.max_pitch {
            return Err(Reject::new(
                RejectKind::PoseOutOfRange,
                format!(
                    "head turned too far (yaw {:.0}°, pitch {:.0}°; limit ±{:.0}°/±{:.0}°): face the camera",
                    pose.yaw, pose.pitch, c.max_yaw, c.max_pitch
                ),
                Some(pose),
            ));
        }

        if q.sharpness < c.min_sharpness {
            return Err(Reject::new(
                RejectKind::TooBlurry,
                format!(
                    "face too blurry (sharpness {:.2}, need {:.2}): hold still",
                    q.sharpness, c.min_sharpness
                ),
                Some(pose),
            ));
        }

        let start = Instant::now();
        let d = self.resnet.describe_gray(&chip).map_err(|e| {
            Reject::new(
                RejectKind::BadFrame,
                format!("descriptor network failed: {e}"),
                Some(pose),
            )
        })?;
        t.descriptor = start.elapsed();
        Ok(Analysis {
            descriptor: Descriptor(d),
            pose,
            quality: q,
            landmarks,
            face_box: face.bbox,
        })
    }

    /// The aligned chip for given landmarks (for tools and tests).
    pub fn chip_for(&self, frame: &Frame<'_>, landmarks: &[[f64; 2]; 5]) -> GrayImage {
        let gray = frame.to_gray8();
        let img = Gray {
            w: frame.width(),
            h: frame.height(),
            data: &gray,
        };
        let details = chip::face_chip_details(landmarks, CHIP_SIZE, CHIP_PADDING);
        chip::extract_chip(&img, &details, CHIP_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<Engine>();
        shareable::<crate::Decider>();
    }

    #[test]
    fn rect_from_detection_is_square_and_calibrated() {
        let d = Detection {
            score: 0.9,
            bbox: [100.0, 100.0, 200.0, 200.0],
            keypoints: [[0.0; 2]; 6],
        };
        let r = rect_from_detection(&d);
        assert!((r.width() - r.height()).abs() <= 1.0);
        assert!((r.width() - 104.4).abs() <= 1.0, "{r:?}");
        assert!(
            r.top < 100.0,
            "the HOG-like rectangle sits higher than BlazeFace's box: {r:?}"
        );
    }
}
