//! Face alignment: dlib's `get_face_chip_details(shape, 150, 0.25)` and
//! `extract_image_chip` (bilinear, with dlib's 5×5 Gaussian pyramid when the face is more than
//! twice the chip's size), ported so the chip the network sees matches dlib's.

use crate::frame::Gray;
use crate::landmarks::similarity;

/// Side of the chip the ResNet takes.
pub const CHIP_SIZE: usize = 150;
/// dlib's padding for face recognition chips.
pub const CHIP_PADDING: f64 = 0.25;

/// dlib's mean 5-point face template (unit square), in dlib's landmark order.
const TEMPLATE: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// Where the chip lies in the image: dlib's `chip_details` (a rotated rectangle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipDetails {
    /// Rectangle `(left, top, right, bottom)` before rotation.
    pub rect: [f64; 4],
    /// Rotation (radians) about the rectangle's centre.
    pub angle: f64,
    /// Image pixels per chip pixel.
    pub scale: f64,
}

/// `get_face_chip_details(det, size, padding)` for a 5-point shape.
pub fn face_chip_details(parts: &[[f64; 2]; 5], size: usize, padding: f64) -> ChipDetails {
    let s = size as f64;
    let from: Vec<[f64; 2]> = TEMPLATE
        .iter()
        .map(|p| {
            [
                (padding + p[0]) / (2.0 * padding + 1.0) * s,
                (padding + p[1]) / (2.0 * padding + 1.0) * s,
            ]
        })
        .collect();
    let (m, t) = similarity(&from, parts);
    // tform.get_m() * (1, 0)
    let (px, py) = (m[0][0], m[1][0]);
    let angle = py.atan2(px);
    let scale = (px * px + py * py).sqrt();
    let c = [
        m[0][0] * s / 2.0 + m[0][1] * s / 2.0 + t[0],
        m[1][0] * s / 2.0 + m[1][1] * s / 2.0 + t[1],
    ];
    // centered_drect(p, w, h): width and height minus one, halved around p.
    let half = (s * scale - 1.0) / 2.0;
    ChipDetails {
        rect: [c[0] - half, c[1] - half, c[0] + half, c[1] + half],
        angle,
        scale,
    }
}

fn rotate(center: [f64; 2], p: [f64; 2], angle: f64) -> [f64; 2] {
    let (s, c) = angle.sin_cos();
    let (x, y) = (p[0] - center[0], p[1] - center[1]);
    [c * x - s * y + center[0], s * x + c * y + center[1]]
}

fn rect_area(r: &[f64; 4]) -> f64 {
    let (w, h) = (r[2] - r[0], r[3] - r[1]);
    if w < 0.0 || h < 0.0 { 0.0 } else { w * h }
}

fn rect_down(r: &[f64; 4]) -> [f64; 4] {
    [
        r[0] / 2.0 - 1.25,
        r[1] / 2.0 - 0.75,
        r[2] / 2.0 - 1.25,
        r[3] / 2.0 - 0.75,
    ]
}

/// An owned 8-bit gray image.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    /// Pixels, row-major.
    pub data: Vec<u8>,
}

impl GrayImage {
    /// A borrowed view.
    pub fn view(&self) -> Gray<'_> {
        Gray {
            w: self.w,
            h: self.h,
            data: &self.data,
        }
    }
}

/// dlib's `pyramid_down<2>`: 5×5 binomial filter, keep every other row and column.
pub fn pyramid_down(img: &Gray<'_>) -> GrayImage {
    if img.w <= 8 || img.h <= 8 {
        return GrayImage {
            w: 0,
            h: 0,
            data: Vec::new(),
        };
    }
    let tw = (img.w - 3) / 2;
    let (dw, dh) = (tw, (img.h - 3) / 2);
    let mut temp = vec![0u32; img.h * tw];
    for r in 0..img.h {
        let row = &img.data[r * img.w..(r + 1) * img.w];
        for c in 0..tw {
            let o = 2 * c;
            let p = |i: usize| u32::from(row[o + i]);
            temp[r * tw + c] = p(0) + 4 * p(1) + 6 * p(2) + 4 * p(3) + p(4);
        }
    }
    let mut down = vec![0u8; dw * dh];
    let mut dr = 0;
    let mut r = 2;
    while r + 2 < img.h && dr < dh {
        for c in 0..tw {
            let t = |rr: usize| temp[rr * tw + c];
            let v = t(r - 2) + 4 * t(r - 1) + 6 * t(r) + 4 * t(r + 1) + t(r + 2);
            down[dr * dw + c] = (v / 256).min(255) as u8;
        }
        dr += 1;
        r += 2;
    }
    GrayImage {
        w: dw,
        h: dh,
        data: down,
    }
}

