//! Head orientation from BlazeFace's six keypoints (eyes, nose tip, mouth centre, ears): a
//! scaled-orthographic fit of a mean head ([`HEAD_MODEL`]).
//!
//! Why not dlib's five points: they lie almost in one plane (eye corners and the nose base), so
//! their pitch signal is second-order and drowned by the spread of face proportions between
//! people (on the NIR set, "up" frames read *less* pitched than "front" frames). The nose tip
//! and the ears lie far in front of and behind the eyes, and BlazeFace finds them on every face
//! it detects. Measured on the NIR set's labelled poses, see `docs/face-accuracy.md`.

use serde::Serialize;

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

/// Fitted pitch (degrees) of a face that looks straight into the camera: the mean of the
/// median readings on the frontal frames of three sets taken with different cameras (NIR
/// "front" −0.5°, Yale −2.9°, Extended Yale B with light within ±25° −9.8°). Reported pitch is
/// relative to it. The camera's height relative to the eyes moves this by a few degrees.
pub const PITCH_ZERO: f64 = -4.4;

/// Mean head in units of the distance between the eye centres, for BlazeFace's six
/// keypoints (subject's right eye, left eye, nose tip, mouth centre, right ear, left ear);
/// x to the image right, y down, z towards the camera, origin between the eyes. Vertical
/// offsets are the medians of the NIR set's frontal frames; depths are anthropometric means
/// adjusted so that its "up" and "down" frames agree between the nose/mouth ratio and the ear
/// line (see `docs/face-engine.md`).
pub const HEAD_MODEL: [[f64; 3]; 6] = [
    [-0.5, 0.0, 0.0],
    [0.5, 0.0, 0.0],
    [0.0, 0.49, 0.5],
    [0.0, 1.0, 0.1],
    [-1.15, 0.29, -0.6],
    [1.15, 0.29, -0.6],
];

fn project(p: &[f64; 6], x: &[f64; 3]) -> [f64; 2] {
    // p = yaw, pitch, roll (radians), scale, tx, ty; R = Rz(roll)·Rx(pitch)·Ry(yaw).
    let (sy, cy) = p[0].sin_cos();
    let (sp, cp) = p[1].sin_cos();
    let (sr, cr) = p[2].sin_cos();
    let x1 = x[0] * cy + x[2] * sy;
    let z1 = -x[0] * sy + x[2] * cy;
    let y2 = x[1] * cp - z1 * sp;
    let x3 = x1 * cr - y2 * sr;
    let y3 = x1 * sr + y2 * cr;
    [p[3] * x3 + p[4], p[3] * y3 + p[5]]
}

