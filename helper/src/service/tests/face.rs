//! Face sign-in in the service: enrolment behind the PIN, a match that signs like the PIN,
//! counted failures written ahead, "no face" uncounted, the pause after too many failures, the
//! camera shared by nobody, and what a PIN reset and removal do.

use super::scripted_face::{ALICE_FACE, BOB_FACE, NOBODY, PHOTO_OF_ALICE, Shot};
use super::*;

impl Fixture {
    pub(super) fn enrol_face(&self, caller: Caller, pin: &str) -> Result<Response, Failure> {
        self.call(
            caller,
            Request::FaceEnrol {
                user: "alice".into(),
                label: "default".into(),
                pin: Secret::new(pin),
            },
        )
    }

    /// A face sign-in for alice; `Ok` only with a signature that verifies.
    pub(super) fn face(&self, caller: Caller) -> Result<(), Failure> {
        let nonce = Nonce::random().unwrap();
        let resp = self.call(
            caller,
            Request::FaceSignIn {
                user: "alice".into(),
                service: "test".into(),
                nonce,
                timeout_ms: 400,
                vault: false,
            },
        )?;
        let Response::Signed { signature, .. } = resp else {
            panic!("unexpected {resp:?}")
        };
        let key = registry::load(self.dir(), "alice", None).unwrap();
        challenge::verify(&key.public_key, "alice", &nonce, &signature).unwrap();
        Ok(())
    }

    pub(super) fn face_failures(&self) -> u32 {
        self.status("alice").face.map_or(0, |f| f.failures)
    }
}

fn enrolled() -> Fixture {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
    f.enrol_face(ALICE, PIN).unwrap();
    f
}

#[test]
fn enrolment_needs_the_right_pin_and_counts_a_wrong_one() {
    let f = fixture();
    f.set(ROOT, "alice", None, PIN).unwrap();
    let e = f.enrol_face(ALICE, OTHER_PIN).unwrap_err();
    assert_eq!(e.code, ErrorCode::WrongPin);
    assert_eq!(f.status("alice").failed_attempts, 1);
    assert!(f.status("alice").face.is_none(), "nothing stored");
    assert!(!f.dir().join("private/users/alice/face.json").exists());
    // Bob cannot enrol a face for alice, nor can anyone without a PIN.
    assert_eq!(f.code(f.enrol_face(BOB, PIN)), ErrorCode::Forbidden);
    let r = f.call(
        BOB,
        Request::FaceEnrol {
            user: "bob".into(),
            label: "default".into(),
            pin: Secret::new(PIN),
        },
    );
    assert_eq!(f.code(r), ErrorCode::NotEnrolled);
    f.enrol_face(ALICE, PIN).unwrap();
    let s = f.status("alice");
    assert_eq!(s.failed_attempts, 0, "the right PIN resets the PIN counter");
    let face = s.face.unwrap();
    assert_eq!(face.profiles.len(), 1);
    assert_eq!(face.profiles[0].label, "default");
    assert_eq!(face.profiles[0].descriptors, 3);
    assert!(face.usable && !face.paused);
    // Only descriptors, sealed: nothing of the frames or the secret in clear.
    let text = std::fs::read_to_string(f.dir().join("private/users/alice/face.json")).unwrap();
    assert!(text.contains("\"kind\": \"tpm\""), "{text}");
}

#[test]
fn a_live_match_signs_with_the_users_key() {
    let f = enrolled();
    f.face(ALICE).unwrap();
    f.face(ROOT).unwrap();
    assert_eq!(f.face_failures(), 0);
    // The face protector is the same key: the PIN still signs too.
    f.sign_in(ALICE, "alice", PIN).unwrap();
    // Only the user (or root) may use it.
    let r = f.call(
        BOB,
        Request::FaceSignIn {
            user: "alice".into(),
            service: "t".into(),
            nonce: Nonce::random().unwrap(),
            timeout_ms: 400,
            vault: false,
        },
    );
    assert_eq!(f.code(r), ErrorCode::Forbidden);
}

