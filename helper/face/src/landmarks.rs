//! dlib's `shape_predictor` (Kazemi & Sullivan 2014) run natively, bit for bit where it
//! matters: the same float order, the same pixel rounding, the same similarity fit.

use crate::dlib::ShapePredictorModel;
use crate::frame::Gray;

/// A dlib-style rectangle (inclusive `right`/`bottom`, like `dlib::rectangle`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left column.
    pub left: f64,
    /// Top row.
    pub top: f64,
    /// Right column.
    pub right: f64,
    /// Bottom row.
    pub bottom: f64,
}

impl Rect {
    /// Width as `right - left`.
    pub fn width(&self) -> f64 {
        self.right - self.left
    }
    /// Height as `bottom - top`.
    pub fn height(&self) -> f64 {
        self.bottom - self.top
    }
}

/// Least-squares similarity transform `to ≈ s·R·from + t` (2-D closed form of Umeyama's
/// method, which dlib's `find_similarity_transform` computes with an SVD). Returns
/// `([[a, -b], [b, a]], t)`.
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> ([[f64; 2]; 2], [f64; 2]) {
    let n = from.len().min(to.len()).max(1) as f64;
    let mut mf = [0.0; 2];
    let mut mt = [0.0; 2];
    for (f, t) in from.iter().zip(to) {
        mf[0] += f[0];
        mf[1] += f[1];
        mt[0] += t[0];
        mt[1] += t[1];
    }
    for v in [&mut mf, &mut mt] {
        v[0] /= n;
        v[1] /= n;
    }
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (px, py) = (f[0] - mf[0], f[1] - mf[1]);
        let (qx, qy) = (t[0] - mt[0], t[1] - mt[1]);
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
        norm += px * px + py * py;
    }
    let (a, b) = if norm > 0.0 { (dot / norm, cross / norm) } else { (1.0, 0.0) };
    let m = [[a, -b], [b, a]];
    let t = [mt[0] - (a * mf[0] - b * mf[1]), mt[1] - (b * mf[0] + a * mf[1])];
    (m, t)
}

/// dlib's `point` conversion: round half up.
#[inline]
fn round(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// The landmark model, ready to run.
#[derive(Debug, Clone)]
pub struct ShapePredictor {
    model: ShapePredictorModel,
}

impl ShapePredictor {
    /// Wraps a parsed model.
    pub fn new(model: ShapePredictorModel) -> Self {
        Self { model }
    }

    /// Number of landmarks the model gives.
    pub fn parts(&self) -> usize {
        self.model.parts()
    }

    /// Runs the cascade on `img` inside `rect`. Returns sub-pixel points (dlib rounds them
    /// to integers; the pipeline keeps the fraction).
    pub fn predict(&self, img: &Gray<'_>, rect: Rect) -> Vec<[f64; 2]> {
        let m = &self.model;
        let n = m.parts();
        let mut shape: Vec<f32> = m.initial_shape.clone();
        let mean: Vec<[f64; 2]> =
            (0..n).map(|i| [f64::from(m.initial_shape[2 * i]), f64::from(m.initial_shape[2 * i + 1])]).collect();
        let (w, h) = (rect.width(), rect.height());
        let to_img = |x: f64, y: f64| [rect.left + x * w, rect.top + y * h];
        let mut feats: Vec<f32> = Vec::new();
        for level in 0..m.forests.len() {
            // Similarity from the mean shape to the current shape (dlib casts it to float).
            let cur: Vec<[f64; 2]> = (0..n).map(|i| [f64::from(shape[2 * i]), f64::from(shape[2 * i + 1])]).collect();
            let (tm, _) = similarity(&mean, &cur);
            let tf = [[tm[0][0] as f32, tm[0][1] as f32], [tm[1][0] as f32, tm[1][1] as f32]];
            let anchors = &m.anchor_idx[level];
            let deltas = &m.deltas[level];
            feats.clear();
            feats.extend(anchors.iter().zip(deltas).map(|(&a, d)| {
                let a = a as usize;
                let x = tf[0][0] * d[0] + tf[0][1] * d[1] + shape[2 * a];
                let y = tf[1][0] * d[0] + tf[1][1] * d[1] + shape[2 * a + 1];
                let p = to_img(f64::from(x), f64::from(y));
                img.get(round(p[0]), round(p[1])).map_or(0.0, f32::from)
            }));
            for tree in &m.forests[level] {
                let mut i = 0usize;
                while i < tree.splits.len() {
                    let s = tree.splits[i];
                    let d = feats[s.idx1 as usize] - feats[s.idx2 as usize];
                    i = if d > s.thresh { 2 * i + 1 } else { 2 * i + 2 };
                }
                if let Some(leaf) = tree.leaves.get(i - tree.splits.len()) {
                    for (s, l) in shape.iter_mut().zip(leaf) {
                        *s += *l;
                    }
                }
            }
        }
        (0..n).map(|i| to_img(f64::from(shape[2 * i]), f64::from(shape[2 * i + 1]))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_recovers_a_known_transform() {
        let from = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]];
        let (s, th) = (2.5f64, 0.3f64);
        let (a, b) = (s * th.cos(), s * th.sin());
        let to: Vec<[f64; 2]> = from.iter().map(|p| [a * p[0] - b * p[1] + 7.0, b * p[0] + a * p[1] - 3.0]).collect();
        let (m, t) = similarity(&from, &to);
        assert!((m[0][0] - a).abs() < 1e-12 && (m[1][0] - b).abs() < 1e-12);
        assert!((t[0] - 7.0).abs() < 1e-12 && (t[1] + 3.0).abs() < 1e-12);
    }
}
