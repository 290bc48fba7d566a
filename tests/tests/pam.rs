//! pam_aloha.so in real libpam (pam_start_confdir), against a real alohad.
//!
//! The "probe" stack turns each return code of the module into a distinct result:
//! success → 0; PAM_IGNORE → the next line (pam_debug auth=try_again) → 24; any other code
//! ends the stack with the module's own code (default=die). pam_setcred on that stack is 0
//! only if the module itself vouches for the user.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use aloha_tests::both;
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::pam::*;

const PIN: &str = "482915";
const WRONG: &str = "739164";

struct Setup {
    f: Fixture,
    pam: PamDir,
}

fn setup(kind: Kind, lockout: &str) -> Setup {
    let lockout = lockout.to_string();
    let f = Fixture::start(kind, move |o| o.extra = lockout);
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
    let pam = PamDir::new();
    let cfg = format!("config={}", f.daemon.config_path().display());
    let module = format!("MODULE {cfg}");
    pam.service(
        "probe",
        &[
            &format!("auth [success=done ignore=ignore default=die] {module}"),
            "auth requisite pam_debug.so auth=try_again cred=cred_unavail",
        ],
    );
    pam.service(
        "permit",
        &[
            &format!("auth [success=done default=ignore] {module}"),
            "auth required pam_permit.so",
        ],
    );
    pam.service(
        "deny",
        &[
            &format!("auth [success=done default=ignore] {module}"),
            "auth required pam_deny.so",
        ],
    );
    pam.service(
        "sshd",
        &[
            &format!("auth [success=done ignore=ignore default=die] {module}"),
            "auth requisite pam_debug.so auth=try_again",
        ],
    );
    Setup { f, pam }
}

impl Setup {
    fn probe(&self, user: &str, answers: &[Answer]) -> Auth {
        self.pam.authenticate("probe", user, answers, 0, None)
    }
    fn failures(&self) -> u64 {
        let run = self
            .f
            .daemon
            .aloha(&["status", "--json", "--user", "nobody"], "");
        run.ok();
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        v["failed_attempts"].as_u64().unwrap()
    }
}

fn right_and_wrong_pin(kind: Kind) {
    let s = setup(kind, "");
    let ok = s.probe("nobody", &pin(PIN));
    assert_eq!(ok.rc, PAM_SUCCESS, "{ok:?}");
    assert_eq!(ok.transcript.prompts(), vec!["PIN: "]);
    assert_eq!(
        ok.setcred, PAM_SUCCESS,
        "setcred vouches for the user we authenticated"
    );

    let bad = s.probe("nobody", &pin(WRONG));
    assert_eq!(bad.rc, PAM_AUTH_ERR, "{bad:?}");
    assert_eq!(
        bad.transcript.errors(),
        vec!["Wrong PIN. 2 more tries before a waiting time."]
    );
    assert_ne!(bad.setcred, PAM_SUCCESS);
    assert_eq!(s.failures(), 1);

    // PAM_SILENT: the same result, no messages.
    let quiet = s
        .pam
        .authenticate("probe", "nobody", &pin(WRONG), PAM_SILENT, None);
    assert_eq!(quiet.rc, PAM_AUTH_ERR);
    assert!(quiet.transcript.errors().is_empty(), "{quiet:?}");

    // In a real stack a wrong PIN falls through to the next module, which decides.
    assert_eq!(
        s.pam
            .authenticate("permit", "nobody", &pin(WRONG), 0, None)
            .rc,
        PAM_SUCCESS
    );
    assert_eq!(s.failures(), 3);
    assert_eq!(s.probe("nobody", &pin(PIN)).rc, PAM_SUCCESS);
    assert_eq!(s.failures(), 0);
    assert_eq!(
        s.pam
            .authenticate("deny", "nobody", &pin(WRONG), 0, None)
            .rc,
        PAM_AUTH_ERR
    );
    assert_eq!(s.failures(), 1);
}

both!(right_and_wrong_pin);

