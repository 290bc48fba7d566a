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
    let threshold = dc.threshold(1);
    assert!(threshold > 0.0 && threshold <= cfg.threshold_model.max_threshold);

    // The enrolled man, looped: accepted on the M-th good frame, not before.
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
    assert!(DeciderConfig::from_face(&cfg, 50).threshold(1) < threshold);
}

#[test]
fn unusable_frames_do_not_count_and_say_why() {
    let engine = Engine::load(&models::dev_dir()).unwrap();
    let set = ProfileSet::new("nobody");
    let mut d = Decider::new(DeciderConfig::from_face(engine.config(), 1));
    let blank = aloha_face::Frame::gray8(320, 240, vec![0u8; 320 * 240]).unwrap();
    let r = d.push(&engine.analyze(&blank), &set);
    assert!(!r.accepted && r.score.is_nan());
    assert!(
        matches!(
            r.reason,
            Some(RejectReason::BadFrame(aloha_face::RejectKind::NoFace, _))
        ),
        "{r:?}"
    );
    let r = d.push(
        &engine.analyze(&aloha_face::Frame::load(&file("obama")).unwrap()),
        &set,
    );
    assert_eq!(r.reason, Some(RejectReason::NoProfile));
}
