//! Face sign-in end to end: alohad with the real face engine on replayed frames (the same
//! capture loop a V4L2 camera goes through), pam_aloha in real libpam, and the CLI.
//!
//! The committed public-domain stills run everywhere; the live recordings and photo attacks of
//! the shared datasets run where the datasets are (their terms keep them out of the
//! repository), and say so when they skip.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aloha_tests::both;
use aloha_tests::face::{ReplayCamera, datasets, recording, still, still_and_mirror};
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::pam::*;

const PIN: &str = "482915";
const LOOKING: &str = "Looking for your face…";

struct Setup {
    f: Fixture,
    cam: ReplayCamera,
    pam: PamDir,
}

/// alohad with a replay camera at `fps`, nobody's PIN set, and a stack where pam_aloha is
/// followed by pam_deny (only pam_aloha can grant).
fn setup(kind: Kind, fps: f64, face_extra: &str) -> Setup {
    let mut cam = ReplayCamera::new();
    cam.show(&[still("obama")]);
    // An attempt ends by the engine's decision (a match, or its frame cap), not by the clock:
    // on a loaded machine a debug alohad analyses frames slowly, and what is tested here is
    // the decision, not the speed (bench-face measures that).
    let mut face_extra = face_extra.to_string();
    if !face_extra.contains("attempt_timeout_ms") {
        face_extra.push_str("attempt_timeout_ms = 30000\n");
    }
    let section = cam.face_section(fps, &face_extra);
    let f = Fixture::start(kind, move |o| o.extra = section);
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
    let pam = PamDir::new();
    let module = format!(
        "MODULE config={} face_timeout=30",
        f.daemon.config_path().display()
    );
    pam.service(
        "face",
        &[
            &format!("auth [success=done default=ignore] {module}"),
            "auth required pam_deny.so",
        ],
    );
    Setup { f, cam, pam }
}

