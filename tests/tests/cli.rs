//! The `aloha` CLI against a real alohad, on the software vault and on swtpm.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use aloha_tests::both;
use aloha_tests::fixture::{Fixture, Kind};
use serde_json::Value;

const NOBODY: u32 = 65534;
const PIN: &str = "482915";
const WRONG: &str = "739164";

fn status(f: &Fixture, user: &str) -> Value {
    let run = f.daemon.aloha(&["status", "--json", "--user", user], "");
    run.ok();
    serde_json::from_str(&run.stdout).unwrap()
}

fn enrol_nobody(f: &Fixture) {
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
}

fn verify_nobody(f: &Fixture, pin: &str) -> aloha_tests::daemon::Run {
    f.daemon
        .aloha_as(NOBODY, &["verify", "--pin-stdin"], &format!("{pin}\n"))
}

fn set_verify_wrong_right(kind: Kind) {
    let f = Fixture::start(kind, |_| {});
    enrol_nobody(&f);
    let ok = verify_nobody(&f, PIN);
    ok.ok();
    let backend = if kind == Kind::Tpm {
        "TPM 2.0"
    } else {
        "software vault"
    };
    assert!(
        ok.stdout.contains(&format!(
            "Verified: nobody signed a fresh challenge with the key in the {backend}"
        )),
        "{ok:?}"
    );
    verify_nobody(&f, WRONG).refused("Wrong PIN. 2 more tries before a waiting time.");
    assert_eq!(status(&f, "nobody")["failed_attempts"], 1);
    verify_nobody(&f, PIN).ok();
    assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
    // The status says plainly what protects the key.
    let text = f.daemon.aloha(&["status", "--user", "nobody"], "");
    text.ok();
    assert!(text.stdout.contains(backend), "{}", text.stdout);
    if kind == Kind::Software {
        assert!(text.stdout.contains("offline"), "{}", text.stdout);
    } else {
        assert!(text.stdout.contains("TPM lockout:"), "{}", text.stdout);
    }
    // Every attempt is one log line with user, caller uid, service and result.
    let log = f.daemon.log();
    assert!(log.contains("user=\"nobody\" caller_uid=65534"), "{log}");
    assert!(
        log.contains("service=\"aloha-verify\" result=\"WrongPin\""),
        "{log}"
    );
    assert!(
        !log.contains(PIN) && !log.contains(WRONG),
        "a PIN reached the log:\n{log}"
    );
}

fn lockout_tiers(kind: Kind) {
    let f = Fixture::start(kind, |o| {
        o.extra = "[lockout]\nfree_attempts = 2\ndelay_seconds = [600]\nmax_attempts = 4\n".into();
    });
    enrol_nobody(&f);
    verify_nobody(&f, WRONG).refused("1 more try before a waiting time");
    verify_nobody(&f, WRONG).refused("Another wrong PIN starts a waiting time; 2 more lock it.");
    verify_nobody(&f, WRONG).refused("Next try in 10 minutes");
    // During the delay even the right PIN is refused, and not counted.
    verify_nobody(&f, PIN).refused("try again in 10 minutes");
    let s = status(&f, "nobody");
    assert_eq!(s["failed_attempts"], 3);
    assert_eq!(s["gate"]["state"], "delayed");
    f.daemon
        .aloha(&["admin", "unlock", "--user", "nobody"], "")
        .ok();
    verify_nobody(&f, PIN).ok();
}

fn hard_lock_and_reset(kind: Kind) {
    let f = Fixture::start(kind, |o| {
        o.extra = "[lockout]\nfree_attempts = 1\ndelay_seconds = [0]\nmax_attempts = 3\n".into();
        o.passwords = vec![("nobody".into(), "nobody-pw".into())];
    });
    enrol_nobody(&f);
    for _ in 0..2 {
        verify_nobody(&f, WRONG).refused("Wrong PIN");
    }
    verify_nobody(&f, WRONG).refused("now locked after 3 wrong tries — use your password");
    verify_nobody(&f, PIN).refused("PIN is locked after 3 wrong tries — use your password");
    assert_eq!(status(&f, "nobody")["gate"]["state"], "locked");
    // The user lifts the lock with the account password and a new PIN: a new key.
    let key_before = std::fs::read(f.daemon.state_dir().join("public/nobody.pub")).unwrap();
    f.daemon
        .aloha_as(
            NOBODY,
            &["pin", "reset", "--pin-stdin"],
            "wrong-pw\n918273\n",
        )
        .refused("The account password is wrong.");
    f.daemon
        .aloha_as(
            NOBODY,
            &["pin", "reset", "--pin-stdin"],
            "nobody-pw\n918273\n",
        )
        .ok();
    let key_after = std::fs::read(f.daemon.state_dir().join("public/nobody.pub")).unwrap();
    assert_ne!(key_before, key_after, "a reset makes a new key");
    verify_nobody(&f, PIN).refused("Wrong PIN");
    verify_nobody(&f, "918273").ok();
}

