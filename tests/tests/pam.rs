//! pam_aloha.so in real libpam (pam_start_confdir), against a real alohad.
//!
//! The "probe" stack turns each return code of the module into a distinct result:
//! success → 0; PAM_IGNORE → the next line (pam_debug auth=try_again) → 24; any other code
//! ends the stack with the module's own code (default=die). pam_setcred on that stack is 0
//! only if the module itself vouches for the user.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aloha::protocol::PROTOCOL_VERSION;
use aloha_tests::both;
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::pam::*;
use aloha_tests::syslog::{self, Line};

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
        "probe-debug",
        &[
            &format!("auth [success=done ignore=ignore default=die] {module} debug"),
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
    /// pam_aloha gave up on the PIN and the stack went on: the line after it decides (pam_permit
    /// grants, pam_deny refuses).
    fn the_next_line_decides(&self) {
        for (service, rc) in [("permit", PAM_SUCCESS), ("deny", PAM_AUTH_ERR)] {
            let r = self.pam.authenticate(service, "nobody", &pin(PIN), 0, None);
            assert_eq!(r.rc, rc, "{service}: {r:?}");
        }
    }

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
        ok.transcript.hidden_prompts(),
        vec!["PIN: "],
        "the PIN is asked with echo off"
    );
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
        last.transcript.errors()[0] == "Wrong PIN. Your PIN is now locked: use your password.",
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
        waiting.transcript.errors()[0]
            == "Too many wrong PINs: next try in 10 minutes. Use your password.",
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
    s.the_next_line_decides();
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
/// signature against the registered key, and anything else after the PIN is a denial.
#[test]
fn an_impostor_on_the_socket_is_denied() {
    let mut s = setup(Kind::Software, "");
    s.f.daemon.stop();
    for forged in [Forgery::RandomSignature, Forgery::Garbage] {
        let impostor = Impostor::start(&s.f.daemon.socket(), forged, Duration::ZERO);
        let r = s.probe("nobody", &pin(PIN));
        assert_eq!(r.rc, PAM_AUTH_ERR, "{forged:?}: {r:?}");
        assert_eq!(
            r.transcript.errors(),
            vec!["Aloha's answer was not valid; use your password."],
            "{forged:?}"
        );
        assert_ne!(r.setcred, PAM_SUCCESS);
        // While the impostor is still there: the stack goes on to the next line, which decides.
        assert_eq!(
            s.pam.authenticate("deny", "nobody", &pin(PIN), 0, None).rc,
            PAM_AUTH_ERR
        );
        assert_eq!(
            s.pam
                .authenticate("permit", "nobody", &pin(PIN), 0, None)
                .rc,
            PAM_SUCCESS
        );
        let ops = impostor.stop();
        assert_eq!(
            ops.iter().filter(|op| *op == "sign_in").count(),
            3,
            "{forged:?}: the PIN reached the impostor each time: {ops:?}"
        );
    }
}

/// `timeout=` bounds all waiting for alohad in one pam_authenticate, not each step.
#[test]
fn timeout_bounds_the_whole_wait_for_the_daemon() {
    let s = setup(Kind::Software, "");
    let socket = s.pam.file("stall.sock");
    for (name, timeout) in [("stall4", 4), ("stall2", 2), ("stall1", 1)] {
        s.pam.service(
            name,
            &[
                &format!(
                    "auth [success=done ignore=ignore default=die] MODULE config={} socket={} timeout={timeout}",
                    s.f.daemon.config_path().display(),
                    socket.display()
                ),
                "auth requisite pam_debug.so auth=try_again",
            ],
        );
    }
    let attempt = |service: &str, forged: Forgery, delay_ms: u64| {
        let impostor = Impostor::start(&socket, forged, Duration::from_millis(delay_ms));
        let t = Instant::now();
        let r = s.pam.authenticate(service, "nobody", &pin(PIN), 0, None);
        let took = t.elapsed();
        (r, took, impostor.stop())
    };

    // Each reply 1.5 s late: every step is well within 4 s, but hello + status (3 s) leave
    // less than the 2 s a sign-in is given at least. No PIN is asked for, none is sent.
    // (The harness then calls pam_setcred, as no real application does after a failure; its
    // check for a paused face is a second hello + status.)
    let (r, _, ops) = attempt("stall4", Forgery::RandomSignature, 1500);
    assert_eq!(r.rc, PAM_AUTHINFO_UNAVAIL, "{r:?}");
    assert!(r.transcript.prompts().is_empty(), "{r:?}");
    assert_eq!(ops[..2], ["hello", "status"], "{ops:?}");
    assert!(
        !ops.iter().any(|op| op == "sign_in"),
        "the PIN was sent: {ops:?}"
    );

    // Each reply 1.5 s late with timeout=2: a deadline per step would let every step finish
    // and send the PIN; one budget gives up during the status request. Which request the
    // budget ends in depends on scheduling, so only "never got as far as the PIN" is asserted.
    let (r, took, ops) = attempt("stall2", Forgery::RandomSignature, 1500);
    assert_eq!(r.rc, PAM_AUTHINFO_UNAVAIL, "{r:?}");
    assert!(r.transcript.prompts().is_empty(), "{r:?}");
    assert_eq!(ops.first().map(String::as_str), Some("hello"), "{ops:?}");
    assert!(
        !ops.iter().any(|op| op == "sign_in"),
        "the PIN was sent: {ops:?}"
    );
    // A hang guard, not a speed test.
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} for a 2 s timeout"
    );

    // Silent once it has the PIN: denied when the budget runs out.
    let (r, _, ops) = attempt("stall1", Forgery::Silence, 0);
    assert_eq!(r.rc, PAM_AUTH_ERR, "{r:?}");
    assert_eq!(
        r.transcript.errors(),
        vec!["Aloha did not answer in time; use your password."]
    );
    assert_eq!(ops[..4], ["hello", "status", "hello", "sign_in"], "{ops:?}");
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
    // Listens, never accepts: connect(2) succeeds, the greeting never comes.
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

