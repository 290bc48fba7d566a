//! Liveness and the attempt API on synthetic sequences made from the public-domain reference
//! frames (no dataset needed; the converted models are, see tests/reference.rs), and on the
//! NUAA streams when they are present.
//!
//! What a synthetic sequence can honestly be: every sequence built from a still image is a
//! manipulated photograph, so these tests can only show that sheets are refused — a still
//! replayed, a sheet moved rigidly or affinely over a still room, a face cut out of the photo
//! and moved over the room. A synthetic "live" face would be a photo with a made-up change;
//! the test that uses one (a local change of the eye region, like a blink) checks the cue's
//! mechanics, not that a live face passes. Live acceptance is measured on the recorded
//! streams (aloha-liveness-eval, docs/face-accuracy.md).

// Integration tests: unwrapping is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aloha_face::attempt::{ADAPTED_LABEL, Attempt, Progress, Refusal, WAITING_FOR_LIFE};
use aloha_face::liveness::{Liveness, NotLive};
use aloha_face::profile::{EnrolSettings, Profile, ProfileSet};
use aloha_face::{Analysis, Engine, FaceConfig, Frame, models};
use std::path::{Path, PathBuf};

const W: usize = 640;
const H: usize = 480;

fn reference(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/reference")
        .join(format!("{name}.png"));
    let f = Frame::load(&p).unwrap();
    assert_eq!((f.width(), f.height()), (W, H));
    f.to_gray8().into_owned()
}

fn config() -> FaceConfig {
    FaceConfig {
        model_dir: models::dev_dir(),
        ..FaceConfig::default()
    }
}

/// A still "room": smooth deterministic texture, different from any face.
fn room() -> Vec<u8> {
    let mut v = vec![0u8; W * H];
    for y in 0..H {
        for x in 0..W {
            let (fx, fy) = (x as f64, y as f64);
            let t = 128.0
                + 40.0 * (fx / 23.0).sin() * (fy / 31.0).cos()
                + 30.0 * ((fx + 2.0 * fy) / 57.0).sin()
                + 20.0 * ((3.0 * fx - fy) / 17.0).cos();
            v[y * W + x] = t.clamp(0.0, 255.0) as u8;
        }
    }
    v
}

fn bilinear(img: &[u8], x: f64, y: f64) -> Option<f64> {
    if x < 0.0 || y < 0.0 || x > (W - 1) as f64 || y > (H - 1) as f64 {
        return None;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(W - 1), (y0 + 1).min(H - 1));
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let p = |x: usize, y: usize| f64::from(img[y * W + x]);
    Some(
        p(x0, y0) * (1.0 - fx) * (1.0 - fy)
            + p(x1, y0) * fx * (1.0 - fy)
            + p(x0, y1) * (1.0 - fx) * fy
            + p(x1, y1) * fx * fy,
    )
}

/// The photo `src` held in front of `bg`: every frame pixel inside the sheet (the part of
/// `src` for which `inside` holds) shows the photo moved by the affine map
/// `[a b c; d e f]` (frame = A · photo + t); the rest shows the still room.
fn sheet(src: &[u8], bg: &[u8], a: [f64; 6], inside: &dyn Fn(f64, f64) -> bool) -> Frame<'static> {
    let det = a[0] * a[4] - a[1] * a[3];
    let mut out = bg.to_vec();
    for y in 0..H {
        for x in 0..W {
            // Inverse map: frame → photo.
            let (u, v) = (x as f64 - a[2], y as f64 - a[5]);
            let px = (a[4] * u - a[1] * v) / det;
            let py = (-a[3] * u + a[0] * v) / det;
            if inside(px, py)
                && let Some(val) = bilinear(src, px, py)
            {
                out[y * W + x] = val.round() as u8;
            }
        }
    }
    Frame::gray8(W, H, out).unwrap()
}

