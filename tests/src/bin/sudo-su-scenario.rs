//! The real-sudo/su scenarios of `tests/tests/sudo_su.rs`, run as root in a private mount
//! namespace (unshare needs a single-threaded process, which a test harness is not).
//!
//! `sudo-su-scenario --kind software|tpm`:
//! 1. enters a [`PrivateSystem`] (overlays over /etc, /dev, /var/log, ...), prints
//!    `{"mnt_ns": INODE}` and waits for one line on stdin, so the caller can hold the namespace
//!    open and later prove nothing is left in it;
//! 2. binds a syslog sink at /dev/log, creates the test users (useradd, chpasswd), a sudoers.d
//!    entry, and puts pam_aloha in front of `@include common-auth` in /etc/pam.d/sudo and su;
//! 3. starts a private alohad (software vault or swtpm), enrols a PIN, and drives `sudo -S` on
//!    pipes and `su` on a pty through every scenario, then again with alohad stopped;
//! 4. prints one JSON object with what happened (exit codes, prompts, transcripts, syslog
//!    lines, stray processes). It asserts nothing: the test does.
//!
//! Exit status 0 when the scenarios ran (whatever they showed), 2 when setup failed or the
//! caller did not say `go` (the private system is dropped first, so its temp dir goes too).

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use aloha_tests::build::artifact;
use aloha_tests::face::{ReplayCamera, datasets, recording, still, still_and_mirror};
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::namespace::{self, PrivateSystem, step};
use aloha_tests::pty::{self, Channel};
use aloha_tests::syslog::Syslog;
use serde_json::{Value, json};

/// Has a PIN and a password; may run anything as root with sudo.
const PIN_USER: &str = "aloha-pin";
/// Has a password only; may run anything as root with sudo.
const NOPIN_USER: &str = "aloha-nopin";
/// An unprivileged user who runs su.
const OTHER_USER: &str = "aloha-other";
/// Has a PIN, a face and a password; may run anything as root with sudo.
const FACE_USER: &str = "aloha-face";

const PIN: &str = "48291573";
const WRONG_PIN: &str = "73916428";
const PASSWORD: &str = "Correct-Horse-7351";
const NOPIN_PASSWORD: &str = "Staple-Nopin-9182";
const OTHER_PASSWORD: &str = "Other-Battery-6604";
const BAD_PASSWORD: &str = "Wrong-Battery-2468";
const FACE_PASSWORD: &str = "Face-Lantern-5517";

/// Bounds one sudo or su run (pam_unix's 2 s failure delay included, twice for sudo's retry).
const RUN_TIMEOUT: Duration = Duration::from_secs(40);

/// The command line of one run.
#[derive(Clone, Copy)]
enum Tool {
    /// `sudo -S -u root true`, run by `user`, on pipes.
    Sudo,
    /// `su <user> -c true`, run by OTHER_USER, on a pty.
    Su,
}

struct Env<'a> {
    syslog: &'a Syslog,
    started: Instant,
}

impl Env<'_> {
    fn run(&self, name: &str, tool: Tool, user: &str, answers: &[&str]) -> Value {
        let (runner, channel, mut args): (&str, Channel, Vec<&str>) = match tool {
            Tool::Sudo => (
                user,
                Channel::Pipes,
                vec!["sudo", "-S", "-u", "root", "true"],
            ),
            Tool::Su => (OTHER_USER, Channel::Pty, vec!["su", user, "-c", "true"]),
        };
        let reuid = format!("--reuid={runner}");
        let regid = format!("--regid={runner}");
        let mut argv = vec![reuid.as_str(), regid.as_str(), "--init-groups", "--"];
        argv.append(&mut args);
        let mut cmd = Command::new("setpriv");
        cmd.args(&argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .env("TERM", "dumb");
        let sudo_prompt = format!("[sudo] password for {user}: ");
        let prompts = ["PIN: ", "Password: ", sudo_prompt.as_str()];
        // Lines from before this run (there should be none) are not this run's.
        let stale = self.syslog.drain();
        let t0 = Instant::now();
        let outcome = pty::converse(cmd, channel, &prompts, answers, RUN_TIMEOUT);
        let elapsed = t0.elapsed();
        let lines: Vec<Value> = self
            .syslog
            .drain()
            .into_iter()
            .map(|l| json!({"priority": l.priority, "text": l.text}))
            .collect();
        let mut record = json!({
            "name": name,
            "tool": match tool { Tool::Sudo => "sudo", Tool::Su => "su" },
            "service": match tool { Tool::Sudo => "sudo", Tool::Su => "su" },
            "user": user,
            "runner": runner,
            "answers": answers.len(),
            "syslog": lines,
            "stale_syslog": stale.len(),
            "elapsed_ms": elapsed.as_millis() as u64,
            "at_ms": self.started.elapsed().as_millis() as u64,
        });
        match outcome {
            Ok(c) => {
                record["code"] = json!(c.finished.code);
                record["signal"] = json!(c.finished.signal);
                record["killed"] = json!(c.finished.killed);
                record["prompts"] = json!(c.prompts);
                record["transcript"] = json!(c.finished.transcript);
                record["error"] = json!(c.error);
            }
            Err(e) => record["error"] = json!(format!("driver: {e}")),
        }
        eprintln!(
            "sudo-su-scenario: {name}: code {} in {} ms",
            record["code"], record["elapsed_ms"]
        );
        record
    }
}

