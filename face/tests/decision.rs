//! Enrolment and sign-in end to end on the reference frames: recorded frames → engine →
//! profile (sealed and reopened) → M-of-K decision. Needs the converted models (see
//! tests/reference.rs).

// Integration tests: unwrapping is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aloha_face::decide::{Decider, DeciderConfig, RejectReason};
use aloha_face::profile::{EnrolSettings, Profile, ProfileKey, ProfileSet};
use aloha_face::{Engine, FaceConfig, FrameSource, RecordedFrames, models};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/reference")
        .join(format!("{name}.png"))
}

#[test]
fn enrol_seal_open_and_decide_on_recorded_frames() {
    // Gates opened so the three press photos of the same man all count as enrolment frames.
    let cfg = FaceConfig {
        model_dir: models::dev_dir(),
        max_yaw: 90.0,
        max_pitch: 90.0,
        target_far: 1e-3,
        ..FaceConfig::default()
    };
    let engine = Engine::with_config(&cfg).unwrap();
    let deadline = || Instant::now() + Duration::from_secs(30);

    let mut enrol_src =
        RecordedFrames::from_files(vec![file("obama"), file("obama2"), file("obama3")], false)
            .unwrap();
    let mut good = Vec::new();
    while let Ok(f) = enrol_src.next_frame(deadline()) {
        good.push(engine.analyze(&f).unwrap());
    }
    assert_eq!(good.len(), 3);
    let profile = Profile::enrol("default", &good, &EnrolSettings::default()).unwrap();
    let mut set = ProfileSet::new("barack");
    set.upsert(profile);
    let key = ProfileKey::generate().unwrap();
    let set = ProfileSet::open("barack", &set.seal(&key).unwrap(), &key).unwrap();

    let dc = DeciderConfig::from_face(&cfg, 1);
    let threshold = dc.threshold(set.references());
    assert!(threshold > 0.0 && threshold <= cfg.threshold_model.max_threshold);

    // An enrolled frame, looped (a self-match: distance 0): accepted on the M-th good frame,
    // not before. The held-out case is the next test.
    let mut d = Decider::new(dc);
    let mut src = RecordedFrames::from_files(vec![file("obama")], true).unwrap();
    let first = d.push(&engine.analyze(&src.next_frame(deadline()).unwrap()), &set);
    assert!(
        !first.accepted,
        "one frame must not be enough with M = {}",
        cfg.match_frames
    );
    assert_eq!(
        first.reason,
        Some(RejectReason::NeedMoreFrames {
            matched: 1,
            needed: cfg.match_frames
        })
    );
    assert!(
        first.score < threshold,
        "score {} threshold {threshold}",
        first.score
    );
    let second = d.push(&engine.analyze(&src.next_frame(deadline()).unwrap()), &set);
    assert!(second.accepted && second.reason.is_none(), "{second:?}");
    assert_eq!(second.profile.as_deref(), Some("default"));

    // Other people never get in, and the decision says why with its numbers.
    for other in ["biden", "hopper"] {
        let mut d = Decider::new(DeciderConfig::from_face(&cfg, 1));
        let mut src = RecordedFrames::from_files(vec![file(other)], true).unwrap();
        for _ in 0..4 {
            let r = d.push(&engine.analyze(&src.next_frame(deadline()).unwrap()), &set);
            assert!(!r.accepted, "{other} accepted: {r:?}");
            assert_eq!(r.reason, Some(RejectReason::NoMatch));
            assert!(r.score > r.threshold);
        }
    }

    // More users on the device → a stricter threshold for the same person.
    assert!(DeciderConfig::from_face(&cfg, 50).threshold(set.references()) < threshold);
}

/// Enrols from two of the three photos of the same man (with open gates, so the turned
/// photos count) and verifies with the third, which the profile never saw, under `cfg`.
/// Returns the decision after each of `frames` pushes of the probe.
fn held_out(cfg: &FaceConfig, frames: usize) -> Vec<aloha_face::decide::Decision> {
    let open = FaceConfig {
        max_yaw: 90.0,
        max_pitch: 90.0,
        ..cfg.clone()
    };
    let enroller = Engine::with_config(&open).unwrap();
    let good: Vec<_> = ["obama2", "obama3"]
        .iter()
        .map(|n| {
            enroller
                .analyze(&aloha_face::Frame::load(&file(n)).unwrap())
                .unwrap_or_else(|r| panic!("{n} rejected: {r}"))
        })
        .collect();
    let settings = EnrolSettings {
        min_frames: 2,
        ..EnrolSettings::default()
    };
    let mut set = ProfileSet::new("barack");
    set.upsert(Profile::enrol("default", &good, &settings).unwrap());
    let engine = Engine::with_config(cfg).unwrap();
    let frame = aloha_face::Frame::load(&file("obama")).unwrap();
    let mut d = Decider::new(DeciderConfig::from_face(cfg, 1));
    (0..frames)
        .map(|_| d.push(&engine.analyze(&frame), &set))
        .inspect(|r| println!("{r:?}"))
        .collect()
}