/// A hand's motion: small turns, shifts and (with `shear`) out-of-plane tilt, frame by frame.
fn hand(k: usize, shear: f64) -> [f64; 6] {
    let k = k as f64;
    let angle = (0.05 * (k * 1.3).sin()).to_radians() * 60.0;
    let scale = 1.0 + 0.03 * (k * 0.9).cos();
    let (s, c) = angle.sin_cos();
    let (cx, cy) = (W as f64 / 2.0, H as f64 / 2.0);
    let sh = shear * (k * 0.7).sin();
    let (a, b, d, e) = (scale * c + sh, -scale * s, scale * s, scale * c);
    let tx = 12.0 * (k * 1.7).sin();
    let ty = 8.0 * (k * 1.1).cos();
    [
        a,
        b,
        cx - a * cx - b * cy + tx,
        d,
        e,
        cy - d * cx - e * cy + ty,
    ]
}

struct Setup {
    engine: Engine,
    cfg: FaceConfig,
    set: ProfileSet,
    photo: Vec<u8>,
}

/// Obama's frame enrolled (the still itself, so every sheet frame matches: these tests are
/// about liveness, not recognition).
fn setup() -> Setup {
    let cfg = config();
    let engine = Engine::with_config(&cfg).unwrap();
    let photo = reference("obama");
    let a = engine
        .analyze(&Frame::gray8(W, H, photo.clone()).unwrap())
        .unwrap();
    let settings = EnrolSettings {
        min_frames: 1,
        max_frames: 1,
        min_pose_spread: 0.0,
    };
    let mut set = ProfileSet::new("barack");
    set.upsert(Profile::enrol("default", std::slice::from_ref(&a), &settings).unwrap());
    Setup {
        engine,
        cfg,
        set,
        photo,
    }
}

/// Plays frames as one attempt; returns the final progress, how many frames were good, and
/// whether any frame matched.
fn play(s: &Setup, frames: impl Iterator<Item = Frame<'static>>) -> (Progress, usize) {
    let mut attempt = Attempt::new(&s.cfg, &s.set, 1);
    let mut last = Progress::Continue { hint: None };
    let mut good = 0;
    for f in frames {
        let r = s.engine.analyze(&f);
        good += usize::from(r.is_ok());
        last = attempt.push(&f, &r);
        println!("{last:?} evidence {:?}", attempt.evidence());
        if !matches!(last, Progress::Continue { .. }) {
            break;
        }
    }
    (last, good)
}

fn not_live(p: &Progress) -> Option<NotLive> {
    match p {
        Progress::Refused(Refusal::NotLive(n)) => Some(*n),
        _ => None,
    }
}

#[test]
fn a_still_photo_replayed_is_refused_as_not_live() {
    let s = setup();
    let t = s.cfg.max_attempt_frames;
    let f = Frame::gray8(W, H, s.photo.clone()).unwrap();
    let r = s.engine.analyze(&f);
    let mut attempt = Attempt::new(&s.cfg, &s.set, 1);
    let mut hints = Vec::new();
    let mut last = Progress::Continue { hint: None };
    for _ in 0..t + 3 {
        last = attempt.push(&f, &r);
        match &last {
            Progress::Continue { hint } => hints.push(hint.clone()),
            _ => break,
        }
    }
    // It matches from the M-th frame on (distance 0), and is told to show life, in vain.
    assert_eq!(hints.len(), t - 1, "{hints:?}");
    assert!(
        hints[s.cfg.match_frames - 1..]
            .iter()
            .all(|h| h.as_deref() == Some(WAITING_FOR_LIFE)),
        "{hints:?}"
    );
    assert_eq!(attempt.compared(), t);
    assert_eq!(
        not_live(&last),
        Some(NotLive::NoSignOfLife { pairs: t - 1 }),
        "{last:?}"
    );
    assert!(attempt.adaptation(&s.cfg).is_none());
}

#[test]
fn a_photo_moved_by_hand_over_a_still_room_is_refused() {
    let s = setup();
    let bg = room();
    // The sheet: the photo's middle (a print bigger than the head), moved rigidly, then with
    // out-of-plane tilt (shear).
    let inside = |x: f64, y: f64| (80.0..560.0).contains(&x) && (20.0..470.0).contains(&y);
    for shear in [0.0, 0.04] {
        let frames = (0..s.cfg.max_attempt_frames + 3)
            .map(|k| sheet(&s.photo, &bg, hand(k, shear), &inside));
        let (p, good) = play(&s, frames);
        assert!(good >= 3, "{good} good frames");
        assert!(
            matches!(not_live(&p), Some(NotLive::Sheet { .. })),
            "shear {shear}: {p:?}"
        );
    }
}