#[test]
fn another_face_and_a_photo_are_counted_failures_until_face_pauses() {
    let f = enrolled();
    f.cameras.show(Shot::Frames(vec![BOB_FACE]));
    let e = f.face(ALICE).unwrap_err();
    assert_eq!(e.code, ErrorCode::FaceNoMatch);
    assert!(
        e.message.contains("4 more failed face attempts"),
        "{}",
        e.message
    );
    f.cameras.show(Shot::Frames(vec![PHOTO_OF_ALICE]));
    let e = f.face(ALICE).unwrap_err();
    assert_eq!(e.code, ErrorCode::FaceNotLive);
    assert_eq!(f.face_failures(), 2);
    f.cameras.show(Shot::Frames(vec![BOB_FACE]));
    for _ in 0..2 {
        assert_eq!(f.code(f.face(ALICE)), ErrorCode::FaceNoMatch);
    }
    let e = f.face(ALICE).unwrap_err();
    assert!(e.message.contains("now off"), "{}", e.message);
    // Paused: even alice's own face is refused, without the camera.
    f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
    let e = f.face(ALICE).unwrap_err();
    assert_eq!(e.code, ErrorCode::FaceLocked);
    assert!(e.message.contains("PIN"), "{}", e.message);
    let face = f.status("alice").face.unwrap();
    assert!(face.paused && !face.usable);
    // A PIN sign-in turns it back on.
    f.sign_in(ALICE, "alice", PIN).unwrap();
    assert_eq!(f.face_failures(), 0);
    f.face(ALICE).unwrap();
}

#[test]
fn only_root_can_say_another_module_signed_the_user_in() {
    let f = enrolled();
    f.cameras.show(Shot::Frames(vec![BOB_FACE]));
    for _ in 0..5 {
        assert_eq!(f.code(f.face(ALICE)), ErrorCode::FaceNoMatch);
    }
    assert_eq!(f.face_failures(), 5);
    let resume = |caller| {
        f.call(
            caller,
            Request::FaceResume {
                user: "alice".into(),
            },
        )
    };
    // alice's own screen locker cannot vouch for her password: that would be a free reset.
    assert_eq!(f.code(resume(ALICE)), ErrorCode::Forbidden);
    assert_eq!(f.face_failures(), 5);
    match resume(ROOT).unwrap() {
        Response::Done { message } => assert!(message.contains("5 failed"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.face_failures(), 0);
    f.cameras.show(Shot::Frames(vec![ALICE_FACE]));
    f.face(ALICE).unwrap();
}

#[test]
fn no_face_and_no_camera_cost_nothing() {
    let f = enrolled();
    f.cameras.show(Shot::Frames(vec![NOBODY]));
    assert_eq!(f.code(f.face(ALICE)), ErrorCode::FaceNotSeen);
    f.cameras.show(Shot::Missing);
    assert_eq!(f.code(f.face(ALICE)), ErrorCode::FaceUnavailable);
    f.cameras.show(Shot::Silent);
    let started = std::time::Instant::now();
    assert!(matches!(
        f.code(f.face(ALICE)),
        ErrorCode::FaceNotSeen | ErrorCode::FaceUnavailable
    ));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "a silent camera ends the attempt at its deadline"
    );
    f.cameras.show(Shot::ThenGone(vec![NOBODY]));
    assert_eq!(f.code(f.face(ALICE)), ErrorCode::FaceUnavailable);
    assert_eq!(f.face_failures(), 0);
    assert!(!f.status("alice").face.unwrap().paused);
    assert_eq!(*lock(&f.cameras.open_now), 0, "every camera was closed");
}

#[test]
fn the_face_attempt_is_on_disk_before_the_first_frame_is_judged() {
    let f = enrolled();
    let path = f.dir().join("private/users/alice/face-attempts.json");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    *lock(&f.cameras.on_frame) = Some(Box::new(move || {
        lock(&s2).push(std::fs::read_to_string(&path).unwrap_or_default());
    }));
    f.cameras.show(Shot::Frames(vec![BOB_FACE]));
    f.face(ALICE).unwrap_err();
    let seen = lock(&seen).clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.contains("\"failures\": 1")),
        "{seen:?}"
    );
}

