//! Image quality measured on the aligned chip's face region (the eyes-to-mouth box of dlib's
//! template), so the numbers mean the same at every face size.

use crate::chip::GrayImage;
use serde::Serialize;

/// Face region of the 150×150 chip (x0, y0, x1, y1), exclusive ends: outer eye corners to
/// below the nose.
pub const FACE_REGION: [usize; 4] = [37, 32, 113, 122];

/// Quality figures of one aligned face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Quality {
    /// Mean gray level of the face region (0–255).
    pub brightness: f32,
    /// Fraction of face pixels at 250 or above.
    pub saturated: f32,
    /// Standard deviation of the face region's gray levels.
    pub contrast: f32,
    /// Mean absolute 4-neighbour Laplacian divided by the contrast: falls with blur.
    pub sharpness: f32,
    /// Distance between the eye centres in frame pixels.
    pub eye_distance: f32,
}

/// Measures a chip (the eye distance is filled in by the caller).
pub fn measure(chip: &GrayImage) -> Quality {
    let [x0, y0, x1, y1] = FACE_REGION;
    if chip.w < x1 + 1 || chip.h < y1 + 1 {
        return Quality::default();
    }
    let px = |x: usize, y: usize| f32::from(chip.data[y * chip.w + x]);
    let (mut sum, mut sum2, mut sat, mut n) = (0f64, 0f64, 0usize, 0usize);
    let mut lap = 0f64;
    for y in y0..y1 {
        for x in x0..x1 {
            let v = px(x, y);
            sum += f64::from(v);
            sum2 += f64::from(v) * f64::from(v);
            if v >= 250.0 {
                sat += 1;
            }
            let l = 4.0 * v - px(x - 1, y) - px(x + 1, y) - px(x, y - 1) - px(x, y + 1);
            lap += f64::from(l.abs());
            n += 1;
        }
    }
    let n = n.max(1) as f64;
    let mean = sum / n;
    let var = (sum2 / n - mean * mean).max(0.0);
    let contrast = var.sqrt();
    let sharpness = if contrast > 1e-3 {
        lap / n / contrast
    } else {
        0.0
    };
    Quality {
        brightness: mean as f32,
        saturated: (sat as f64 / n) as f32,
        contrast: contrast as f32,
        sharpness: sharpness as f32,
        eye_distance: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chip(f: impl Fn(usize, usize) -> u8) -> GrayImage {
        let mut data = vec![0; 150 * 150];
        for y in 0..150 {
            for x in 0..150 {
                data[y * 150 + x] = f(x, y);
            }
        }
        GrayImage {
            w: 150,
            h: 150,
            data,
        }
    }

    #[test]
    fn brightness_saturation_and_sharpness_move_the_right_way() {
        let dark = measure(&chip(|x, y| ((x * 7 + y * 3) % 20) as u8));
        let bright = measure(&chip(|_, _| 255));
        assert!(dark.brightness < 20.0 && bright.brightness > 250.0);
        assert_eq!(bright.saturated, 1.0);
        assert_eq!(bright.sharpness, 0.0, "a flat patch has no detail");
        let sharp = measure(&chip(
            |x, y| if (x / 2 + y / 2) % 2 == 0 { 200 } else { 50 },
        ));
        let smooth = measure(&chip(|x, _| (50 + x) as u8));
        assert!(
            sharp.sharpness > 5.0 * smooth.sharpness.max(0.01),
            "{sharp:?} vs {smooth:?}"
        );
    }
}