#[test]
fn lockout_is_refused_without_a_prompt_even_with_the_right_pin() {
    let s = setup(
        Kind::Software,
        "[lockout]\nfree_attempts = 1\ndelay_seconds = [0]\nmax_attempts = 2\n",
    );
    assert_eq!(s.probe("nobody", &pin(WRONG)).rc, PAM_AUTH_ERR);
    let last = s.probe("nobody", &pin(WRONG));
    assert_eq!(last.rc, PAM_MAXTRIES, "{last:?}");
    assert!(
        last.transcript.errors()[0].contains("now locked after 2 wrong tries — use your password"),
        "{last:?}"
    );
    let locked = s.probe("nobody", &pin(PIN));
    assert_eq!(locked.rc, PAM_MAXTRIES, "{locked:?}");
    assert!(
        locked.transcript.prompts().is_empty(),
        "no PIN prompt when locked: {locked:?}"
    );
    assert!(
        locked.transcript.errors()[0].contains("use your password"),
        "{locked:?}"
    );
    // The password path is untouched.
    assert_eq!(
        s.pam
            .authenticate("permit", "nobody", &pin(PIN), 0, None)
            .rc,
        PAM_SUCCESS
    );
    assert_eq!(s.failures(), 2);
}

#[test]
fn a_waiting_time_is_announced_without_a_prompt() {
    let s = setup(
        Kind::Software,
        "[lockout]\nfree_attempts = 1\ndelay_seconds = [600]\nmax_attempts = 5\n",
    );
    s.probe("nobody", &pin(WRONG));
    let second = s.probe("nobody", &pin(WRONG));
    assert!(
        second.transcript.errors()[0].contains("Next try in 10 minutes"),
        "{second:?}"
    );
    let waiting = s.probe("nobody", &pin(PIN));
    assert_eq!(waiting.rc, PAM_AUTH_ERR);
    assert!(waiting.transcript.prompts().is_empty(), "{waiting:?}");
    assert!(
        waiting.transcript.errors()[0].contains("try again in 10 minutes"),
        "{waiting:?}"
    );
    assert_eq!(s.failures(), 2);
}

#[test]
fn no_daemon_no_enrolment_or_a_remote_session_fall_through_without_a_prompt() {
    let mut s = setup(Kind::Software, "");
    // root has no PIN.
    let r = s.probe("root", &pin(PIN));
    assert_eq!(r.rc, PAM_AUTHINFO_UNAVAIL, "{r:?}");
    assert!(r.transcript.messages.is_empty(), "{r:?}");
    assert_eq!(
        s.pam.authenticate("permit", "root", &[], 0, None).rc,
        PAM_SUCCESS
    );
    // Remote sessions never see the PIN and cost nothing.
    let remote = s
        .pam
        .authenticate("probe", "nobody", &pin(WRONG), 0, Some("203.0.113.5"));
    assert_eq!(remote.rc, PROBE_IGNORED, "{remote:?}");
    assert!(
        remote.transcript.prompts().is_empty() && remote.transcript.errors().is_empty(),
        "{remote:?}"
    );
    let sshd = s.pam.authenticate("sshd", "nobody", &pin(WRONG), 0, None);
    assert_eq!(sshd.rc, PROBE_IGNORED, "{sshd:?}");
    assert_eq!(s.failures(), 0);
    let local = s
        .pam
        .authenticate("probe", "nobody", &pin(PIN), 0, Some("localhost"));
    assert_eq!(local.rc, PAM_SUCCESS, "{local:?}");
    // An unknown user is not our business.
    assert_eq!(s.probe("no-such-user-aloha", &pin(PIN)).rc, PROBE_IGNORED);
    // alohad stopped: the stack carries on to the next line, which decides.
    s.f.daemon.stop();
    let down = s.probe("nobody", &pin(PIN));
    assert_eq!(down.rc, PAM_AUTHINFO_UNAVAIL, "{down:?}");
    assert!(down.transcript.prompts().is_empty(), "{down:?}");
    assert_eq!(
        s.pam
            .authenticate("permit", "nobody", &pin(PIN), 0, None)
            .rc,
        PAM_SUCCESS
    );
    assert_eq!(
        s.pam.authenticate("deny", "nobody", &pin(PIN), 0, None).rc,
        PAM_AUTH_ERR
    );
}

#[test]
fn a_cancelled_or_empty_prompt_counts_nothing() {
    let s = setup(Kind::Software, "");
    let cancelled = s.probe("nobody", &[Answer::Fail]);
    assert_eq!(cancelled.rc, PROBE_IGNORED, "{cancelled:?}");
    let empty = s.probe("nobody", &pin(""));
    assert_eq!(empty.rc, PROBE_IGNORED, "{empty:?}");
    assert_eq!(s.failures(), 0);
    assert_eq!(
        s.pam
            .authenticate("deny", "nobody", &[Answer::Fail], 0, None)
            .rc,
        PAM_AUTH_ERR
    );
}

