//! Face detection: MediaPipe's BlazeFace (front model, 128×128 input) run by tract.
//!
//! A frame of any size is letterboxed into a square (padded with its border's mean gray) and
//! box-filtered down to 128×128. When nothing is found and the face may be cut by the frame's
//! edges (tight crops, faces filling a small frame), a second pass pads the frame by a further
//! 30 % on every side.

use crate::error::{FaceError, Result};
use crate::frame::Gray;
use std::path::Path;
use tract_onnx::prelude::*;

const SIZE: usize = 128;

/// One detected face, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Confidence 0..1.
    pub score: f32,
    /// `(x0, y0, x1, y1)`.
    pub bbox: [f32; 4],
    /// BlazeFace's six keypoints: right eye, left eye, nose tip, mouth, right ear, left ear
    /// (the subject's right and left).
    pub keypoints: [[f32; 2]; 6],
}

impl Detection {
    /// Box width.
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }
    /// Box height.
    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }
    fn iou(&self, o: &Detection) -> f32 {
        let x0 = self.bbox[0].max(o.bbox[0]);
        let y0 = self.bbox[1].max(o.bbox[1]);
        let x1 = self.bbox[2].min(o.bbox[2]);
        let y1 = self.bbox[3].min(o.bbox[3]);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.width() * self.height() + o.width() * o.height() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// The BlazeFace detector.
#[derive(Debug, Clone)]
pub struct Detector {
    plan: std::sync::Arc<TypedSimplePlan>,
    /// Output index of (scores, boxes) for the 16×16×2 and 8×8×6 anchor grids.
    heads: [(usize, usize); 2],
    /// Minimum score.
    pub threshold: f32,
}

fn infer(why: impl std::fmt::Display) -> FaceError {
    FaceError::Inference {
        stage: "face detector",
        why: why.to_string(),
    }
}

/// Anchor grids of the front model: (cells per row, anchors per cell).
const GRIDS: [(usize, usize); 2] = [(16, 2), (8, 6)];

impl Detector {
    /// Loads the (fixed) BlazeFace front ONNX.
    pub fn from_onnx(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |why: String| FaceError::ModelCorrupt {
            path: path.into(),
            why,
        };
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| corrupt(format!("{e:#}")))?
            .with_input_fact(0, f32::fact([1, SIZE, SIZE, 3]).into())
            .map_err(|e| corrupt(format!("{e:#}")))?
            .into_optimized()
            .map_err(|e| corrupt(format!("{e:#}")))?;
        // Identify the heads by their shapes: [1, n, 1] scores and [1, n, 16] boxes.
        let mut scores = Vec::new();
        let mut boxes = Vec::new();
        for i in 0..model.outputs.len() {
            let fact = model
                .output_fact(i)
                .map_err(|e| corrupt(format!("{e:#}")))?;
            let shape: Vec<usize> = fact
                .shape
                .as_concrete()
                .map(|s| s.to_vec())
                .unwrap_or_default();
            let n: usize = shape.iter().product();
            match shape.last() {
                Some(16) => boxes.push((n / 16, i)),
                Some(_) => scores.push((n, i)),
                None => {}
            }
        }
        let find =
            |v: &[(usize, usize)], n: usize| v.iter().find(|(c, _)| *c == n).map(|(_, i)| *i);
        let mut heads = [(0, 0); 2];
        for (h, (cells, per)) in heads.iter_mut().zip(GRIDS) {
            let n = cells * cells * per;
            match (find(&scores, n), find(&boxes, n)) {
                (Some(s), Some(b)) => *h = (s, b),
                _ => {
                    return Err(corrupt(format!(
                        "no BlazeFace output head with {n} anchors"
                    )));
                }
            }
        }
        let plan = model
            .into_runnable()
            .map_err(|e| corrupt(format!("{e:#}")))?;
        Ok(Self {
            plan,
            heads,
            threshold: 0.5,
        })
    }

    /// Every face in the frame, largest first.
    pub fn detect(&self, img: &Gray<'_>) -> Result<Vec<Detection>> {
        let first = self.detect_padded(img, 0.0)?;
        if !first.is_empty() {
            return Ok(first);
        }
        self.detect_padded(img, 0.3)
    }

    /// One detector pass with `pad` of the longer side added around the frame.
    pub fn detect_padded(&self, img: &Gray<'_>, pad: f32) -> Result<Vec<Detection>> {
        let (input, side, ox, oy) = letterbox(img, pad);
        let tensor = Tensor::from_shape(&[1, SIZE, SIZE, 3], &input).map_err(infer)?;
        let out = self.plan.run(tvec!(tensor.into())).map_err(infer)?;
        let mut found = Vec::new();
        for ((cells, per), (si, bi)) in GRIDS.into_iter().zip(self.heads) {
            let (Some(s), Some(b)) = (out.get(si), out.get(bi)) else {
                return Err(infer("missing output"));
            };
            let s = s.to_plain_array_view::<f32>().map_err(infer)?;
            let b = b.to_plain_array_view::<f32>().map_err(infer)?;
            let s: Vec<f32> = s.iter().copied().collect();
            let b: Vec<f32> = b.iter().copied().collect();
            decode(&s, &b, cells, per, self.threshold, &mut found);
        }
        let mut faces = weighted_nms(found, 0.3);
        // Anchor space (0..1 of the square canvas) → frame pixels.
        for f in &mut faces {
            let map = |p: [f32; 2]| [p[0] * side - ox, p[1] * side - oy];
            let a = map([f.bbox[0], f.bbox[1]]);
            let c = map([f.bbox[2], f.bbox[3]]);
            f.bbox = [a[0], a[1], c[0], c[1]];
            for k in &mut f.keypoints {
                *k = map(*k);
            }
        }
        faces.sort_by(|a, b| (b.width() * b.height()).total_cmp(&(a.width() * a.height())));
        Ok(faces)
    }
}