impl Setup {
    fn enrol(&mut self, frames: &[PathBuf]) {
        self.cam.show(frames);
        let run = self.f.daemon.aloha(
            &["face", "enroll", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        );
        run.ok();
        assert!(run.stdout.contains("Face enrolled for nobody"), "{run:?}");
    }

    fn status(&self) -> serde_json::Value {
        let run = self
            .f
            .daemon
            .aloha(&["status", "--json", "--user", "nobody"], "");
        run.ok();
        serde_json::from_str(&run.stdout).unwrap()
    }

    fn face_failures(&self) -> u64 {
        self.status()["face"]["failures"].as_u64().unwrap()
    }

    /// A sign-in through real PAM where the user would type the PIN if asked.
    fn sign_in(&self) -> Auth {
        self.pam.authenticate("face", "nobody", &pin(PIN), 0, None)
    }

    /// A sign-in through real PAM where the user types nothing: only the face can grant.
    fn face_alone(&self) -> Auth {
        self.pam.authenticate("face", "nobody", &[], 0, None)
    }
}

/// A replayed photograph is exactly what liveness must refuse: the face attempt fails (and
/// counts), the PIN prompt follows, and the PIN signs in. Runs from the repository alone.
fn a_replayed_photo_falls_through_to_the_pin(kind: Kind) {
    let mut s = setup(kind, 30.0, "");
    s.enrol(&still_and_mirror("obama"));
    let face = &s.status()["face"];
    assert_eq!(face["profiles"][0]["label"], "default", "{face}");
    assert_eq!(face["usable"], true, "{face}");

    s.cam.show(&[still("obama")]);
    // Without PAM: refused, and counted.
    s.f.daemon
        .aloha(
            &["verify", "--face", "--user", "nobody", "--seconds", "30"],
            "",
        )
        .refused("photo or a screen");
    assert_eq!(s.face_failures(), 1, "a refused photo counts");
    // Nobody answers the PIN prompt: nothing grants, and the photo counts again.
    let r = s.face_alone();
    assert_ne!(r.rc, PAM_SUCCESS, "{r:?}");
    assert_eq!(r.transcript.infos(), [LOOKING], "{r:?}");
    assert_eq!(s.face_failures(), 2, "{r:?}");
    // Through PAM: the photo refused, the PIN prompt, the PIN signs in (and turns the count
    // back to zero).
    let r = s.sign_in();
    assert_eq!(r.rc, PAM_SUCCESS, "the PIN after the face: {r:?}");
    assert_eq!(r.transcript.infos(), [LOOKING], "{r:?}");
    assert_eq!(r.transcript.prompts(), ["PIN: "], "{r:?}");
    assert!(
        r.transcript
            .errors()
            .iter()
            .any(|e| e.contains("photo or a screen")),
        "{r:?}"
    );
    assert_eq!(s.face_failures(), 0, "the PIN resets the face's count");
    let log = s.f.daemon.log();
    assert_eq!(log.matches("result=\"FaceNotLive\"").count(), 3, "{log}");
}

/// The recordings: one person enrolled from the first frames of their recording signs in by
/// face alone with later frames; another person's recording and a printed photo of the
/// enrolled person fall through to the PIN, each counted.
fn recordings_through_real_pam(kind: Kind) {
    let Some(data) = datasets("recordings_through_real_pam") else {
        return;
    };
    let live = recording(&data.join("nuaa_live_webcam/0001"));
    let other = recording(&data.join("nuaa_live_webcam/0002"));
    let photo = recording(&data.join("nuaa_photo_attacks/0001"));
    // One recorded frame per analysed frame, in order: the recordings are sparse (about half
    // a second apart), as the liveness cues were measured. `frame_interval_ms = 0` keeps the
    // capture loop from dropping a frame that arrives a hair early (the replay's period equals
    // the default interval): which frames formed the liveness pairs then depended on the
    // machine's timing, and a fast machine that dropped every other frame saw no life.
    let mut s = setup(kind, 1000.0 / 150.0, "frame_interval_ms = 0\n");
    s.enrol(&live[..12]);

    s.cam.show(&live[12..]);
    let r = s.face_alone();
    assert_eq!(
        r.rc,
        PAM_SUCCESS,
        "by face alone: {r:?}\n{}",
        s.f.daemon.log()
    );
    assert!(r.transcript.prompts().is_empty(), "no prompt: {r:?}");
    assert_eq!(r.transcript.infos(), [LOOKING]);
    assert_eq!(s.face_failures(), 0);

    // Another person, then a printed photo of the enrolled one: each falls through to the PIN.
    for (frames, what) in [(&other, "another face"), (&photo, "a photo attack")] {
        s.cam.show(frames);
        let r = s.sign_in();
        assert_eq!(r.rc, PAM_SUCCESS, "{what}: {r:?}");
        assert_eq!(r.transcript.prompts(), ["PIN: "], "{what}: the PIN: {r:?}");
        if what == "a photo attack" {
            assert!(
                r.transcript
                    .errors()
                    .iter()
                    .any(|e| e.contains("photo or a screen")),
                "{r:?}"
            );
        }
    }
    let log = s.f.daemon.log();
    assert!(log.contains("factor=\"face\" result=\"success\""), "{log}");
    assert!(log.contains("result=\"FaceNotLive\""), "{log}");
}

/// kill -9 while the camera is judging frames never yields a free attempt: the failure was on
/// disk before the first frame, and it is still there after alohad restarts. After
/// `face.max_failures` such attempts face is off until the PIN signs in.
fn kill9_during_a_face_attempt_never_yields_a_free_attempt(kind: Kind) {
    // Slow frames: an attempt would run far longer than the test waits.
    let mut s = setup(kind, 2.0, "max_failures = 3\nattempt_timeout_ms = 20000\n");
    s.enrol(&still_and_mirror("obama"));
    s.cam.show(&[still("biden")]);
    let counter =
        s.f.daemon
            .state_dir()
            .join("private/users/nobody/face-attempts.json");
    let failures = |text: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(text).unwrap()["failures"]
            .as_u64()
            .unwrap()
    };
    for round in 1..=3u64 {
        let config = s.f.daemon.config_path();
        let aloha = aloha_tests::build::artifact("aloha");
        let mut client = std::process::Command::new(aloha)
            .args(["--config"])
            .arg(&config)
            .args(["verify", "--face", "--user", "nobody", "--seconds", "20"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the attempt is under way: counted, and the camera delivering.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = std::fs::read_to_string(&counter).unwrap_or_default();
            if !seen.is_empty() && failures(&seen) == round {
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: never counted");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(700));
        s.f.daemon.kill9();
        let _ = client.wait();
        s.f.daemon.spawn();
        assert_eq!(
            s.face_failures(),
            round,
            "round {round}: the attempt stays counted"
        );
    }
    let face = &s.status()["face"];
    assert_eq!(face["paused"], true, "{face}");
    s.cam.show(&[still("obama")]);
    s.f.daemon
        .aloha(&["verify", "--face", "--user", "nobody"], "")
        .refused("Face sign-in is off");
    // The PIN turns it back on.
    s.f.daemon
        .aloha(
            &["verify", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
    assert_eq!(s.face_failures(), 0);
}

/// A password sign-in (here pam_permit after an empty PIN) in a root application turns a
/// paused face back on: pam_aloha's pam_sm_setcred tells alohad, as Windows Hello does.
fn a_password_sign_in_turns_a_paused_face_back_on(kind: Kind) {
    let mut s = setup(kind, 30.0, "max_failures = 1\n");
    s.enrol(&still_and_mirror("obama"));
    // Another person (frontal, so it is compared: a turned head would only be "not seen").
    s.cam.show(&[still("hopper")]);
    s.f.daemon
        .aloha(&["verify", "--face", "--user", "nobody"], "")
        .refused("off");
    assert_eq!(s.status()["face"]["paused"], true);
    let module = format!("MODULE config={}", s.f.daemon.config_path().display());
    s.pam.service(
        "password",
        &[
            &format!("auth [success=done default=ignore] {module}"),
            "auth required pam_permit.so",
        ],
    );
    // The face is paused: no camera, the PIN prompt, left empty; the "password" module grants.
    let r = s.pam.authenticate(
        "password",
        "nobody",
        &[Answer::Text(String::new())],
        0,
        None,
    );
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.transcript.infos().is_empty(), "{r:?}");
    assert_eq!(s.face_failures(), 0, "{}", s.f.daemon.log());
    assert_eq!(s.status()["face"]["paused"], false);
    assert!(
        s.f.daemon
            .log()
            .contains("face sign-in on again after a sign-in by another module")
    );
}

/// The models gone after enrolment (aloha-face-models removed): the status says face needs
/// them and how to get them, and PAM goes straight to the PIN without looking for a face.
#[test]
fn without_the_models_status_says_so_and_pam_asks_the_pin() {
    let mut s = setup(Kind::Software, 30.0, "");
    s.enrol(&still_and_mirror("obama"));
    let empty = s.f.daemon.dir().join("no-models");
    std::fs::create_dir_all(&empty).unwrap();
    let config = std::fs::read_to_string(s.f.daemon.config_path()).unwrap();
    let moved = config.replace(
        &format!(
            "model_dir = \"{}\"",
            aloha_tests::face::models_dir().display()
        ),
        &format!("model_dir = \"{}\"", empty.display()),
    );
    assert_ne!(moved, config, "the fixture names its model_dir");
    std::fs::write(s.f.daemon.config_path(), moved).unwrap();
    s.f.daemon.restart();
    let face = &s.status()["face"];
    assert_eq!(face["usable"], false, "{face}");
    assert!(
        face["camera"]
            .as_str()
            .unwrap()
            .contains("aloha-face-models"),
        "{face}"
    );
    let text = s.f.daemon.aloha(&["status", "--user", "nobody"], "");
    assert!(text.stdout.contains("aloha-face-models"), "{text:?}");
    let r = s.sign_in();
    assert_eq!(r.rc, PAM_SUCCESS, "{r:?}");
    assert!(r.transcript.infos().is_empty(), "no face attempt: {r:?}");
    assert_eq!(r.transcript.prompts(), ["PIN: "], "{r:?}");
}

both!(
    a_password_sign_in_turns_a_paused_face_back_on,
    a_replayed_photo_falls_through_to_the_pin,
    recordings_through_real_pam,
    kill9_during_a_face_attempt_never_yields_a_free_attempt,
);