fn uid_rule(kind: Kind) {
    let f = Fixture::start(kind, |o| {
        o.passwords = vec![("nobody".into(), "nobody-pw".into())]
    });
    f.daemon
        .aloha(&["pin", "set", "--pin-stdin"], &format!("{PIN}\n"))
        .ok(); // root's own PIN
    let as_nobody = |args: &[&str], stdin: &str| f.daemon.aloha_as(NOBODY, args, stdin);
    as_nobody(
        &["verify", "--user", "root", "--pin-stdin"],
        &format!("{PIN}\n"),
    )
    .refused("uid 65534 may only act for itself, not for root");
    as_nobody(&["status", "--user", "root"], "").refused("may only act for itself");
    as_nobody(
        &["pin", "set", "--user", "root", "--pin-stdin"],
        "nobody-pw\n918273\n",
    )
    .refused("may only act for itself");
    as_nobody(
        &["pin", "reset", "--user", "root", "--pin-stdin"],
        "nobody-pw\n918273\n",
    )
    .refused("may only act for itself");
    as_nobody(&["admin", "unlock", "--user", "root"], "").refused("Only root");
    as_nobody(&["admin", "remove", "--user", "root"], "").refused("Only root");
    // None of that cost root an attempt.
    assert_eq!(status(&f, "root")["failed_attempts"], 0);
    // A non-root user enrols itself with its account password.
    as_nobody(&["pin", "set", "--pin-stdin"], "bad\n918273\n")
        .refused("The account password is wrong.");
    as_nobody(&["pin", "set", "--pin-stdin"], "nobody-pw\n918273\n").ok();
    as_nobody(&["verify", "--pin-stdin"], "918273\n").ok();
    as_nobody(&["pin", "set", "--pin-stdin"], "nobody-pw\n918274\n").refused("already has a PIN");
}

fn kill9_keeps_the_count(kind: Kind) {
    let mut f = Fixture::start(kind, |_| {});
    enrol_nobody(&f);
    verify_nobody(&f, WRONG).refused("Wrong PIN");
    verify_nobody(&f, WRONG).refused("Wrong PIN");
    f.daemon.kill9();
    f.daemon.spawn();
    assert_eq!(status(&f, "nobody")["failed_attempts"], 2);
    verify_nobody(&f, WRONG)
        .refused("Wrong PIN. Another wrong PIN starts a waiting time; 7 more lock it.");
    f.daemon.kill9();
    f.daemon.spawn();
    verify_nobody(&f, WRONG).refused("Wrong PIN. Next try in 30 seconds");
}

fn change_and_policy(kind: Kind) {
    let f = Fixture::start(kind, |o| {
        o.extra = "[pin]\nmin_length = 6\ndigits = \"require\"\nhistory = 2\n".into()
    });
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            "123456\n",
        )
        .refused("straight run such as 123456");
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            "48291\n",
        )
        .refused("at least 6 characters");
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            "abcxyzq\n",
        )
        .refused("must contain a digit");
    enrol_nobody(&f);
    let change = |cur: &str, new: &str| {
        f.daemon.aloha_as(
            NOBODY,
            &["pin", "change", "--pin-stdin"],
            &format!("{cur}\n{new}\n"),
        )
    };
    change(WRONG, "918273").refused("Wrong PIN");
    change(PIN, PIN).refused("may not repeat any of your last 2 PINs");
    change(PIN, "918273").ok();
    verify_nobody(&f, PIN).refused("Wrong PIN");
    verify_nobody(&f, "918273").ok();
    let s = status(&f, "nobody");
    assert_eq!(s["failed_attempts"], 0);
}