#[test]
fn one_camera_user_at_a_time() {
    let f = Arc::new(enrolled());
    f.set(ROOT, "bob", None, PIN).unwrap();
    f.cameras.show(Shot::Frames(vec![NOBODY]));
    let f2 = f.clone();
    let long = std::thread::spawn(move || f2.face(ROOT));
    // Wait until the first attempt has the camera.
    while *lock(&f.cameras.open_now) == 0 {
        std::thread::yield_now();
    }
    let r = f.call(
        ROOT,
        Request::FaceSignIn {
            user: "bob".into(),
            service: "t".into(),
            nonce: Nonce::random().unwrap(),
            timeout_ms: 400,
            vault: false,
        },
    );
    let e = r.unwrap_err();
    // bob has no face; had he one, the camera would be busy: check the camera turn directly.
    assert_eq!(e.code, ErrorCode::NotEnrolled);
    let busy = f.service.camera_in_use.try_lock().is_err();
    assert_eq!(f.code(long.join().unwrap()), ErrorCode::FaceNotSeen);
    assert!(busy, "the camera was held by the first attempt");
}

#[test]
fn a_pin_reset_moves_the_face_to_the_new_key() {
    let f = enrolled();
    let before = std::fs::read_to_string(f.dir().join("private/users/alice/face.json")).unwrap();
    f.reset_to(OTHER_PIN).unwrap();
    let after = std::fs::read_to_string(f.dir().join("private/users/alice/face.json")).unwrap();
    let protector =
        |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["protector"].clone();
    assert_ne!(
        protector(&before),
        protector(&after),
        "no protector of the old key survives"
    );
    // The face now releases the new key, which verifies against the new registered key.
    f.face(ALICE).unwrap();
    f.sign_in(ALICE, "alice", OTHER_PIN).unwrap();
}

#[test]
fn removing_a_label_all_or_the_user() {
    let f = enrolled();
    f.call(
        ALICE,
        Request::FaceEnrol {
            user: "alice".into(),
            label: "glasses".into(),
            pin: Secret::new(PIN),
        },
    )
    .unwrap();
    let list = |f: &Fixture| match f
        .call(
            ROOT,
            Request::FaceList {
                user: "alice".into(),
            },
        )
        .unwrap()
    {
        Response::FaceProfiles { profiles, .. } => {
            profiles.into_iter().map(|p| p.label).collect::<Vec<_>>()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(list(&f), ["default", "glasses"]);
    let remove = |label: Option<&str>| {
        f.call(
            ALICE,
            Request::FaceRemove {
                user: "alice".into(),
                label: label.map(Into::into),
            },
        )
    };
    assert_eq!(f.code(remove(Some("hat"))), ErrorCode::NotEnrolled);
    remove(Some("default")).unwrap();
    assert_eq!(list(&f), ["glasses"]);
    f.face(ALICE).unwrap();
    remove(None).unwrap();
    assert!(list(&f).is_empty());
    assert_eq!(f.code(f.face(ALICE)), ErrorCode::NotEnrolled);
    f.enrol_face(ALICE, PIN).unwrap();
    f.call(
        ROOT,
        Request::AdminRemove {
            user: "alice".into(),
        },
    )
    .unwrap();
    assert!(!f.dir().join("private/users/alice/face.json").exists());
}

#[test]
fn face_test_counts_nothing_and_reports_every_frame() {
    let f = enrolled();
    f.cameras.show(Shot::Frames(vec![NOBODY, BOB_FACE]));
    let mut client = Recorder::default();
    f.service.handle(
        &ALICE,
        Request::FaceTest {
            user: "alice".into(),
            timeout_ms: 300,
        },
        &mut client,
    );
    let reports = std::mem::take(&mut client.reports);
    let r = client.reply();
    let Response::Done { message } = r else {
        panic!("{r:?}")
    };
    assert!(message.contains("no match"), "{message}");
    assert!(
        reports
            .iter()
            .any(|p| p.verdict == aloha::protocol::FrameVerdict::NoFace)
    );
    assert!(reports.iter().any(|p| p.distance.is_some()));
    assert_eq!(f.face_failures(), 0);
}

#[test]
fn on_the_software_vault_the_secret_is_wrapped_and_status_says_what_that_is_worth() {
    let mut config = Config::default();
    config.tpm.backend = BackendChoice::Software;
    let f = fixture_with(config, false);
    f.set(ROOT, "alice", None, PIN).unwrap();
    f.enrol_face(ALICE, PIN).unwrap();
    assert!(f.dir().join("private/face.key").exists());
    let face = f.status("alice").face.unwrap();
    assert!(
        face.protection.contains("without your face"),
        "{}",
        face.protection
    );
    f.face(ALICE).unwrap();
}