#[test]
fn a_face_cut_out_of_the_photo_and_moved_passes_the_surroundings_cue() {
    // Measured behaviour, a known limit, not a goal: a face cut out along the head's outline
    // and moved over a still room carries no surroundings with it, and at a hand's small
    // motions its chip's sameness is not yet "rigid" (under liveness.rigid_motion), so the
    // still room counts as life. The NUAA attacks (whole prints) do not test this; see
    // docs/face-accuracy.md. When a cue that refuses it is added, this test must flip.
    let s = setup();
    let bg = room();
    let a = s
        .engine
        .analyze(&Frame::gray8(W, H, s.photo.clone()).unwrap())
        .unwrap();
    let (c, r) = head_ellipse(&a);
    let inside =
        move |x: f64, y: f64| ((x - c[0]) / r[0]).powi(2) + ((y - c[1]) / r[1]).powi(2) <= 1.0;
    let frames =
        (0..s.cfg.max_attempt_frames + 3).map(|k| sheet(&s.photo, &bg, hand(k, 0.0), &inside));
    let (p, _) = play(&s, frames);
    match p {
        Progress::Matched(m) => {
            assert!(
                m.liveness.still_surroundings >= s.cfg.liveness.live_pairs,
                "{m:?}"
            );
            assert_eq!(m.liveness.nonrigid, 0, "{m:?}");
        }
        other => panic!("the known limit changed, update docs/face-accuracy.md: {other:?}"),
    }
    // Moved further (a quarter of the frame), the same cut-out shows its rigid chip.
    let far = (0..s.cfg.max_attempt_frames + 3).map(|k| {
        let mut m = hand(k, 0.0);
        m[2] += if k % 2 == 0 { 60.0 } else { -60.0 };
        sheet(&s.photo, &bg, m, &inside)
    });
    let (p, _) = play(&s, far);
    assert!(matches!(not_live(&p), Some(NotLive::Sheet { .. })), "{p:?}");
}

/// Centre and radii of an ellipse around the head (eye distance units from the landmarks).
fn head_ellipse(a: &Analysis) -> ([f64; 2], [f64; 2]) {
    let l = &a.landmarks;
    let right = [(l[0][0] + l[1][0]) / 2.0, (l[0][1] + l[1][1]) / 2.0];
    let left = [(l[2][0] + l[3][0]) / 2.0, (l[2][1] + l[3][1]) / 2.0];
    let e = (right[0] - left[0]).hypot(right[1] - left[1]);
    let c = [
        (right[0] + left[0]) / 2.0,
        (right[1] + left[1]) / 2.0 + 0.4 * e,
    ];
    (c, [1.2 * e, 1.7 * e])
}

#[test]
fn a_change_of_part_of_the_face_counts_as_non_rigid_a_global_one_does_not() {
    // Mechanics of the non-rigid cue: the same frame with the eye band replaced by the skin
    // below it (a crude pair of closed eyes) differs from the original by a change no local
    // shift explains; the same frame brighter and with more contrast (the light on a moved
    // sheet) does not.
    let s = setup();
    let f0 = Frame::gray8(W, H, s.photo.clone()).unwrap();
    let a0 = s.engine.analyze(&f0).unwrap();
    let (c, r) = head_ellipse(&a0);
    let e = r[0] / 1.2;
    let eye_y = c[1] - 0.4 * e;
    let mut closed = s.photo.clone();
    for y in (eye_y - 0.15 * e) as usize..(eye_y + 0.12 * e) as usize {
        for x in (c[0] - 0.85 * e) as usize..(c[0] + 0.85 * e) as usize {
            closed[y * W + x] = s.photo[(y - (0.3 * e) as usize) * W + x];
        }
    }
    let lit: Vec<u8> = s
        .photo
        .iter()
        .map(|&v| (f64::from(v) * 1.15 + 10.0).min(255.0) as u8)
        .collect();
    let cue = |other: Vec<u8>| {
        let f1 = Frame::gray8(W, H, other).unwrap();
        let a1 = s.engine.analyze(&f1).unwrap();
        println!(
            "descriptor moved {}",
            a0.descriptor.distance(&a1.descriptor)
        );
        let mut l = Liveness::new(s.cfg.liveness);
        assert!(
            l.observe(&f0, &a0).is_none(),
            "a track's first frame has no pair"
        );
        l.observe(&f1, &a1).unwrap()
    };
    let changed = cue(closed);
    let brighter = cue(lit);
    println!("closed eyes {changed:?}\nbrighter {brighter:?}");
    assert!(
        changed.nonrigid >= s.cfg.liveness.nonrigid_live,
        "{changed:?}"
    );
    assert!(
        brighter.nonrigid < s.cfg.liveness.rigid_nonrigid,
        "{brighter:?}"
    );
    assert!(brighter.parallax < 0.01, "{brighter:?}");
}