/// Letterboxes `img` into a square canvas `side` pixels wide (longer side × (1 + 2·pad)),
/// box-filters it to 128×128 and scales to [-1, 1], NHWC with the gray in all three channels.
/// Returns the input, the canvas side and the frame's offset inside the canvas.
pub fn letterbox(img: &Gray<'_>, pad: f32) -> (Vec<f32>, f32, f32, f32) {
    let long = img.w.max(img.h) as f32;
    let side = long * (1.0 + 2.0 * pad);
    let ox = (side - img.w as f32) / 2.0;
    let oy = (side - img.h as f32) / 2.0;
    let fill = border_mean(img);
    let step = side / SIZE as f32;
    let k = (step.ceil() as usize).clamp(1, 8);
    // Sample positions along each axis, precomputed once: k per output pixel, None outside
    // the frame (filled with `fill`).
    let taps = |n: usize, off: f32| -> Vec<Option<usize>> {
        (0..SIZE * k)
            .map(|i| {
                let v = ((i / k) as f32 + ((i % k) as f32 + 0.5) / k as f32) * step - off;
                let f = v.floor();
                (f >= 0.0 && (f as usize) < n).then_some(f as usize)
            })
            .collect()
    };
    let xs = taps(img.w, ox);
    let ys = taps(img.h, oy);
    // In-frame sample columns of each output column, as a range into one index list: the
    // inner loop then sums bytes as integers (exact, so the order does not matter) and the
    // samples outside the frame are added as `fill` once per output pixel.
    let mut xidx: Vec<usize> = Vec::with_capacity(SIZE * k);
    let mut cols: Vec<(usize, usize)> = Vec::with_capacity(SIZE);
    for c in 0..SIZE {
        let from = xidx.len();
        xidx.extend(xs[c * k..(c + 1) * k].iter().flatten());
        cols.push((from, xidx.len()));
    }
    let scale = 1.0 / ((k * k) as f32 * 127.5);
    let mut input = Vec::with_capacity(SIZE * SIZE * 3);
    let mut sums = vec![0u32; SIZE];
    for r in 0..SIZE {
        sums.fill(0);
        let mut ny = 0usize;
        for &y in ys[r * k..(r + 1) * k].iter().flatten() {
            ny += 1;
            let row = &img.data[y * img.w..(y + 1) * img.w];
            for (sum, &(a, b)) in sums.iter_mut().zip(&cols) {
                *sum += xidx[a..b].iter().map(|&x| u32::from(row[x])).sum::<u32>();
            }
        }
        for (&sum, &(a, b)) in sums.iter().zip(&cols) {
            let outside = k * k - ny * (b - a);
            let acc = sum as f32 + outside as f32 * fill;
            let v = acc * scale - 1.0;
            input.extend_from_slice(&[v, v, v]);
        }
    }
    (input, side, ox, oy)
}

fn border_mean(img: &Gray<'_>) -> f32 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for x in 0..img.w {
        sum += u64::from(img.data[x]) + u64::from(img.data[(img.h - 1) * img.w + x]);
        n += 2;
    }
    for y in 0..img.h {
        sum += u64::from(img.data[y * img.w]) + u64::from(img.data[y * img.w + img.w - 1]);
        n += 2;
    }
    if n == 0 { 0.0 } else { sum as f32 / n as f32 }
}

fn decode(
    scores: &[f32],
    boxes: &[f32],
    cells: usize,
    per: usize,
    threshold: f32,
    out: &mut Vec<Detection>,
) {
    let scale = 1.0 / SIZE as f32;
    for cy in 0..cells {
        for cx in 0..cells {
            let ax = (cx as f32 + 0.5) / cells as f32;
            let ay = (cy as f32 + 0.5) / cells as f32;
            for a in 0..per {
                let idx = (cy * cells + cx) * per + a;
                let Some(&logit) = scores.get(idx) else {
                    return;
                };
                let score = 1.0 / (1.0 + (-logit.clamp(-80.0, 80.0)).exp());
                if score < threshold {
                    continue;
                }
                let Some(b) = boxes.get(idx * 16..idx * 16 + 16) else {
                    return;
                };
                let (x, y) = (ax + b[0] * scale, ay + b[1] * scale);
                let (w, h) = (b[2] * scale, b[3] * scale);
                let mut keypoints = [[0f32; 2]; 6];
                for (k, kp) in keypoints.iter_mut().enumerate() {
                    *kp = [ax + b[4 + 2 * k] * scale, ay + b[5 + 2 * k] * scale];
                }
                out.push(Detection {
                    score,
                    bbox: [x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0],
                    keypoints,
                });
            }
        }
    }
}