/// `extract_image_chip(img, details, chip)` into a `size × size` gray chip (pixels outside the
/// image are black, like dlib's).
pub fn extract_chip(img: &Gray<'_>, d: &ChipDetails, size: usize) -> GrayImage {
    let chip_area = (size * size) as f64;
    let r = d.rect;
    let cent = [(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0];
    let corners = [[r[0], r[1]], [r[2], r[1]], [r[0], r[3]], [r[2], r[3]]];
    // Bounding box of the rotated rectangle, grown by the pyramid's border, inside the image.
    let mut grow = 2.0;
    let mut rd = rect_down(&r);
    while rect_area(&rd) > chip_area {
        rd = rect_down(&rd);
        grow = grow * 2.0 + 2.0;
    }
    let rot: Vec<[f64; 2]> = corners.iter().map(|&p| rotate(cent, p, d.angle)).collect();
    let minx = rot.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min) - grow;
    let maxx = rot.iter().map(|p| p[0]).fold(f64::NEG_INFINITY, f64::max) + grow;
    let miny = rot.iter().map(|p| p[1]).fold(f64::INFINITY, f64::min) - grow;
    let maxy = rot.iter().map(|p| p[1]).fold(f64::NEG_INFINITY, f64::max) + grow;
    let rnd = |v: f64| (v + 0.5).floor();
    let bl = rnd(minx.max(0.0)).max(0.0);
    let bt = rnd(miny.max(0.0)).max(0.0);
    let br = rnd(maxx.min(img.w as f64 - 1.0)).min(img.w as f64 - 1.0);
    let bb = rnd(maxy.min(img.h as f64 - 1.0)).min(img.h as f64 - 1.0);
    let mut out = GrayImage {
        w: size,
        h: size,
        data: vec![0; size * size],
    };
    if !(br >= bl && bb >= bt) {
        return out;
    }
    let (bx, by) = (bl as usize, bt as usize);
    let (bw, bh) = (br as usize - bx + 1, bb as usize - by + 1);
    let mut sub = GrayImage {
        w: bw,
        h: bh,
        data: Vec::with_capacity(bw * bh),
    };
    for y in by..by + bh {
        sub.data
            .extend_from_slice(&img.data[y * img.w + bx..y * img.w + bx + bw]);
    }
    // Pick the pyramid level.
    let mut rect = [r[0] - bl, r[1] - bt, r[2] - bl, r[3] - bt];
    let mut level: i32 = -1;
    while rect_area(&rect_down(&rect)) > chip_area {
        level += 1;
        rect = rect_down(&rect);
    }
    let mut src = sub;
    for _ in 0..=level {
        src = pyramid_down(&src.view());
    }
    // Affine map chip (0,0),(size-1,0),(0,size-1) → rotated rect corners.
    let c2 = [(rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0];
    let tl = rotate(c2, [rect[0], rect[1]], d.angle);
    let tr = rotate(c2, [rect[2], rect[1]], d.angle);
    let blc = rotate(c2, [rect[0], rect[3]], d.angle);
    let n = (size - 1).max(1) as f64;
    let ux = [(tr[0] - tl[0]) / n, (tr[1] - tl[1]) / n];
    let uy = [(blc[0] - tl[0]) / n, (blc[1] - tl[1]) / n];
    let v = src.view();
    for row in 0..size {
        for col in 0..size {
            let (cf, rf) = (col as f64, row as f64);
            let x = tl[0] + cf * ux[0] + rf * uy[0];
            let y = tl[1] + cf * ux[1] + rf * uy[1];
            out.data[row * size + col] = bilinear(&v, x, y);
        }
    }
    out
}

/// dlib's `interpolate_bilinear`: black outside, the value truncated to 8 bits.
#[inline]
fn bilinear(img: &Gray<'_>, x: f64, y: f64) -> u8 {
    let left = crate::num::floor(x);
    let top = crate::num::floor(y);
    if left < 0.0 || top < 0.0 || left + 1.0 >= img.w as f64 || top + 1.0 >= img.h as f64 {
        return 0;
    }
    let (l, t) = (left as usize, top as usize);
    let (fx, fy) = (x - left, y - top);
    let p = |xx: usize, yy: usize| f64::from(img.data[yy * img.w + xx]);
    let v = (1.0 - fy) * ((1.0 - fx) * p(l, t) + fx * p(l + 1, t))
        + fy * ((1.0 - fx) * p(l, t + 1) + fx * p(l + 1, t + 1));
    v.clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_maps_to_itself() {
        let s = CHIP_SIZE as f64;
        let p = CHIP_PADDING;
        let mut parts = [[0.0; 2]; 5];
        for (o, t) in parts.iter_mut().zip(TEMPLATE) {
            *o = [
                (p + t[0]) / (2.0 * p + 1.0) * s,
                (p + t[1]) / (2.0 * p + 1.0) * s,
            ];
        }
        let d = face_chip_details(&parts, CHIP_SIZE, CHIP_PADDING);
        assert!(d.angle.abs() < 1e-9 && (d.scale - 1.0).abs() < 1e-9);
        assert!((d.rect[0] - 0.5).abs() < 1e-9, "{:?}", d.rect);
    }

    #[test]
    fn chip_of_a_tiny_image_is_black_not_a_panic() {
        let img = GrayImage {
            w: 1,
            h: 1,
            data: vec![200],
        };
        let d = ChipDetails {
            rect: [-100.0, -100.0, 100.0, 100.0],
            angle: 0.3,
            scale: 1.3,
        };
        let chip = extract_chip(&img.view(), &d, CHIP_SIZE);
        assert!(chip.data.iter().all(|&v| v == 0));
    }

    #[test]
    fn pyramid_down_halves_and_smooths() {
        let img = GrayImage {
            w: 20,
            h: 12,
            data: (0..240).map(|i| (i % 2 * 255) as u8).collect(),
        };
        let d = pyramid_down(&img.view());
        assert_eq!((d.w, d.h), (8, 4));
        // A one-pixel checker pattern averages out to mid-gray.
        assert!(
            d.data.iter().all(|&v| (120..=135).contains(&v)),
            "{:?}",
            d.data
        );
    }
}
