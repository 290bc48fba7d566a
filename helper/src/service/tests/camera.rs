//! The camera survey is anyone's, but only root's opens the camera to look at the emitter, and
//! not while a face operation has it; the probe is root's and takes the camera's turn.

use super::*;

fn survey(f: &Fixture, caller: Caller) -> aloha::protocol::EmitterReport {
    let Ok(Response::Camera(report)) = f.call(caller, Request::Camera) else {
        panic!("the survey is for everyone");
    };
    assert!(report.usable);
    report.emitter.expect("an emitter report")
}

#[test]
fn only_root_looks_at_the_emitter_and_never_while_a_face_operation_has_the_camera() {
    let f = fixture_with(Config::default(), false);
    let alice = survey(&f, ALICE);
    assert_eq!(alice.fires, None);
    assert!(alice.detail.contains("only root's survey"), "{alice:?}");
    assert_eq!(survey(&f, ROOT).fires, Some(true));
    let turn = f.service.camera_in_use.lock().unwrap();
    let busy = survey(&f, ROOT);
    assert_eq!(busy.fires, None);
    assert!(busy.detail.contains("using the camera"), "{busy:?}");
    drop(turn);
    assert_eq!(survey(&f, ROOT).fires, Some(true));
}

#[test]
fn only_root_probes_and_only_when_the_camera_is_free() {
    let f = fixture_with(Config::default(), false);
    assert_eq!(
        f.code(f.call(ALICE, Request::CameraProbe)),
        ErrorCode::Forbidden
    );
    // Root's probe reaches the cameras (a scripted one has nothing to probe).
    let refused = f.call(ROOT, Request::CameraProbe).unwrap_err();
    assert_eq!(refused.code, ErrorCode::FaceUnavailable);
    assert!(refused.message.contains("no controls"), "{refused:?}");
    let turn = f.service.camera_in_use.lock().unwrap();
    let refused = f.call(ROOT, Request::CameraProbe).unwrap_err();
    assert!(refused.message.contains("in use"), "{refused:?}");
    drop(turn);
}