fn corrupt_state_is_reported(kind: Kind) {
    let f = Fixture::start(kind, |_| {});
    enrol_nobody(&f);
    let attempts = f
        .daemon
        .state_dir()
        .join("private/users/nobody/attempts.json");
    std::fs::write(&attempts, "{\"version\": 1, \"failu").unwrap();
    verify_nobody(&f, PIN).refused(&attempts.display().to_string());
    assert_eq!(
        std::fs::read_to_string(&attempts).unwrap(),
        "{\"version\": 1, \"failu"
    );
    let text = f.daemon.aloha(&["status", "--user", "nobody"], "");
    assert!(text.stdout.contains("PROBLEM:"), "{text:?}");
    f.daemon
        .aloha(&["admin", "unlock", "--user", "nobody"], "")
        .ok();
    verify_nobody(&f, PIN).ok();
    // A truncated container: refused with its path, kept for inspection; reset replaces it.
    let container = f
        .daemon
        .state_dir()
        .join("private/users/nobody/container.json");
    let bytes = std::fs::read(&container).unwrap();
    std::fs::write(&container, &bytes[..bytes.len() / 2]).unwrap();
    verify_nobody(&f, PIN).refused("container.json is corrupt");
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            "918273\n",
        )
        .refused("corrupt");
    f.daemon
        .aloha(
            &["pin", "reset", "--user", "nobody", "--pin-stdin"],
            "918273\n",
        )
        .ok();
    verify_nobody(&f, "918273").ok();
    f.daemon
        .aloha(&["admin", "remove", "--user", "nobody"], "")
        .ok();
    verify_nobody(&f, "918273").refused("nobody has no Aloha PIN");
}

fn concurrent_attempts_never_exceed_the_limit(kind: Kind) {
    let f = Fixture::start(kind, |o| {
        o.extra = "[lockout]\nfree_attempts = 3\ndelay_seconds = [0]\nmax_attempts = 5\n".into();
    });
    enrol_nobody(&f);
    let runs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| verify_nobody(&f, WRONG)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let wrong = runs
        .iter()
        .filter(|r| r.stderr.contains("Wrong PIN"))
        .count();
    let locked = runs
        .iter()
        .filter(|r| r.stderr.contains("is locked after 5 wrong tries"))
        .count();
    assert_eq!((wrong, locked), (5, 15), "{runs:#?}");
    assert_eq!(status(&f, "nobody")["failed_attempts"], 5);
}

both!(
    set_verify_wrong_right,
    lockout_tiers,
    hard_lock_and_reset,
    uid_rule,
    kill9_keeps_the_count,
    change_and_policy,
    corrupt_state_is_reported,
    concurrent_attempts_never_exceed_the_limit,
);

