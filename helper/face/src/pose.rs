//! Head orientation from the five dlib landmarks (outer and inner eye corners, nose base).
//!
//! A scaled-orthographic model of a mean head, in units of the distance between the eye
//! centres, origin midway between the eyes, x to the image right, y down, z towards the camera:
//! eye centres at (±½, 0, 0), the nose base (subnasale) at (0, [`NOSE_DROP`], [`NOSE_DEPTH`]).
//! - roll: the angle of the line through the two eye centres;
//! - yaw: turning the head by θ moves the nose base sideways by `depth·sin θ` while the eye
//!   distance shrinks by `cos θ`, so θ = atan(offset / depth);
//! - pitch: nodding by φ moves the nose base to `drop·cos φ − depth·sin φ` below the eyes.
//!
//! The drop is dlib's own frontal template (0.775 eye distances); the depth (0.30 ≈ 19 mm for a
//! 63 mm eye distance) is an anthropometric mean. The estimate is approximate (a few degrees)
//! and meant for the ±15° gate, not for measurement.

use serde::Serialize;

/// Vertical distance of the nose base below the eye line in a frontal face, in eye distances
/// (from dlib's 5-point template).
pub const NOSE_DROP: f64 = 0.775;
/// Depth of the nose base in front of the eye corners, in eye distances.
pub const NOSE_DEPTH: f64 = 0.30;

/// Head orientation in degrees. Positive yaw: the face turns towards the image's right;
/// positive pitch: the face looks up; positive roll: clockwise in the image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Pose {
    /// Left/right turn.
    pub yaw: f32,
    /// Up/down nod.
    pub pitch: f32,
    /// In-plane tilt.
    pub roll: f32,
}

/// Estimates the pose from dlib's five points (image-right eye outer/inner, image-left eye
/// outer/inner, nose base).
pub fn estimate(p: &[[f64; 2]; 5]) -> Pose {
    let right = [(p[0][0] + p[1][0]) / 2.0, (p[0][1] + p[1][1]) / 2.0];
    let left = [(p[2][0] + p[3][0]) / 2.0, (p[2][1] + p[3][1]) / 2.0];
    let (dx, dy) = (right[0] - left[0], right[1] - left[1]);
    let d = (dx * dx + dy * dy).sqrt();
    if !(d > 1e-6) {
        return Pose {
            yaw: 90.0,
            pitch: 90.0,
            roll: 0.0,
        };
    }
    let roll = dy.atan2(dx);
    let mid = [(right[0] + left[0]) / 2.0, (right[1] + left[1]) / 2.0];
    // Nose base in the de-rotated frame, in units of the (projected) eye distance.
    let (s, c) = roll.sin_cos();
    let (nx, ny) = (p[4][0] - mid[0], p[4][1] - mid[1]);
    let u = (c * nx + s * ny) / d;
    let v = (-s * nx + c * ny) / d;
    let yaw = (u / NOSE_DEPTH).atan();
    // The eye distance shrinks by cos(yaw): undo that before reading the pitch.
    let v = v * yaw.cos();
    let r = (NOSE_DROP * NOSE_DROP + NOSE_DEPTH * NOSE_DEPTH).sqrt();
    let alpha = NOSE_DEPTH.atan2(NOSE_DROP);
    // v = R·cos(φ + α): the root nearest zero. Looking down past α (≈ 21°) saturates at −α,
    // which is outside the gate anyway.
    let pitch = (v / r).clamp(-1.0, 1.0).acos() - alpha;
    Pose {
        yaw: yaw.to_degrees() as f32,
        pitch: pitch.to_degrees() as f32,
        roll: roll.to_degrees() as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Projects the model head at (yaw, pitch) with scale 100 and roll 0.
    fn project(yaw: f64, pitch: f64) -> [[f64; 2]; 5] {
        let pts3 = [
            [0.7, 0.0, -0.1],
            [0.3, 0.0, 0.0],
            [-0.7, 0.0, -0.1],
            [-0.3, 0.0, 0.0],
            [0.0, NOSE_DROP, NOSE_DEPTH],
        ];
        let (sy, cy) = yaw.to_radians().sin_cos();
        let (sp, cp) = pitch.to_radians().sin_cos();
        let mut out = [[0.0; 2]; 5];
        for (o, p) in out.iter_mut().zip(pts3) {
            // yaw about y: x' = x cos + z sin
            let x = p[0] * cy + p[2] * sy;
            let z = -p[0] * sy + p[2] * cy;
            // pitch about x (looking up moves the nose base up): y' = y cos − z sin
            let y = p[1] * cp - z * sp;
            *o = [320.0 + 100.0 * x, 240.0 + 100.0 * y];
        }
        out
    }

    #[test]
    fn recovers_model_angles() {
        for (yaw, pitch) in [
            (0.0, 0.0),
            (10.0, 0.0),
            (-20.0, 0.0),
            (0.0, 12.0),
            (0.0, -12.0),
            (8.0, -8.0),
        ] {
            let p = estimate(&project(yaw, pitch));
            assert!((f64::from(p.yaw) - yaw).abs() < 2.5, "yaw {yaw}: {p:?}");
            assert!(
                (f64::from(p.pitch) - pitch).abs() < 3.0,
                "pitch {pitch}: {p:?}"
            );
            assert!(p.roll.abs() < 0.5);
        }
    }

    #[test]
    fn roll_is_the_eye_line_angle() {
        let mut p = project(0.0, 0.0);
        let a = 20f64.to_radians();
        for q in &mut p {
            let (x, y) = (q[0] - 320.0, q[1] - 240.0);
            *q = [
                320.0 + x * a.cos() - y * a.sin(),
                240.0 + x * a.sin() + y * a.cos(),
            ];
        }
        let pose = estimate(&p);
        assert!(
            (pose.roll - 20.0).abs() < 0.5 && pose.yaw.abs() < 1.0 && pose.pitch.abs() < 1.5,
            "{pose:?}"
        );
    }

    #[test]
    fn degenerate_points_are_out_of_range() {
        let p = estimate(&[[1.0, 1.0]; 5]);
        assert!(p.yaw.abs() >= 90.0);
    }
}