#[test]
fn another_face_restarts_the_evidence_and_a_refused_sheet_offers_no_adaptation() {
    let s = setup();
    // Biden's portrait is turned beyond the default pose gate: open it for this test.
    let open = Engine::with_config(&FaceConfig {
        max_yaw: 90.0,
        max_pitch: 90.0,
        ..config()
    })
    .unwrap();
    let photo = Frame::gray8(W, H, s.photo.clone()).unwrap();
    let biden = Frame::gray8(W, H, reference("biden")).unwrap();
    assert!(open.analyze(&biden).is_ok());
    let mut attempt = Attempt::new(&s.cfg, &s.set, 1);
    for f in [&photo, &biden, &photo] {
        let p = attempt.push(f, &open.analyze(f));
        assert!(matches!(p, Progress::Continue { .. }), "{p:?}");
    }
    let e = attempt.evidence();
    assert_eq!(e.restarts, 2, "{e:?}");
    assert_eq!(e.pairs, 0, "{e:?}");
    assert_eq!(attempt.compared(), 3, "the frames still count towards T");
    // Played to its end: not live, and nothing for the daemon to adapt from.
    let mut last = Progress::Continue { hint: None };
    while matches!(last, Progress::Continue { .. }) {
        last = attempt.push(&photo, &open.analyze(&photo));
    }
    assert_eq!(attempt.compared(), s.cfg.max_attempt_frames);
    assert!(not_live(&last).is_some(), "{last:?}");
    assert!(attempt.adaptation(&s.cfg).is_none());
    // The set is unchanged, and adapting never creates the label by itself.
    assert!(s.set.profiles.iter().all(|p| p.label != ADAPTED_LABEL));
}

/// The NUAA streams, when present: no photo-attack attempt of any person is accepted.
#[test]
fn nuaa_photo_attacks_are_refused() {
    let root = aloha_face::eval::datasets_dir(None);
    let Some((live, attacks)) = aloha_face::eval::nuaa_dirs(&root) else {
        println!(
            "skipped: {} has no nuaa_live_webcam/nuaa_photo_attacks (set ALOHA_FACE_DATASETS)",
            root.display()
        );
        return;
    };
    let cfg = config();
    let engine = Engine::with_config(&cfg).unwrap();
    let list = |d: &Path| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| aloha_face::frame::is_image(p))
            .collect();
        v.sort();
        v
    };
    // One person keeps the test short in the dev profile; aloha-liveness-eval plays them all.
    for person in ["0002"] {
        let good: Vec<Analysis> = list(&live.join(person))
            .iter()
            .take(8)
            .filter_map(|p| engine.analyze(&Frame::load(p).unwrap()).ok())
            .collect();
        let mut set = ProfileSet::new(person);
        set.upsert(Profile::enrol("default", &good, &EnrolSettings::default()).unwrap());
        let frames = list(&attacks.join(person));
        for chunk in frames.chunks(cfg.max_attempt_frames) {
            let mut attempt = Attempt::new(&cfg, &set, 1);
            for p in chunk {
                let f = Frame::load(p).unwrap();
                let r = attempt.push(&f, &engine.analyze(&f));
                assert!(!matches!(r, Progress::Matched(_)), "{person}: {p:?} {r:?}");
            }
        }
    }
}