#[test]
fn held_out_genuine_frame_with_a_lax_target() {
    // A lax target (1e-2 per attempt): the threshold sits at its cap (0.41), and the frontal
    // photo the profile never saw (0.35 from the nearer enrolled photo) gets in.
    let cfg = FaceConfig {
        model_dir: models::dev_dir(),
        target_far: 1e-2,
        ..FaceConfig::default()
    };
    let r = held_out(&cfg, 2);
    assert!(r[0].score > 0.2, "the probe was not enrolled: {:?}", r[0]);
    assert!(!r[0].accepted && r[1].accepted, "{r:?}");
    assert_eq!(r[1].threshold, cfg.threshold_model.max_threshold);
}

#[test]
fn production_defaults_reject_the_references_own_held_out_pair() {
    // Measured behaviour, not a goal: at the defaults (target 1e-5, pose ±15°, M = 2 of
    // K = 3, T = 10) two of dlib's three press photos of the same man are turned too far to
    // enrol (yaw −29° and +18°/pitch 25°), and with them enrolled anyway the frontal photo
    // (0.35 away) stays above the default threshold for a 2-descriptor profile (0.237) on
    // every frame of the attempt; the attempt then ends. See docs/face-accuracy.md.
    let cfg = FaceConfig {
        model_dir: models::dev_dir(),
        ..FaceConfig::default()
    };
    let engine = Engine::with_config(&cfg).unwrap();
    for n in ["obama2", "obama3"] {
        let r = engine
            .analyze(&aloha_face::Frame::load(&file(n)).unwrap())
            .expect_err("turned photo accepted at the default pose gate");
        assert_eq!(r.kind, aloha_face::RejectKind::PoseOutOfRange, "{n}: {r}");
    }
    let r = held_out(&cfg, cfg.max_attempt_frames + 1);
    let t = r[0].threshold;
    assert!((0.2..0.25).contains(&t), "default threshold {t}");
    for d in &r[..cfg.max_attempt_frames] {
        assert!(!d.accepted && d.score > t, "{d:?}");
        assert_eq!(d.reason, Some(RejectReason::NoMatch));
    }
    assert_eq!(
        r[cfg.max_attempt_frames].reason,
        Some(RejectReason::FrameLimit {
            limit: cfg.max_attempt_frames
        })
    );
}

#[test]
fn unusable_frames_do_not_count_and_say_why() {
    // The enrolled man with a lax target, so his own frame matches; an attempt of T = K frames.
    let cfg = FaceConfig {
        model_dir: models::dev_dir(),
        target_far: 1e-2,
        max_attempt_frames: FaceConfig::default().window_frames,
        ..FaceConfig::default()
    };
    let engine = Engine::with_config(&cfg).unwrap();
    let obama = engine
        .analyze(&aloha_face::Frame::load(&file("obama")).unwrap())
        .unwrap();
    let mut set = ProfileSet::new("barack");
    let settings = EnrolSettings {
        min_frames: 1,
        max_frames: 1,
        min_pose_spread: 0.0,
    };
    set.upsert(Profile::enrol("default", std::slice::from_ref(&obama), &settings).unwrap());
    let dc = DeciderConfig::from_face(&cfg, 1);
    assert_eq!(dc.max_frames, cfg.window_frames);
    let mut d = Decider::new(dc);
    let blank = aloha_face::Frame::gray8(320, 240, vec![0u8; 320 * 240]).unwrap();
    let bad = engine.analyze(&blank);
    assert!(bad.is_err());
    // More unusable frames than the attempt may compare: each says why, none counts.
    for _ in 0..dc.max_frames + 2 {
        let r = d.push(&bad, &set);
        assert!(
            !r.accepted && r.score.is_nan() && r.profile.is_none(),
            "{r:?}"
        );
        assert!(
            matches!(
                r.reason,
                Some(RejectReason::BadFrame(aloha_face::RejectKind::NoFace, _))
            ),
            "{r:?}"
        );
        assert_eq!(d.compared(), 0, "an unusable frame counted toward T");
    }
    // The good frames that follow are still compared and accepted on the M-th.
    let good = Ok(obama);
    for i in 1..cfg.match_frames {
        let r = d.push(&good, &set);
        assert!(!r.accepted, "{r:?}");
        assert_eq!(d.compared(), i);
    }
    let r = d.push(&good, &set);
    assert!(r.accepted && r.reason.is_none(), "{r:?}");
    assert_eq!(d.compared(), cfg.match_frames);
}