/// alohad lost the user's container but the registry still has the key (a half-finished
/// removal, a restored backup): nothing to sign in with, so the password decides.
#[test]
fn a_registered_key_without_a_container_falls_through() {
    let s = setup(Kind::Software, "");
    let state = s.f.daemon.state_dir();
    std::fs::remove_file(state.join("private/users/nobody/container.json")).unwrap();
    assert!(state.join("public/nobody.pub").exists());
    let r = s.probe("nobody", &pin(PIN));
    assert_eq!(r.rc, PAM_AUTHINFO_UNAVAIL, "{r:?}");
    assert!(
        r.transcript.messages.is_empty(),
        "no prompt, no message: {r:?}"
    );
    s.the_next_line_decides();
}

/// The module's pam_syslog lines, caught by pam-client in a private namespace with a sink
/// at /dev/log: LOG_AUTHPRIV, one result line per sign-in, each step at LOG_DEBUG only with
/// `debug`, and never the PIN.
/// pamtester (real libpam under pam_wrapper, service files from `dir`) running `ops` for
/// `user`: its exit status and output.
fn pamtester(dir: &Path, service: &str, user: &str, ops: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("pamtester")
        .args(["-v", service, user])
        .args(ops)
        .env("LD_PRELOAD", "libpam_wrapper.so")
        .env("PAM_WRAPPER", "1")
        .env("PAM_WRAPPER_SERVICE_DIR", dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run pamtester (package pamtester)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The account, session and password hooks answer PAM_IGNORE, for an enrolled user with alohad
/// up. Each line is `[ignore=ignore default=die]` before pam_permit: the stack succeeds only if
/// the module returned exactly PAM_IGNORE (PAM_SUCCESS, or any error, ends it in failure).
#[test]
fn account_session_and_password_hooks_are_ignored() {
    let s = setup(Kind::Software, "");
    let cfg = format!("config={}", s.f.daemon.config_path().display());
    let stack = |module: &str| -> Vec<String> {
        ["account", "session", "password"]
            .iter()
            .map(|t| format!("{t} [ignore=ignore default=die] {module}"))
            .chain(
                ["account", "session", "password"]
                    .iter()
                    .map(|t| format!("{t} required pam_permit.so")),
            )
            .collect()
    };
    let lines = stack(&format!("MODULE {cfg}"));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    s.pam.service("hooks", &lines);
    // The same stack with a module that answers PAM_SUCCESS must fail: the probe can tell.
    let control = stack("pam_permit.so");
    let control: Vec<&str> = control.iter().map(String::as_str).collect();
    s.pam.service("hooks-control", &control);

    for op in ["acct_mgmt", "open_session", "close_session", "chauthtok"] {
        let (ok, out) = pamtester(s.pam.path(), "hooks", "nobody", &[op]);
        assert!(ok, "{op}: pam_aloha did not answer PAM_IGNORE:\n{out}");
        let (ok, out) = pamtester(s.pam.path(), "hooks-control", "nobody", &[op]);
        assert!(
            !ok,
            "{op}: the probe stack cannot tell PAM_SUCCESS from PAM_IGNORE:\n{out}"
        );
    }
    // Nothing of this reached alohad as a sign-in attempt.
    assert!(
        !s.f.daemon.log().contains("sign-in attempt"),
        "{}",
        s.f.daemon.log()
    );
}

#[test]
fn syslog_is_authpriv_and_debug_lines_come_only_with_debug() {
    let s = setup(Kind::Software, "");
    let lines = |service: &str| -> Vec<Line> {
        let mut cmd =
            std::process::Command::new(aloha_tests::build::profile_dir().join("pam-client"));
        cmd.arg(s.pam.path()).args([service, "nobody", "--syslog"]);
        let r = aloha_tests::daemon::run_with_stdin(cmd, &format!("{PIN}\n"));
        assert_eq!(r.code, 0, "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["rc"], PAM_SUCCESS, "{v}");
        let all: Vec<Line> = v["syslog"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| Line {
                priority: l["priority"].as_u64().unwrap() as u32,
                text: l["text"].as_str().unwrap().to_string(),
            })
            .collect();
        // Every line the sink caught, not only the module's own.
        for l in &all {
            assert!(!l.text.contains(PIN), "the PIN in syslog: {l:?}");
        }
        all.into_iter()
            .filter(|l| l.text.contains(&format!("pam_aloha({service}:auth): ")))
            .collect()
    };
    for service in ["probe", "probe-debug"] {
        let lines = lines(service);
        for l in &lines {
            assert_eq!(l.facility(), syslog::AUTHPRIV, "not LOG_AUTHPRIV: {l:?}");
        }
        let (debug, results): (Vec<&Line>, Vec<&Line>) =
            lines.iter().partition(|l| l.severity() == syslog::DEBUG);
        assert_eq!(results.len(), 1, "{service}: {lines:#?}");
        assert!(
            results[0].text.contains(&format!(
                "user=\"nobody\" service=\"{service}\" result=success"
            )),
            "{results:?}"
        );
        if service == "probe" {
            assert!(debug.is_empty(), "debug lines without `debug`: {debug:#?}");
            continue;
        }
        let state = s.f.daemon.state_dir();
        for want in [
            "arguments: socket=(default) config=".to_string(),
            format!("socket {}", s.f.daemon.socket().display()),
            format!(
                "registered key at {}",
                state.join("public/nobody.pub").display()
            ),
            "alohad status: enrolled=true backend=software vault".to_string(),
            "asking for the PIN".to_string(),
            "reply: signed".to_string(),
            "the signature verifies against".to_string(),
        ] {
            assert!(
                debug.iter().any(|l| l.text.contains(&want)),
                "no debug line with {want:?}: {debug:#?}"
            );
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Forgery {
    RandomSignature,
    Garbage,
    /// Takes the PIN and never answers.
    Silence,
}

/// Something on alohad's socket that is not alohad: it speaks the protocol well enough to get
/// the PIN, waits `delay` before every reply, and answers the sign-in with a forgery. The test
/// runs as root, so it passes the module's check that the peer is root.
struct Impostor {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Impostor {
    fn start(path: &Path, forged: Forgery, delay: Duration) -> Impostor {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut ops = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, forged, delay, &flag, &mut ops),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("impostor: accept: {e}"),
                }
            }
            ops
        });
        Impostor {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        }
    }

    /// Stop it; the requests it received, in order.
    fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let ops = self.thread.take().unwrap().join().unwrap();
        std::fs::remove_file(&self.path).unwrap();
        ops
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One connection, until the module hangs up (or the impostor is stopped).
fn serve(
    mut s: UnixStream,
    forged: Forgery,
    delay: Duration,
    stop: &AtomicBool,
    ops: &mut Vec<String>,
) {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while let Some(req) = recv(&mut s, stop) {
        let op = req["op"].as_str().unwrap_or("?").to_string();
        ops.push(op.clone());
        std::thread::sleep(delay);
        let body: Vec<u8> = match (op.as_str(), forged) {
            ("hello", _) => format!(
                r#"{{"reply":"hello","version":{PROTOCOL_VERSION},"daemon":"impostor"}}"#
            )
            .into_bytes(),
            ("status", _) => br#"{"reply":"status","user":"nobody","uid":65534,"enrolled":true,"failed_attempts":0,"max_attempts":10,"gate":{"state":"open","left_before_delay":3,"left_before_lock":10}}"#.to_vec(),
            ("sign_in", Forgery::Silence) => continue,
            ("sign_in", Forgery::Garbage) => b"\xde\xad\xbe\xef not a reply".to_vec(),
            ("sign_in", Forgery::RandomSignature) => {
                let mut sig = [0u8; 64];
                getrandom(&mut sig);
                format!(
                    r#"{{"reply":"signed","signature":"{}","backend":"tpm"}}"#,
                    aloha::hex::encode(&sig)
                )
                .into_bytes()
            }
            (other, _) => panic!("impostor: unexpected request {other}"),
        };
        if send(&mut s, &body).is_err() {
            // The module gave up waiting and hung up.
            return;
        }
    }
}

fn send(s: &mut UnixStream, body: &[u8]) -> std::io::Result<()> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    s.write_all(&v)
}

/// Fill `buf`; false on end of stream, an error, or a stop.
fn fill(s: &mut UnixStream, buf: &mut [u8], stop: &AtomicBool) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

fn recv(s: &mut UnixStream, stop: &AtomicBool) -> Option<serde_json::Value> {
    let mut len = [0u8; 4];
    if !fill(s, &mut len, stop) {
        return None;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    if !fill(s, &mut body, stop) {
        return None;
    }
    Some(serde_json::from_slice(&body).unwrap())
}

fn getrandom(buf: &mut [u8]) {
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}
