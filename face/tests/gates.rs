//! Quality gates on frames derived from the reference frames. Needs the converted models (see
//! tests/reference.rs).

// Integration tests: unwrapping is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aloha_face::{Engine, Frame, RejectKind, models};
use std::path::Path;

fn gray(name: &str) -> (usize, usize, Vec<u8>) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/reference")
        .join(format!("{name}.png"));
    let f = Frame::load(&p).unwrap();
    (f.width(), f.height(), f.to_gray8().into_owned())
}

fn engine() -> Engine {
    Engine::load(&models::dev_dir()).unwrap()
}

fn kind(e: &Engine, w: usize, h: usize, px: Vec<u8>) -> Result<(), RejectKind> {
    e.analyze(&Frame::gray8(w, h, px).unwrap())
        .map(|_| ())
        .map_err(|r| {
            println!("{:?}: {}", r.kind, r.reason);
            r.kind
        })
}

#[test]
fn exposure_gates() {
    let e = engine();
    let (w, h, px) = gray("obama");
    assert_eq!(kind(&e, w, h, px.clone()), Ok(()));
    let dark: Vec<u8> = px.iter().map(|&v| (f32::from(v) * 0.15) as u8).collect();
    assert_eq!(kind(&e, w, h, dark), Err(RejectKind::TooDark));
    let bright: Vec<u8> = px
        .iter()
        .map(|&v| (f32::from(v) * 2.2).min(255.0) as u8)
        .collect();
    assert_eq!(kind(&e, w, h, bright), Err(RejectKind::OverExposed));
}

#[test]
fn blur_gate() {
    let e = engine();
    let (w, h, px) = gray("obama");
    // A 15×15 box blur, applied twice: the face stays findable but loses its detail.
    let mut img = px;
    for _ in 0..2 {
        let mut out = img.clone();
        let r = 7i64;
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let (mut s, mut n) = (0u32, 0u32);
                for dy in -r..=r {
                    for dx in -r..=r {
                        let (xx, yy) = (x + dx, y + dy);
                        if xx >= 0 && yy >= 0 && xx < w as i64 && yy < h as i64 {
                            s += u32::from(img[yy as usize * w + xx as usize]);
                            n += 1;
                        }
                    }
                }
                out[y as usize * w + x as usize] = (s / n) as u8;
            }
        }
        img = out;
    }
    assert_eq!(kind(&e, w, h, img), Err(RejectKind::TooBlurry));
}

#[test]
fn two_faces_side_by_side_are_ambiguous_one_small_one_is_not() {
    let e = engine();
    let (w, h, a) = gray("obama");
    let (_, _, b) = gray("hopper");
    // Left half: the 320 columns around obama's face; right half: around hopper's.
    let half = |px: &[u8], cx: usize| -> Vec<Vec<u8>> {
        (0..h)
            .map(|y| px[y * w + cx - 160..y * w + cx + 160].to_vec())
            .collect()
    };
    let (l, r) = (half(&a, 322), half(&b, 328));
    let both: Vec<u8> = (0..h)
        .flat_map(|y| l[y].iter().chain(&r[y]).copied().collect::<Vec<_>>())
        .collect();
    assert_eq!(kind(&e, w, h, both), Err(RejectKind::SeveralFaces));
    // The same, with the right face shrunk to a third: the larger face is used.
    let mut small = vec![0u8; w * h];
    for y in 0..h {
        small[y * w..y * w + 320].copy_from_slice(&l[y]);
    }
    for y in 0..h / 3 {
        for x in 0..320 / 3 {
            small[(y + 150) * w + 420 + x] = r[y * 3][x * 3];
        }
    }
    assert_eq!(kind(&e, w, h, small), Ok(()));
}

#[test]
fn dark_ten_bit_frame_is_too_dark() {
    let e = engine();
    let (w, h, px) = gray("obama");
    let ten = |scale: f32| -> Vec<u16> {
        px.iter()
            .map(|&v| ((f32::from(v) * scale) as u16) << 2)
            .collect()
    };
    // Well exposed at 10 bits: accepted.
    let ok = Frame::gray16(w, h, 10, ten(1.0)).unwrap();
    assert!(e.analyze(&ok).is_ok());
    // The dark frame's brightest sample is far below 1023; a depth guessed from the pixels
    // (8 bits) would make it look 4× brighter and pass the gate.
    let dark = ten(0.15);
    assert!(dark.iter().all(|&v| v < 256));
    let r = e
        .analyze(&Frame::gray16(w, h, 10, dark).unwrap())
        .expect_err("a dark 10-bit frame must be rejected");
    assert_eq!(r.kind, RejectKind::TooDark, "{r}");
}

#[test]
fn face_too_small_gate() {
    let e = engine();
    let (w, h, px) = gray("obama");
    let a = e.analyze(&Frame::gray8(w, h, px.clone()).unwrap()).unwrap();
    let full = a.quality.eye_distance;
    // Downscale the whole frame by an integer box filter so the eyes end up ~14 px apart
    // (gate: 20 px). The frame shrinks with the face: in a large canvas BlazeFace (128×128
    // input) would no longer find a face that small, and the frame would be `no_face`.
    let s = (full / 14.0).ceil().max(2.0) as usize;
    let (sw, sh) = (w / s, h / s);
    let mut small = vec![0u8; sw * sh];
    for y in 0..sh {
        for x in 0..sw {
            let mut sum = 0u32;
            for dy in 0..s {
                for dx in 0..s {
                    sum += u32::from(px[(y * s + dy) * w + x * s + dx]);
                }
            }
            small[y * sw + x] = (sum / (s * s) as u32) as u8;
        }
    }
    let r = e
        .analyze(&Frame::gray8(sw, sh, small).unwrap())
        .expect_err("a face this small must be rejected");
    assert_eq!(
        r.kind,
        RejectKind::FaceTooSmall,
        "{r} (full size: {full:.0} px, scale 1/{s})"
    );
    assert!(r.reason.contains("come closer"), "{}", r.reason);
}