/// A crash in the middle of an attempt with the right PIN still costs an attempt: the count
/// is on disk before the key store sees the PIN (the software vault's Argon2id gives a window
/// of ~0.1 s to kill in).
#[test]
fn kill9_mid_attempt_never_yields_a_free_guess() {
    let mut f = Fixture::start(Kind::Software, |_| {});
    enrol_nobody(&f);
    let attempts = f
        .daemon
        .state_dir()
        .join("private/users/nobody/attempts.json");
    let before = std::fs::read_to_string(&attempts).unwrap();
    assert!(before.contains("\"failures\": 0"), "{before}");
    let mut child = std::process::Command::new(aloha_tests::build::artifact("aloha"))
        .args(["--config"])
        .arg(f.daemon.config_path())
        .args(["verify", "--user", "nobody", "--pin-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PIN}\n").as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::read_to_string(&attempts).unwrap_or_default();
        if now.contains("\"failures\": 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the attempt was never written ahead"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    f.daemon.kill9();
    let _ = child.wait();
    f.daemon.spawn();
    assert_eq!(
        status(&f, "nobody")["failed_attempts"],
        1,
        "the killed attempt was counted"
    );
    verify_nobody(&f, PIN).ok();
}

// ---------------------------------------------------------------- the socket itself

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn read_reply(s: &mut UnixStream) -> Value {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn hello(s: &mut UnixStream) {
    s.write_all(&frame(br#"{"op":"hello","version":1,"client":"test"}"#))
        .unwrap();
    assert_eq!(read_reply(s)["reply"], "hello");
}

fn closed(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn bad_clients_get_a_clear_error_and_cost_nothing() {
    let f = Fixture::start(Kind::Software, |_| {});
    enrol_nobody(&f);
    let sock = f.daemon.socket();
    // Oversize: refused from the header alone.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r["code"], "bad_request");
    assert!(
        r["message"].as_str().unwrap().contains("exceeds the limit"),
        "{r}"
    );
    assert!(closed(&mut s));
    // Garbage JSON.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&frame(b"\x00\x01not json")).unwrap();
    assert_eq!(read_reply(&mut s)["code"], "bad_request");
    // No hello first.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&frame(br#"{"op":"status","user":"nobody"}"#))
        .unwrap();
    let r = read_reply(&mut s);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("first message must be hello"),
        "{r}"
    );
    // Another protocol version.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&frame(br#"{"op":"hello","version":99,"client":"test"}"#))
        .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r["code"], "version_mismatch");
    // Truncated frame, then hang up: the daemon shrugs.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(b"{\"op\":").unwrap();
    drop(s);
    // Unknown fields (a caller trying to claim a uid) are refused.
    let mut s = UnixStream::connect(&sock).unwrap();
    hello(&mut s);
    s.write_all(&frame(br#"{"op":"status","user":"nobody","uid":0}"#))
        .unwrap();
    assert_eq!(read_reply(&mut s)["code"], "bad_request");
    // The daemon is fine and nothing was counted.
    assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
    verify_nobody(&f, PIN).ok();
}

#[test]
fn a_silent_client_neither_stalls_others_nor_lives_forever() {
    let f = Fixture::start(Kind::Software, |o| o.extra = String::new());
    enrol_nobody(&f);
    // A client that connects and says nothing, and one that stops mid-frame.
    let mut silent = UnixStream::connect(f.daemon.socket()).unwrap();
    let mut stuck = UnixStream::connect(f.daemon.socket()).unwrap();
    stuck.write_all(&50u32.to_be_bytes()).unwrap();
    // Others are served meanwhile.
    let t = Instant::now();
    verify_nobody(&f, PIN).ok();
    assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
    let served_in = t.elapsed();
    // And the silent ones are dropped after the frame deadline (5 s by default).
    assert!(closed(&mut silent));
    assert!(closed(&mut stuck));
    eprintln!("served another client in {served_in:?} while two were stalled");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aloha.toml");
    std::fs::write(&path, "[daemon]\nsokcet = \"/tmp/x\"\n").unwrap();
    let mut cmd = std::process::Command::new(aloha_tests::build::artifact("alohad"));
    cmd.arg("--check-config").arg("--config").arg(&path);
    let run = aloha_tests::daemon::run_with_stdin(cmd, "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("sokcet"), "{run:?}");
    std::fs::write(
        &path,
        "[pin]\nmin_length = 8\n[tpm]\nbackend = \"software\"\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new(aloha_tests::build::artifact("alohad"));
    cmd.arg("--check-config").arg("--config").arg(&path);
    let run = aloha_tests::daemon::run_with_stdin(cmd, "");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("min_length = 8"), "{run:?}");
    // The CLI refuses the same bad file before talking to anyone.
    std::fs::write(&path, "[lockout]\nmax_attempts = 0\n").unwrap();
    let mut cmd = std::process::Command::new(aloha_tests::build::artifact("aloha"));
    cmd.arg("--config").arg(&path).arg("status");
    let run = aloha_tests::daemon::run_with_stdin(cmd, "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("lockout.max_attempts"), "{run:?}");
}

#[test]
fn no_daemon_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aloha.toml");
    std::fs::write(
        &path,
        format!(
            "[daemon]\nsocket = \"{}/none.sock\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(aloha_tests::build::artifact("aloha"));
    cmd.arg("--config")
        .arg(&path)
        .args(["status", "--user", "root"]);
    let run = aloha_tests::daemon::run_with_stdin(cmd, "");
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("is alohad running?"), "{run:?}");
}