fn main() {
    namespace::scenario_main("sudo-su-scenario", run);
}

fn run(system: &PrivateSystem) -> Result<(), String> {
    let kind = match std::env::args()
        .skip_while(|a| a != "--kind")
        .nth(1)
        .as_deref()
    {
        Some("software") | None => Kind::Software,
        Some("tpm") => Kind::Tpm,
        Some(other) => return Err(format!("--kind: unknown kind {other:?}")),
    };
    let ns = namespace::mount_namespace(None).map_err(step("namespace id"))?;
    println!("{}", json!({ "mnt_ns": ns }));
    let _ = std::io::stdout().flush();
    // Wait until the caller holds the namespace.
    namespace::wait_for_go().map_err(step("stdin"))?;

    let started = Instant::now();
    let syslog = system
        .free_dev_log()
        .and_then(|p| Syslog::bind(&p))
        .map_err(step("bind /dev/log"))?;
    for (user, password) in [
        (PIN_USER, PASSWORD),
        (NOPIN_USER, NOPIN_PASSWORD),
        (OTHER_USER, OTHER_PASSWORD),
        (FACE_USER, FACE_PASSWORD),
    ] {
        system
            .add_user(user, Some(password))
            .map_err(step("add user"))?;
    }
    // No cached credentials, no lecture, no mail; sudo's default 3 password tries stay.
    system
        .sudoers(
            "aloha-test",
            &format!(
                "Defaults timestamp_timeout=0, lecture=never, !mail_badpass\n\
                 {PIN_USER} ALL=(root) ALL\n{NOPIN_USER} ALL=(root) ALL\n\
                 {FACE_USER} ALL=(root) ALL\n"
            ),
        )
        .map_err(step("sudoers"))?;

    // Face: the live recordings where the shared datasets are (a face alone signs in), else
    // the committed stills (only the refusal of a photo can be shown).
    let face_data = datasets("sudo-su-scenario").map(|d| {
        (
            recording(&d.join("nuaa_live_webcam/0001")),
            recording(&d.join("nuaa_photo_attacks/0001")),
        )
    });
    let mut camera = ReplayCamera::new();
    // One recorded frame per analysed frame, 150 ms apart, as liveness was measured: the replay
    // paces, and alohad analyses every frame it delivers (frame_interval_ms = 0). With the
    // default 150 ms interval a frame that arrives a scheduling hiccup early is dropped, so a
    // loaded machine compares other pairs than the ones measured (CI once saw FaceNotLive).
    // Decided by the engine (a match, or its frame cap), not by the clock: see tests/face.rs.
    let section = camera.face_section(
        1000.0 / 150.0,
        "attempt_timeout_ms = 30000\nframe_interval_ms = 0",
    );
    let mut fixture = Fixture::start(kind, move |o| o.extra = section);
    for user in [PIN_USER, FACE_USER] {
        let enrol = fixture.daemon.aloha(
            &["pin", "set", "--user", user, "--pin-stdin"],
            &format!("{PIN}\n"),
        );
        if enrol.code != 0 {
            return Err(format!("aloha pin set: {enrol:?}"));
        }
    }
    match &face_data {
        Some((live, _)) => camera.show(&live[..12]),
        None => camera.show(&still_and_mirror("obama")),
    }
    let enrol = fixture.daemon.aloha(
        &["face", "enroll", "--user", FACE_USER, "--pin-stdin"],
        &format!("{PIN}\n"),
    );
    if enrol.code != 0 {
        return Err(format!("aloha face enroll: {enrol:?}"));
    }
    let module = artifact("libpam_aloha.so");
    let line = format!(
        "auth [success=done default=ignore] {} config={} face_timeout=30",
        module.display(),
        fixture.daemon.config_path().display()
    );
    for service in ["sudo", "su"] {
        system
            .pam_insert_before(service, "@include common-auth", &line)
            .map_err(step("pam.d"))?;
    }
    let setup_syslog = syslog.drain().len();

    let env = Env {
        syslog: &syslog,
        started,
    };
    let mut runs = vec![
        // (a) sudo with a PIN.
        env.run("sudo_pin", Tool::Sudo, PIN_USER, &[PIN]),
        env.run(
            "sudo_wrong_pin_wrong_password",
            Tool::Sudo,
            PIN_USER,
            &[WRONG_PIN, BAD_PASSWORD],
        ),
        env.run(
            "sudo_empty_pin_password",
            Tool::Sudo,
            PIN_USER,
            &["", PASSWORD],
        ),
        // (e) a failed PIN falls through to the password.
        env.run(
            "sudo_wrong_pin_password",
            Tool::Sudo,
            PIN_USER,
            &[WRONG_PIN, PASSWORD],
        ),
        // (b) su on a pty, run by another unprivileged user.
        env.run("su_pin", Tool::Su, PIN_USER, &[PIN]),
        env.run(
            "su_wrong_pin_wrong_password",
            Tool::Su,
            PIN_USER,
            &[WRONG_PIN, BAD_PASSWORD],
        ),
        env.run(
            "su_wrong_pin_password",
            Tool::Su,
            PIN_USER,
            &[WRONG_PIN, PASSWORD],
        ),
        // (c) a user without a PIN.
        env.run(
            "sudo_no_pin_password",
            Tool::Sudo,
            NOPIN_USER,
            &[NOPIN_PASSWORD],
        ),
        env.run(
            "su_no_pin_password",
            Tool::Su,
            NOPIN_USER,
            &[NOPIN_PASSWORD],
        ),
    ];
    // (f) the face through real sudo: "Looking for your face…" is shown although sudo passes
    // PAM_SILENT; a face alone signs in; a photo falls through to the PIN.
    match &face_data {
        Some((live, _)) => {
            camera.show(&live[12..]);
            runs.push(env.run("sudo_face", Tool::Sudo, FACE_USER, &[]));
        }
        None => runs.push(json!({
            "name": "sudo_face",
            "skipped": "the camera streams are not on this machine (ALOHA_FACE_DATASETS)",
        })),
    }
    match &face_data {
        Some((_, photo)) => camera.show(photo),
        None => camera.show(&[still("obama")]),
    }
    runs.push(env.run("sudo_face_photo_pin", Tool::Sudo, FACE_USER, &[PIN]));
    // (d) alohad down.
    let alohad_pid = fixture.daemon.pid();
    fixture.daemon.stop();
    let alohad_gone =
        alohad_pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
    runs.push(env.run(
        "sudo_daemon_down_password",
        Tool::Sudo,
        PIN_USER,
        &[PASSWORD],
    ));
    runs.push(env.run("su_daemon_down_password", Tool::Su, PIN_USER, &[PASSWORD]));

    let alohad_log = fixture.daemon.log();
    let swtpm_pid = fixture.swtpm.as_ref().and_then(|s| s.pid());
    drop(fixture);
    drop(syslog);

    // Anything still in the namespace but us was left behind: report it and end it by pid.
    let stray = namespace::end_strays(ns, Some(std::process::id()));
    let report = json!({
        "kind": match kind { Kind::Software => "software", Kind::Tpm => "tpm" },
        "secrets": [PIN, WRONG_PIN, PASSWORD, NOPIN_PASSWORD, OTHER_PASSWORD, BAD_PASSWORD, FACE_PASSWORD],
        "setup_syslog_lines": setup_syslog,
        "alohad_pid": alohad_pid,
        "alohad_gone_after_stop": alohad_gone,
        "swtpm_pid": swtpm_pid,
        "runs": runs,
        "alohad_log": alohad_log,
        "stray": stray,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    println!("{report}");
    Ok(())
}