/// MediaPipe's weighted non-maximum suppression: overlapping boxes are averaged, weighted by
/// score.
fn weighted_nms(mut dets: Vec<Detection>, iou: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    let mut used = vec![false; dets.len()];
    for i in 0..dets.len() {
        if used[i] {
            continue;
        }
        let mut acc = [0f32; 16];
        let mut wsum = 0.0;
        for j in i..dets.len() {
            if used[j] || dets[i].iou(&dets[j]) < iou {
                continue;
            }
            used[j] = true;
            let d = &dets[j];
            let w = d.score;
            for (k, v) in d
                .bbox
                .iter()
                .chain(d.keypoints.iter().flatten())
                .enumerate()
            {
                acc[k] += v * w;
            }
            wsum += w;
        }
        if wsum <= 0.0 {
            continue;
        }
        let mut d = dets[i];
        for (k, v) in d
            .bbox
            .iter_mut()
            .chain(d.keypoints.iter_mut().flatten())
            .enumerate()
        {
            *v = acc[k] / wsum;
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_merges_overlaps_and_keeps_separate_faces() {
        let d = |x: f32, s: f32| Detection {
            score: s,
            bbox: [x, 0.0, x + 10.0, 10.0],
            keypoints: [[x, 0.0]; 6],
        };
        let out = weighted_nms(vec![d(0.0, 0.9), d(1.0, 0.6), d(50.0, 0.8)], 0.3);
        assert_eq!(out.len(), 2);
        assert!(
            out[0].bbox[0] > 0.0 && out[0].bbox[0] < 1.0,
            "weighted average of 0 and 1"
        );
        assert_eq!(out[1].bbox[0], 50.0);
    }

    /// The box filter, sample by sample in float, as first written.
    fn letterbox_naive(img: &Gray<'_>, pad: f32) -> Vec<f32> {
        let long = img.w.max(img.h) as f32;
        let side = long * (1.0 + 2.0 * pad);
        let (ox, oy) = ((side - img.w as f32) / 2.0, (side - img.h as f32) / 2.0);
        let fill = border_mean(img);
        let step = side / SIZE as f32;
        let k = (step.ceil() as usize).clamp(1, 8);
        let at = |i: usize, off: f32, n: usize| {
            let v = ((i / k) as f32 + ((i % k) as f32 + 0.5) / k as f32) * step - off;
            let f = v.floor();
            (f >= 0.0 && (f as usize) < n).then_some(f as usize)
        };
        let mut out = Vec::new();
        for r in 0..SIZE {
            for c in 0..SIZE {
                let mut acc = 0.0f32;
                for i in r * k..(r + 1) * k {
                    for j in c * k..(c + 1) * k {
                        acc += match (at(i, oy, img.h), at(j, ox, img.w)) {
                            (Some(y), Some(x)) => f32::from(img.data[y * img.w + x]),
                            _ => fill,
                        };
                    }
                }
                out.push(acc / ((k * k) as f32 * 127.5) - 1.0);
            }
        }
        out
    }

    #[test]
    fn letterbox_is_the_box_filter() {
        for (w, h, pad) in [
            (640, 480, 0.1),
            (480, 640, 0.0),
            (333, 200, 0.25),
            (100, 100, 0.0),
        ] {
            let data: Vec<u8> = (0..w * h)
                .map(|i| ((i * 7919 + i / w * 13) % 256) as u8)
                .collect();
            let img = Gray { w, h, data: &data };
            let (got, ..) = letterbox(&img, pad);
            let want = letterbox_naive(&img, pad);
            assert_eq!(got.len(), 3 * want.len());
            for (i, (g, e)) in got.chunks_exact(3).zip(&want).enumerate() {
                assert!(
                    g.iter().all(|v| (v - e).abs() < 1e-5),
                    "{w}x{h} pixel {i}: {g:?} vs {e}"
                );
            }
        }
    }

    #[test]
    fn letterbox_centres_the_frame() {
        let data = vec![255u8; 64 * 32];
        let img = Gray {
            w: 64,
            h: 32,
            data: &data,
        };
        let (input, side, ox, oy) = letterbox(&img, 0.0);
        assert_eq!((side, ox, oy), (64.0, 0.0, 16.0));
        // Middle row is the white frame; the border mean is white too, so all is white.
        assert!(input.iter().all(|&v| (v - 1.0).abs() < 1e-6));
    }
}