#[test]
fn an_unprivileged_application_signs_in_only_its_own_user() {
    let s = setup(Kind::Software, "");
    s.f.daemon
        .aloha(&["pin", "set", "--user", "root", "--pin-stdin"], "918273\n")
        .ok();
    // The PAM client must be able to read its service files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.pam.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = aloha_tests::build::profile_dir().join("pam-client");
    let run = |user: &str, pin: &str| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&client)
            .arg(s.pam.path())
            .args(["probe", user]);
        let r = aloha_tests::daemon::run_with_stdin(cmd, &format!("{pin}\n"));
        assert_eq!(r.code, 0, "{r:?}");
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap()
    };
    assert_eq!(run("nobody", PIN)["rc"], PAM_SUCCESS);
    // As nobody, for root: alohad refuses before any PIN is asked or counted.
    let other = run("root", "918273");
    assert_eq!(other["rc"], PAM_AUTHINFO_UNAVAIL, "{other}");
    let run =
        s.f.daemon
            .aloha(&["status", "--json", "--user", "root"], "");
    assert!(run.stdout.contains("\"failed_attempts\": 0"), "{run:?}");
}

/// A process that merely pretends to be alohad cannot grant access: the module checks the
/// signature against the registered key.
#[test]
fn an_impostor_on_the_socket_is_denied() {
    let mut s = setup(Kind::Software, "");
    s.f.daemon.stop();
    for forged in [Forgery::RandomSignature, Forgery::Garbage] {
        let listener = UnixListener::bind(s.f.daemon.socket()).unwrap();
        let server = std::thread::spawn(move || impostor(listener, forged));
        let r = s.probe("nobody", &pin(PIN));
        server.join().unwrap();
        std::fs::remove_file(s.f.daemon.socket()).unwrap();
        match forged {
            Forgery::RandomSignature => assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}"),
            Forgery::Garbage => assert_eq!(r.rc, PAM_AUTHINFO_UNAVAIL, "{r:?}"),
        }
        assert_ne!(r.setcred, PAM_SUCCESS);
        assert_eq!(
            s.pam.authenticate("deny", "nobody", &pin(PIN), 0, None).rc,
            PAM_AUTH_ERR
        );
    }
}

#[test]
fn a_daemon_that_never_answers_costs_one_timeout() {
    let s = setup(Kind::Software, "");
    s.pam.service(
        "slow",
        &[
            &format!(
                "auth [success=done ignore=ignore default=die] MODULE config={} socket={} timeout=1",
                s.f.daemon.config_path().display(),
                s.pam.file("mute.sock").display()
            ),
            "auth requisite pam_debug.so auth=try_again",
        ],
    );
    let listener = UnixListener::bind(s.pam.file("mute.sock")).unwrap();
    let t = Instant::now();
    let r = s.pam.authenticate("slow", "nobody", &pin(PIN), 0, None);
    assert_eq!(r.rc, PAM_AUTHINFO_UNAVAIL, "{r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "the module hung for {:?}",
        t.elapsed()
    );
    drop(listener);
}

#[derive(Debug, Clone, Copy)]
enum Forgery {
    RandomSignature,
    Garbage,
}

fn send(s: &mut std::os::unix::net::UnixStream, body: &[u8]) {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    s.write_all(&v).unwrap();
}

fn recv(s: &mut std::os::unix::net::UnixStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Speaks the protocol well enough to get the PIN, then answers with a forgery.
fn impostor(listener: UnixListener, forged: Forgery) {
    for _ in 0..2 {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(recv(&mut s)["op"], "hello");
        send(
            &mut s,
            br#"{"reply":"hello","version":1,"daemon":"impostor"}"#,
        );
        let req = recv(&mut s);
        match req["op"].as_str().unwrap() {
            "status" => send(
                &mut s,
                br#"{"reply":"status","user":"nobody","uid":65534,"enrolled":true,"failed_attempts":0,"max_attempts":10,"gate":{"state":"open","left_before_delay":3,"left_before_lock":10}}"#,
            ),
            "sign_in" => match forged {
                Forgery::RandomSignature => {
                    let mut sig = [0u8; 64];
                    getrandom(&mut sig);
                    let body = format!(r#"{{"reply":"signed","signature":"{}","backend":"tpm"}}"#, aloha::hex::encode(&sig));
                    send(&mut s, body.as_bytes());
                }
                Forgery::Garbage => send(&mut s, b"\xde\xad\xbe\xef not a reply"),
            },
            other => panic!("unexpected {other}"),
        }
    }
}

fn getrandom(buf: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}