/// Head pose from BlazeFace's six keypoints: a scaled-orthographic fit of [`HEAD_MODEL`]
/// (damped Gauss–Newton over yaw, pitch, roll, scale and translation).
pub fn estimate_from_keypoints(k: &[[f32; 2]; 6]) -> Pose {
    let obs: Vec<[f64; 2]> = k
        .iter()
        .map(|q| [f64::from(q[0]), f64::from(q[1])])
        .collect();
    let (dx, dy) = (obs[1][0] - obs[0][0], obs[1][1] - obs[0][1]);
    let iod = dx.hypot(dy);
    if iod.is_nan() || iod <= 1e-6 || obs.iter().any(|q| !q[0].is_finite() || !q[1].is_finite()) {
        return Pose {
            yaw: 90.0,
            pitch: 90.0,
            roll: 0.0,
        };
    }
    let mut p = [
        0.0,
        0.0,
        dy.atan2(dx),
        iod,
        (obs[0][0] + obs[1][0]) / 2.0,
        (obs[0][1] + obs[1][1]) / 2.0,
    ];
    let residuals = |p: &[f64; 6]| -> Vec<f64> {
        HEAD_MODEL
            .iter()
            .zip(&obs)
            .flat_map(|(m, o)| {
                let q = project(p, m);
                [(q[0] - o[0]) / iod, (q[1] - o[1]) / iod]
            })
            .collect()
    };
    let cost = |r: &[f64]| r.iter().map(|v| v * v).sum::<f64>();
    let mut lambda = 1e-3;
    let mut r = residuals(&p);
    for _ in 0..30 {
        // Numeric Jacobian (12 × 6).
        let mut j = vec![[0.0f64; 6]; r.len()];
        for (c, h) in [1e-4, 1e-4, 1e-4, iod * 1e-4, iod * 1e-4, iod * 1e-4]
            .into_iter()
            .enumerate()
        {
            let mut q = p;
            q[c] += h;
            let rq = residuals(&q);
            for (row, (a, b)) in j.iter_mut().zip(rq.iter().zip(&r)) {
                row[c] = (a - b) / h;
            }
        }
        // (JᵀJ + λ·diag) δ = −Jᵀr
        let mut a = [[0.0f64; 6]; 6];
        let mut g = [0.0f64; 6];
        for (row, rv) in j.iter().zip(&r) {
            for u in 0..6 {
                g[u] -= row[u] * rv;
                for v in 0..6 {
                    a[u][v] += row[u] * row[v];
                }
            }
        }
        for (u, row) in a.iter_mut().enumerate() {
            row[u] *= 1.0 + lambda;
        }
        let Some(step) = solve6(a, g) else { break };
        let mut q = p;
        for (x, s) in q.iter_mut().zip(step) {
            *x += s;
        }
        let rq = residuals(&q);
        if cost(&rq) < cost(&r) {
            p = q;
            r = rq;
            lambda = (lambda / 3.0).max(1e-9);
            if step.iter().take(3).all(|s| s.abs() < 1e-6) {
                break;
            }
        } else {
            lambda *= 10.0;
        }
    }
    let deg = |v: f64| (v.to_degrees() as f32).clamp(-90.0, 90.0);
    // Fold the angles into (−90°, 90°]: beyond that the fit has flipped.
    let wrap = |v: f64| {
        (v + std::f64::consts::PI).rem_euclid(2.0 * std::f64::consts::PI) - std::f64::consts::PI
    };
    Pose {
        yaw: deg(wrap(p[0])),
        pitch: deg(wrap(p[1]) - PITCH_ZERO.to_radians()),
        roll: deg(wrap(p[2])),
    }
}

/// Gaussian elimination with partial pivoting for a 6×6 system.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for c in 0..6 {
        let piv = (c..6).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs()))?;
        if a[piv][c].abs() < 1e-12 {
            return None;
        }
        a.swap(c, piv);
        b.swap(c, piv);
        let pivot_row = a[c];
        for r in c + 1..6 {
            let f = a[r][c] / pivot_row[c];
            for (x, p) in a[r][c..].iter_mut().zip(&pivot_row[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; 6];
    for r in (0..6).rev() {
        let s: f64 = (r + 1..6).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypoint_fit_recovers_model_angles() {
        for (yaw, pitch, roll) in [
            (0.0, 0.0, 0.0),
            (12.0, -8.0, 5.0),
            (-30.0, 20.0, -10.0),
            (5.0, 25.0, 0.0),
        ] {
            let p = [
                f64::to_radians(yaw),
                f64::to_radians(pitch),
                f64::to_radians(roll),
                80.0,
                300.0,
                200.0,
            ];
            let mut k = [[0f32; 2]; 6];
            for (o, m) in k.iter_mut().zip(HEAD_MODEL) {
                let q = super::project(&p, &m);
                *o = [q[0] as f32, q[1] as f32];
            }
            let e = estimate_from_keypoints(&k);
            assert!((f64::from(e.yaw) - yaw).abs() < 0.5, "{yaw}: {e:?}");
            assert!(
                (f64::from(e.pitch) - (pitch - PITCH_ZERO)).abs() < 0.5,
                "{pitch}: {e:?}"
            );
            assert!((f64::from(e.roll) - roll).abs() < 0.5, "{roll}: {e:?}");
        }
        assert_eq!(estimate_from_keypoints(&[[1.0, 1.0]; 6]).yaw, 90.0);
    }
}
