//! The camera survey is anyone's; the probe is root's and needs a V4L2 camera.

use super::*;

#[test]
fn only_root_probes_and_a_recording_has_nothing_to_probe() {
    let frames = tempfile::tempdir().unwrap();
    let frames_dir = frames.path().display();
    std::fs::write(frames.path().join("a.pgm"), b"P5 1 1 255 \x01").unwrap();
    let mut config = Config::default();
    config.face.camera = format!("replay:{frames_dir}");
    let f = fixture_with(config, false);
    assert_eq!(
        f.code(f.call(ALICE, Request::CameraProbe)),
        ErrorCode::Forbidden
    );
    let refused = f.call(ROOT, Request::CameraProbe).unwrap_err();
    assert_eq!(refused.code, ErrorCode::FaceUnavailable);
    assert!(refused.message.contains("recording"), "{refused:?}");
    let Ok(Response::Camera(report)) = f.call(ALICE, Request::Camera) else {
        panic!("the survey is for everyone");
    };
    assert!(report.usable);
    assert_eq!(report.chosen, Some(format!("replay:{frames_dir}")));
}
