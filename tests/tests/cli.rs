//! The `aloha` CLI against a real alohad, on the software vault and on swtpm.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use aloha::protocol::PROTOCOL_VERSION;
use aloha_tests::both;
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::pty::{Channel, Session};
use serde_json::Value;

const NOBODY: u32 = 65534;
/// After a wrong account password alohad checks none for that user for 2 s (whole seconds).
const PASSWORD_WAIT: Duration = Duration::from_millis(2100);
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
    // Every attempt is one log line with user, caller uid, service, factor and result.
    let log = f.daemon.log();
    assert!(log.contains("user=\"nobody\" caller_uid=65534"), "{log}");
    assert!(
        log.contains("service=\"aloha-verify\" factor=\"pin\" result=\"WrongPin\""),
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
    std::thread::sleep(PASSWORD_WAIT);
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
    // A wrong password earns a wait before the next check, as su's pam_unix does (2 s in
    // whole seconds: 1 s may be left by the time this asks; the service tests pin the values).
    as_nobody(&["pin", "set", "--pin-stdin"], "nobody-pw\n918273\n")
        .refused("The last account password for nobody was wrong: try again in");
    std::thread::sleep(PASSWORD_WAIT);
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
        // All 20 must reach the attempt logic at once, not wait in line behind the per-uid
        // connection cap (4 by default).
        o.daemon_extra = "max_connections_per_uid = 32\n".into();
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
/// is on disk before the key store sees the PIN. The kill comes as soon as the count is on disk
/// (the software vault's Argon2id gives a window of ~0.1 s; on swtpm the TPM is frozen with
/// SIGSTOP at that moment, so the daemon cannot finish the attempt before it dies). An attempt
/// that still finished before the kill (the CLI got its signature) proves nothing, and is tried
/// again.
fn kill9_mid_attempt_never_yields_a_free_guess(kind: Kind) {
    let mut f = Fixture::start(kind, |_| {});
    enrol_nobody(&f);
    let attempts = f
        .daemon
        .state_dir()
        .join("private/users/nobody/attempts.json");
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
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
        let tpm_pid = f.swtpm.as_ref().and_then(|t| t.pid());
        {
            // Frozen only while alohad is killed; resumed even if the kill panics.
            let _frozen = tpm_pid.map(Frozen::stop);
            f.daemon.kill9();
        }
        // What the dead daemon left: the reset is written before the reply, so a kill between
        // the two leaves 0 on disk and the CLI without its signature.
        let on_disk = std::fs::read_to_string(&attempts).unwrap();
        let cli = child.wait().unwrap();
        f.daemon.spawn();
        if on_disk.contains("\"failures\": 0") {
            // The attempt was done (and the count reset) before the kill: no proof either way.
            eprintln!("round {round}: the attempt finished before the kill ({cli:?}); again");
            assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
            continue;
        }
        assert!(on_disk.contains("\"failures\": 1"), "{on_disk}");
        assert_eq!(cli.code(), Some(3), "the CLI saw alohad die: {cli:?}");
        assert_eq!(
            status(&f, "nobody")["failed_attempts"],
            1,
            "the killed attempt was counted"
        );
        verify_nobody(&f, PIN).ok();
        assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
        return;
    }
    panic!("no attempt was caught in flight in {ROUNDS} rounds");
}

/// A process held with SIGSTOP until this is dropped.
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn stop(pid: u32) -> Self {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

both!(kill9_mid_attempt_never_yields_a_free_guess);

// ---------------------------------------------------------------- the TPM's own lockout

/// An NV index with an authValue: DA-protected, so each wrong authorization of it counts in the
/// TPM's global lockout counter, as another TPM user's (or another PIN system's) would.
const SCRATCH_NV: &str = "0x1500016";

/// Make `n` wrong authorizations on the TPM behind `f` outside Aloha (tpm2-tools). swtpm
/// serves one client at a time, so alohad is stopped meanwhile and started again after.
fn foreign_da_failures(f: &mut Fixture, n: u32) {
    f.daemon.stop();
    let tpm = f.swtpm.as_ref().unwrap();
    let data = f.daemon.dir().join("nv-data");
    if !data.exists() {
        std::fs::write(&data, b"12345678").unwrap();
        tpm.tpm2_tool(
            "tpm2_nvdefine",
            &[
                SCRATCH_NV,
                "-C",
                "o",
                "-s",
                "8",
                "-a",
                "authread|authwrite",
                "-p",
                "scratch-auth",
            ]
            .map(String::from),
        )
        .unwrap();
    }
    let data = data.display().to_string();
    for _ in 0..n {
        let r = tpm.tpm2_tool(
            "tpm2_nvwrite",
            &[SCRATCH_NV, "-C", SCRATCH_NV, "-P", "wrong", "-i", &data].map(String::from),
        );
        assert!(r.is_err(), "a wrong authValue was accepted");
    }
    f.daemon.spawn();
}

/// A sign-in straight on the socket (as root), to see the refusal's code and retry time.
fn sign_in_refusal(f: &Fixture) -> aloha::protocol::Failure {
    use aloha::client::{Client, ClientError};
    use aloha::protocol::Request;
    let mut c = Client::connect(&f.daemon.socket(), Duration::from_secs(20), "test").unwrap();
    let r = c.call(&Request::SignIn {
        user: "nobody".into(),
        service: "test".into(),
        nonce: aloha::challenge::Nonce::random().unwrap(),
        pin: aloha::Secret::new(PIN),
        vault: false,
    });
    match r {
        Err(ClientError::Refused(failure)) => failure,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The TPM's lockout is global: alohad reads its counter before every attempt, stops PIN
/// sign-in `da_headroom` (2) failures before maxTries, reports an actual TPM lockout as its
/// own state, and shows the counter in `aloha status`. None of it costs the user an attempt.
#[test]
fn tpm_lockout_counter_guards_sign_in() {
    let tpm = aloha_tests::swtpm::Swtpm::start_with_da(8, 3600, 86400);
    // alohad refuses a per-user limit that is not below maxTries - da_headroom (8 - 2).
    let mut f = Fixture::on(Some(tpm), |o| {
        o.extra = "[lockout]\nmax_attempts = 5\n".into();
    });
    enrol_nobody(&f);
    let tpm_status = |f: &Fixture| status(f, "nobody")["tpm"].clone();
    assert_eq!(tpm_status(&f)["counter"], 0);
    assert_eq!(tpm_status(&f)["max_tries"], 8);
    // Five failures elsewhere: still below 8 - 2, so the right PIN works.
    foreign_da_failures(&mut f, 5);
    let t = tpm_status(&f);
    assert_eq!(
        (t["counter"].as_u64(), t["in_lockout"].as_bool()),
        (Some(5), Some(false)),
        "{t}"
    );
    verify_nobody(&f, PIN).ok();
    // A wrong PIN through alohad counts in the TPM too: 6, the guard's limit.
    verify_nobody(&f, WRONG).refused("Wrong PIN");
    assert_eq!(tpm_status(&f)["counter"], 6);
    let refused = verify_nobody(&f, PIN);
    refused.refused(
        "The TPM counted 6 of 8 wrong PINs on this machine: PIN sign-in is paused for every \
         user — the TPM is close to its dictionary-attack lockout; next attempt in about",
    );
    assert!(refused.stderr.contains("Use your password"), "{refused:?}");
    // A state of its own on the socket, with the time the TPM will have forgotten enough.
    let failure = sign_in_refusal(&f);
    assert_eq!(
        failure.code,
        aloha::protocol::ErrorCode::TpmLockout,
        "{failure:?}"
    );
    assert!(failure.retry_at.is_some(), "{failure:?}");
    let s = status(&f, "nobody");
    assert_eq!(
        s["failed_attempts"], 1,
        "the guard's refusal was counted: {s}"
    );
    assert_eq!(
        s["tpm"]["counter"], 6,
        "the guard let a PIN reach the TPM: {s}"
    );
    let text = f.daemon.aloha(&["status", "--user", "nobody"], "");
    text.ok();
    assert!(
        text.stdout
            .contains("6 of 8 failures counted, not in lockout"),
        "{}",
        text.stdout
    );
    // Two more elsewhere: the TPM itself is in lockout, a distinct state.
    foreign_da_failures(&mut f, 2);
    let t = tpm_status(&f);
    assert_eq!(t["in_lockout"], true, "{t}");
    verify_nobody(&f, PIN).refused("the TPM is in its dictionary-attack lockout;");
    let failure = sign_in_refusal(&f);
    assert_eq!(
        failure.code,
        aloha::protocol::ErrorCode::TpmLockout,
        "{failure:?}"
    );
    assert_eq!(status(&f, "nobody")["failed_attempts"], 1);
    let text = f.daemon.aloha(&["status", "--user", "nobody"], "");
    assert!(
        text.stdout.contains("IN LOCKOUT (every user's PIN paused)"),
        "{}",
        text.stdout
    );
    // The TPM's owner clears it (lockout hierarchy): sign-in works again.
    f.daemon.stop();
    f.swtpm
        .as_ref()
        .unwrap()
        .tpm2_tool("tpm2_dictionarylockout", &["-c".to_string()])
        .unwrap();
    f.daemon.spawn();
    assert_eq!(tpm_status(&f)["counter"], 0);
    verify_nobody(&f, PIN).ok();
    assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
}

/// Finding 1 of the hardening review, on swtpm: a user who knows their own PIN repeats "the
/// free wrong PINs, then the right one". Their own counter starts over each time, the TPM's
/// does not; without shares they walk it to the guard and PIN sign-in pauses for every user
/// for hours. With shares (32 tries, headroom 2, two TPM users: 14 each) the attack stops at
/// their own 14 and root still signs in.
#[test]
fn one_user_cannot_pause_tpm_sign_in_for_everyone() {
    let f = Fixture::start(Kind::Tpm, |_| {});
    enrol_nobody(&f);
    f.daemon
        .aloha(&["pin", "set", "--pin-stdin"], &format!("{PIN}\n"))
        .ok();
    let mut stopped = None;
    'attack: for _round in 0..12 {
        for _ in 0..3 {
            let run = verify_nobody(&f, WRONG);
            if !run.stderr.contains("Wrong PIN") {
                stopped = Some(run);
                break 'attack;
            }
        }
        verify_nobody(&f, PIN).ok();
    }
    let stopped = stopped.expect("the attack ran to the end unhindered");
    stopped.refused("The TPM still remembers 14 wrong PINs of nobody's");
    assert!(stopped.stderr.contains("Use your password"), "{stopped:?}");
    let s = status(&f, "nobody");
    assert_eq!(s["tpm"]["counter"], 14, "the TPM's own counter: {s}");
    assert_eq!(s["tpm_pause"], Value::Null, "{s}");
    assert_eq!(s["tpm_share"]["debt"], 14, "{s}");
    assert_eq!(s["tpm_share"]["share"], 14, "{s}");
    let shown = f.daemon.aloha(&["status", "--user", "nobody"], "");
    shown.ok();
    assert!(
        shown
            .stdout
            .contains("TPM wrong PINs:   USED — 14 of your 14"),
        "{shown:?}"
    );
    // Everyone else signs in.
    f.daemon
        .aloha(&["verify", "--pin-stdin"], &format!("{PIN}\n"))
        .ok();
    // The attacker's right PIN waits too: the TPM is not asked.
    verify_nobody(&f, PIN).refused("The TPM still remembers 14 wrong PINs");
    assert_eq!(status(&f, "nobody")["tpm"]["counter"], 14);
}

/// Finding 8 of the hardening review: alohad records the TPM storage key's name at first use
/// and refuses another one before any PIN is sent — here a different TPM answering at the
/// configured address, which is what an interposer presenting a key of its own looks like.
/// The refusal costs nothing and says what to do; after the documented recovery (the TPM was
/// really replaced: remove the record, reset the PIN) sign-in works on the new TPM.
#[test]
fn a_different_tpm_storage_key_is_refused() {
    let mut f = Fixture::start(Kind::Tpm, |_| {});
    enrol_nobody(&f);
    verify_nobody(&f, PIN).ok();
    let record = f.daemon.state_dir().join("private/tpm-primary.json");
    assert!(record.exists(), "recorded at first use");
    f.daemon.stop();
    let other = aloha_tests::swtpm::Swtpm::start();
    let config = std::fs::read_to_string(f.daemon.config_path()).unwrap();
    let first = f.swtpm.as_ref().unwrap().tcti();
    std::fs::write(
        f.daemon.config_path(),
        config.replace(&first, &other.tcti()),
    )
    .unwrap();
    f.daemon.spawn();
    let refused = verify_nobody(&f, PIN);
    refused.refused("shows a storage key");
    assert!(refused.stderr.contains("aloha pin reset"), "{refused:?}");
    assert!(
        f.daemon.log().contains("alohad does not use the TPM"),
        "{}",
        f.daemon.log()
    );
    assert_eq!(
        status(&f, "nobody")["failed_attempts"],
        0,
        "it cost nothing"
    );
    // The TPM really was replaced: forget the record, and the user starts over.
    f.daemon.stop();
    std::fs::remove_file(&record).unwrap();
    f.daemon.spawn();
    f.daemon
        .aloha(
            &["pin", "reset", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
    verify_nobody(&f, PIN).ok();
    f.daemon.stop();
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
    let hello = format!(r#"{{"op":"hello","version":{PROTOCOL_VERSION},"client":"test"}}"#);
    s.write_all(&frame(hello.as_bytes())).unwrap();
    assert_eq!(read_reply(s)["reply"], "hello");
}

/// How a connection looks from the client's side after waiting up to `wait`.
#[derive(Debug, PartialEq, Eq)]
enum Peer {
    /// End of stream: the daemon closed it.
    Closed,
    /// Nothing arrived within the wait: the daemon still holds it open.
    Open,
    /// Bytes arrived (or an error other than a timeout): neither of the above.
    Other(String),
}

fn peer(s: &mut UnixStream, wait: Duration) -> Peer {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => Peer::Closed,
        Ok(_) => Peer::Other(format!("a byte {:#04x}", b[0])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Peer::Open,
        Err(e) => Peer::Other(e.to_string()),
    }
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
    assert_eq!(peer(&mut s, Duration::from_secs(10)), Peer::Closed);
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

/// The frame deadline of the daemon in the stalled-client test: long enough that a loaded
/// machine serves the well-behaved client (Argon2id and all) while the stalled ones are held.
const STALL_IO_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn a_silent_client_neither_stalls_others_nor_lives_forever() {
    let f = Fixture::start(Kind::Software, |o| {
        // Room for the three stalled connections and the CLI's own above the per-uid limit.
        o.daemon_extra = format!(
            "io_timeout_ms = {}\nmax_connections_per_uid = 8\n",
            STALL_IO_TIMEOUT.as_millis()
        );
    });
    enrol_nobody(&f);
    // Stalled clients, connected (and so accepted) before the well-behaved one: one says
    // nothing, one stops inside the length header, one inside the body.
    let stalled_at = Instant::now();
    let mut silent = UnixStream::connect(f.daemon.socket()).unwrap();
    let mut in_header = UnixStream::connect(f.daemon.socket()).unwrap();
    in_header.write_all(&[0, 0]).unwrap();
    let mut in_body = UnixStream::connect(f.daemon.socket()).unwrap();
    in_body.write_all(&50u32.to_be_bytes()).unwrap();
    in_body.write_all(b"{\"op\":").unwrap();
    // A well-behaved client is served meanwhile: a full sign-in and a status.
    verify_nobody(&f, PIN).ok();
    assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
    let served_in = stalled_at.elapsed();
    // ... while the stalled clients still hold their connections. A daemon that serves one
    // client at a time would have served it only after dropping all three, each after the
    // full deadline, so this could not hold.
    for (name, s) in [
        ("silent", &mut silent),
        ("in_header", &mut in_header),
        ("in_body", &mut in_body),
    ] {
        assert_eq!(
            peer(s, Duration::from_millis(1)),
            Peer::Open,
            "the {name} client was dropped before another client was served ({served_in:?})"
        );
    }
    // And the stalled ones are dropped after the frame deadline: EOF, not a timeout of ours
    // (which is only a hang guard).
    for (name, s) in [
        ("silent", &mut silent),
        ("in_header", &mut in_header),
        ("in_body", &mut in_body),
    ] {
        assert_eq!(
            peer(s, STALL_IO_TIMEOUT + Duration::from_secs(10)),
            Peer::Closed,
            "the {name} client"
        );
        let held = stalled_at.elapsed();
        assert!(
            held >= STALL_IO_TIMEOUT - Duration::from_millis(100),
            "the {name} client was dropped after {held:?}, before the deadline"
        );
    }
    eprintln!("served another client in {served_in:?} while three were stalled");
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

/// A PIN must never vouch for itself: when the service alohad checks account passwords with
/// pulls in pam_aloha (here through `@include common-auth`, as an enabled Debian system would),
/// a user's PIN set with the right password is refused with the fix, nothing is created, and
/// `alohad --check-config` fails naming the file and line.
#[test]
fn a_password_service_that_runs_pam_aloha_is_refused() {
    let f = Fixture::start(Kind::Software, |o| {
        o.passwords = vec![("nobody".into(), "nobody-pw".into())];
    });
    let pam_dir = f.daemon.dir().join("pam.d");
    let service = pam_dir.join("aloha-test");
    let password_only = std::fs::read_to_string(&service).unwrap();
    std::fs::write(&service, format!("@include common-auth\n{password_only}")).unwrap();
    std::fs::write(
        pam_dir.join("common-auth"),
        "auth [success=end default=ignore] pam_aloha.so\nauth requisite pam_deny.so\n",
    )
    .unwrap();
    f.daemon
        .aloha_as(
            NOBODY,
            &["pin", "set", "--pin-stdin"],
            "nobody-pw\n918273\n",
        )
        .refused("runs pam_aloha");
    assert_eq!(status(&f, "nobody")["enrolled"], false);
    let mut cmd = std::process::Command::new(aloha_tests::build::artifact("alohad"));
    cmd.arg("--check-config")
        .arg("--config")
        .arg(f.daemon.config_path());
    let run = aloha_tests::daemon::run_with_stdin(cmd, "");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("common-auth:1"), "{run:?}");
    // Password-only again: the same request succeeds.
    std::fs::write(&service, password_only).unwrap();
    f.daemon
        .aloha_as(
            NOBODY,
            &["pin", "set", "--pin-stdin"],
            "nobody-pw\n918273\n",
        )
        .ok();
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

// ---------------------------------------------------------------- --socket, the terminal

#[test]
fn the_socket_flag_overrides_the_configured_socket() {
    let f = Fixture::start(Kind::Software, |_| {});
    enrol_nobody(&f);
    // A config that names the same state dir but a socket where nothing listens.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("aloha.toml");
    let missing = dir.path().join("missing.sock");
    std::fs::write(
        &elsewhere,
        format!(
            "[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n",
            missing.display(),
            f.daemon.state_dir().display()
        ),
    )
    .unwrap();
    let aloha = |args: &[&str], stdin: &str| {
        let mut cmd = std::process::Command::new(aloha_tests::build::artifact("aloha"));
        cmd.arg("--config").arg(&elsewhere).args(args);
        aloha_tests::daemon::run_with_stdin(cmd, stdin)
    };
    let none = aloha(&["status", "--user", "nobody"], "");
    assert_eq!(none.code, 3, "{none:?}");
    assert!(
        none.stderr.contains(&missing.display().to_string()),
        "{none:?}"
    );
    let socket = f.daemon.socket().display().to_string();
    let s = aloha(
        &["--socket", &socket, "status", "--json", "--user", "nobody"],
        "",
    );
    s.ok();
    let json: Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(json["enrolled"], true, "{json}");
    // After the subcommand too (a global flag), and for a full sign-in.
    aloha(
        &[
            "verify",
            "--user",
            "nobody",
            "--pin-stdin",
            "--socket",
            &socket,
        ],
        &format!("{PIN}\n"),
    )
    .ok();
    // A socket path that is not a socket at all is a clear error, not a hang.
    let not_a_socket = dir.path().join("plain-file");
    std::fs::write(&not_a_socket, "").unwrap();
    let bad = aloha(
        &[
            "--socket",
            &not_a_socket.display().to_string(),
            "status",
            "--user",
            "nobody",
        ],
        "",
    );
    assert_eq!(bad.code, 3, "{bad:?}");
    assert!(bad.stderr.contains("alohad is not reachable"), "{bad:?}");
}

/// `aloha` on a pty of its own (its controlling terminal), as a person runs it.
fn on_pty(f: &Fixture, args: &[&str]) -> Session {
    let mut cmd = std::process::Command::new(aloha_tests::build::artifact("aloha"));
    cmd.arg("--config")
        .arg(f.daemon.config_path())
        .args(args)
        .env("TERM", "dumb");
    Session::spawn(cmd, Channel::Pty).unwrap()
}

/// Wait for `prompt`, check the terminal's echo is off while it is shown, and type `answer`.
#[track_caller]
fn answer_prompt(s: &mut Session, prompt: &str, answer: &str) {
    let seen = s.expect_any(&[prompt], Duration::from_secs(20)).unwrap();
    assert_eq!(seen, Ok(0), "no {prompt:?} prompt in {:?}", s.transcript());
    // The CLI turns echo off before it prints the prompt.
    assert_eq!(
        s.echo().unwrap(),
        Some(false),
        "echo is on at {prompt:?}: {:?}",
        s.transcript()
    );
    s.send_secret(answer).unwrap();
}

/// Wait for `message`, which the CLI prints only after its last prompt, and check the
/// terminal's echo is on again. The CLI may have exited by then: the pty keeps the modes it
/// left (the `stty -echo` control in the Ctrl-C test shows it).
#[track_caller]
fn echo_is_back_by(s: &mut Session, message: &str) {
    let seen = s.expect_any(&[message], Duration::from_secs(20)).unwrap();
    assert_eq!(seen, Ok(0), "no {message:?} in {:?}", s.transcript());
    assert_eq!(
        s.echo().unwrap(),
        Some(true),
        "echo is still off after the prompts: {:?}",
        s.transcript()
    );
}

/// Read until the command has closed the terminal (it exited), keeping the pty to look at.
#[track_caller]
fn wait_for_exit(s: &mut Session) {
    // A needle no program here prints: only the end of the output stops the wait.
    let end = s
        .expect_any(&["\u{1}\u{2}"], Duration::from_secs(20))
        .unwrap();
    assert_eq!(
        end,
        Err(aloha_tests::pty::Wait::Eof),
        "still running: {:?}",
        s.transcript()
    );
}

#[test]
fn the_terminal_asks_a_new_pin_twice_with_echo_off() {
    let f = Fixture::start(Kind::Software, |_| {});
    let pin = "60718293";
    let other = "60718294";
    // Two different entries: refused, nothing created.
    let mut s = on_pty(&f, &["pin", "set", "--user", "nobody"]);
    answer_prompt(&mut s, "New PIN:", pin);
    answer_prompt(&mut s, "Repeat the PIN:", other);
    let done = s.finish(Duration::from_secs(20)).unwrap();
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(
        done.transcript
            .contains("the two entries differ; nothing was changed"),
        "{done:?}"
    );
    assert!(
        !done.transcript.contains(pin) && !done.transcript.contains(other),
        "a PIN was echoed: {:?}",
        done.transcript
    );
    assert_eq!(status(&f, "nobody")["enrolled"], false);
    // The same entry twice: set; the terminal's echo is back on afterwards.
    let mut s = on_pty(&f, &["pin", "set", "--user", "nobody"]);
    answer_prompt(&mut s, "New PIN:", pin);
    answer_prompt(&mut s, "Repeat the PIN:", pin);
    echo_is_back_by(&mut s, "PIN set for nobody");
    let done = s.finish(Duration::from_secs(20)).unwrap();
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(!done.transcript.contains(pin), "{:?}", done.transcript);
    assert_eq!(status(&f, "nobody")["enrolled"], true);
    // A sign-in asks once, also with echo off.
    let mut s = on_pty(&f, &["verify", "--user", "nobody"]);
    answer_prompt(&mut s, "PIN:", pin);
    let done = s.finish(Duration::from_secs(20)).unwrap();
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.transcript.contains("Verified: nobody"), "{done:?}");
    assert!(!done.transcript.contains(pin), "{:?}", done.transcript);
}

/// Root changes an enrolled user's PIN on the terminal: the current PIN, then the new one
/// twice, all with echo off and none of them shown; afterwards only the new PIN signs in.
#[test]
fn the_terminal_changes_a_pin_with_echo_off() {
    let f = Fixture::start(Kind::Software, |_| {});
    enrol_nobody(&f);
    let new = "60718293";
    let mut s = on_pty(&f, &["pin", "change", "--user", "nobody"]);
    answer_prompt(&mut s, "Current PIN:", PIN);
    answer_prompt(&mut s, "New PIN:", new);
    answer_prompt(&mut s, "Repeat the new PIN:", new);
    echo_is_back_by(&mut s, "PIN changed for nobody.");
    let done = s.finish(Duration::from_secs(20)).unwrap();
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(
        !done.transcript.contains(PIN) && !done.transcript.contains(new),
        "a PIN was echoed: {:?}",
        done.transcript
    );
    verify_nobody(&f, new).ok();
    verify_nobody(&f, PIN).refused("Wrong PIN");
}

/// Ctrl-C at a PIN prompt of `aloha pin set` (typed on the terminal, so the line discipline
/// sends SIGINT to the CLI's process group): the CLI exits 130, the terminal's echo is on
/// again, and no PIN was set — at the first prompt and after the first entry alike.
#[test]
fn ctrl_c_at_the_pin_prompt_restores_echo_and_sets_nothing() {
    // Control: a program that leaves echo off is seen as such after it exited, so the check
    // below does look at the terminal the CLI left behind.
    let mut stty = std::process::Command::new("stty");
    stty.arg("-echo");
    let mut s = Session::spawn(stty, Channel::Pty).unwrap();
    wait_for_exit(&mut s);
    assert_eq!(s.echo().unwrap(), Some(false), "{:?}", s.transcript());
    drop(s);

    let f = Fixture::start(Kind::Software, |_| {});
    let pin = "60718293";
    for answered in [&[][..], &["New PIN:"][..]] {
        let mut s = on_pty(&f, &["pin", "set", "--user", "nobody"]);
        for prompt in answered {
            answer_prompt(&mut s, prompt, pin);
        }
        let at = if answered.is_empty() {
            "New PIN:"
        } else {
            "Repeat the PIN:"
        };
        let seen = s.expect_any(&[at], Duration::from_secs(20)).unwrap();
        assert_eq!(seen, Ok(0), "no {at:?} prompt in {:?}", s.transcript());
        // Echo off means the CLI's SIGINT handler is in place (it is set up first).
        assert_eq!(s.echo().unwrap(), Some(false), "{:?}", s.transcript());
        s.send_raw(b"\x03").unwrap();
        wait_for_exit(&mut s);
        assert_eq!(
            s.echo().unwrap(),
            Some(true),
            "Ctrl-C at {at:?} left echo off: {:?}",
            s.transcript()
        );
        let done = s.finish(Duration::from_secs(20)).unwrap();
        assert_eq!(done.code, Some(130), "Ctrl-C at {at:?}: {done:?}");
        assert!(!done.transcript.contains(pin), "{:?}", done.transcript);
        assert!(
            !done.transcript.contains("PIN set"),
            "Ctrl-C at {at:?}: {:?}",
            done.transcript
        );
        let st = status(&f, "nobody");
        assert_eq!(st["enrolled"], false, "Ctrl-C at {at:?}: {st}");
    }
}

// ---------------------------------------------------------------- a lying daemon

/// What the fake daemon answers to a sign-in.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Relays the request to the real alohad with another nonce: a genuine signature by the
    /// user's key, over a challenge the CLI did not make (a replay).
    OtherNonce,
    /// 64 bytes that are a well-formed (r, s) but no signature by anyone.
    Made,
    /// Too short to be a signature.
    Short,
    /// Not a signature reply at all.
    WrongReply,
}

/// A process on the socket that speaks the protocol but lies about the signature. It runs as
/// root (the test), so the CLI's check that the peer is root passes.
fn fake_daemon(
    sock: &std::path::Path,
    real: std::path::PathBuf,
    lie: Lie,
) -> std::thread::JoinHandle<()> {
    use aloha::frame::{MAX_FRAME_LEN, read_frame, write_frame};
    use aloha::protocol::{self, BackendKind, PROTOCOL_VERSION, Request, Response};
    let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        // Bounded: a CLI that never connects must not hang the test.
        let until = Instant::now() + Duration::from_secs(20);
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("the CLI never connected to the fake daemon: {e}"),
            }
        };
        s.set_nonblocking(false).unwrap();
        let deadline = || Instant::now() + Duration::from_secs(20);
        loop {
            let Ok(bytes) = read_frame(&mut s, deadline(), MAX_FRAME_LEN) else {
                return;
            };
            let reply = match protocol::decode::<Request>(&bytes).unwrap() {
                Request::Hello { .. } => Response::Hello {
                    version: PROTOCOL_VERSION,
                    daemon: "not alohad".into(),
                },
                Request::SignIn {
                    user,
                    service,
                    nonce,
                    pin,
                    ..
                } => match lie {
                    Lie::OtherNonce => {
                        let mut other = nonce;
                        other.0[0] ^= 1;
                        let mut c =
                            aloha::client::Client::connect(&real, Duration::from_secs(20), "fake")
                                .unwrap();
                        let r = c
                            .call(&Request::SignIn {
                                user,
                                service,
                                nonce: other,
                                pin,
                                vault: false,
                            })
                            .unwrap();
                        assert!(matches!(r, Response::Signed { .. }), "{r:?}");
                        r
                    }
                    Lie::Made => Response::Signed {
                        signature: vec![0x5a; 64],
                        backend: BackendKind::Tpm,
                        password: None,
                    },
                    Lie::Short => Response::Signed {
                        signature: vec![1; 10],
                        backend: BackendKind::Tpm,
                        password: None,
                    },
                    Lie::WrongReply => Response::Done {
                        message: "Verified.".into(),
                    },
                },
                other => panic!("the CLI asked the fake daemon {other:?}"),
            };
            let bytes = protocol::encode(&reply).unwrap();
            if write_frame(&mut s, &bytes, deadline()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn verify_refuses_a_signature_that_does_not_prove_the_key() {
    let f = Fixture::start(Kind::Software, |_| {});
    enrol_nobody(&f);
    let dir = tempfile::tempdir().unwrap();
    for (i, (lie, code, needle)) in [
        (
            Lie::OtherNonce,
            1,
            "the signature does not verify against the user's registered public key",
        ),
        (
            Lie::Made,
            1,
            "the signature does not verify against the user's registered public key",
        ),
        (Lie::Short, 1, "the signature is malformed"),
        (
            Lie::WrongReply,
            3,
            "alohad sent an unexpected reply to sign-in",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let sock = dir.path().join(format!("fake-{i}.sock"));
        let fake = fake_daemon(&sock, f.daemon.socket(), lie);
        let run = f.daemon.aloha(
            &[
                "--socket",
                &sock.display().to_string(),
                "verify",
                "--user",
                "nobody",
                "--pin-stdin",
            ],
            &format!("{PIN}\n"),
        );
        fake.join().unwrap();
        assert_eq!(run.code, code, "{lie:?}: {run:?}");
        assert!(run.stderr.contains(needle), "{lie:?}: {run:?}");
        if code == 1 {
            assert!(
                run.stderr
                    .contains("alohad's answer for nobody is not a valid proof"),
                "{lie:?}: {run:?}"
            );
        }
        assert!(!run.stdout.contains("Verified"), "{lie:?}: {run:?}");
    }
    // The replayed signature was real: the real daemon counted a success, nothing else.
    assert_eq!(status(&f, "nobody")["failed_attempts"], 0);
}

// ---------------------------------------------------------------- the shipped password service

/// `packaging/pam/aloha`'s rules, comments and blank lines dropped.
fn shipped_pam_rules() -> Vec<String> {
    let path = aloha_tests::build::workspace_root().join("packaging/pam/aloha");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A PIN must never vouch for itself: the service that checks the account password before a
/// PIN is set names pam_aloha nowhere, and pulls in no other stack (common-auth may include
/// pam_aloha once Aloha is enabled there).
#[test]
fn the_shipped_password_service_does_not_use_pam_aloha() {
    let rules = shipped_pam_rules();
    assert!(!rules.is_empty());
    for rule in &rules {
        assert!(!rule.contains("pam_aloha"), "{rule}");
        let words: Vec<&str> = rule.split_whitespace().collect();
        assert!(!rule.starts_with('@'), "includes another stack: {rule}");
        assert!(
            !words.iter().any(|w| ["include", "substack"].contains(w)),
            "includes another stack: {rule}"
        );
    }
    assert!(
        rules
            .iter()
            .any(|r| r.starts_with("auth") && r.contains("pam_unix.so")),
        "{rules:?}"
    );
}

/// The shipped file installed as /etc/pam.d/aloha (in a private mount namespace) with real
/// pam_unix: a non-root user sets its PIN with its account password; a wrong password is
/// refused and creates nothing. The machine's /etc is byte-identical afterwards.
/// A JSON array of strings from a scenario's report.
fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

#[test]
fn pin_set_proves_the_account_password_through_the_shipped_service() {
    use aloha_tests::namespace::{digest_diff, mount_points, run_scenario, tree_digest};
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (it runs in a private mount namespace)"
    );
    for a in ["alohad", "aloha"] {
        aloha_tests::build::artifact(a);
    }
    let etc_before = tree_digest(std::path::Path::new("/etc")).unwrap();
    let mounts_before = mount_points().unwrap();
    let run = run_scenario(
        std::path::Path::new(env!("CARGO_BIN_EXE_shipped-pam-scenario")),
        &[],
        Duration::from_secs(120),
    );
    let diff = digest_diff(
        &etc_before,
        &tree_digest(std::path::Path::new("/etc")).unwrap(),
    );
    assert!(
        diff.is_empty(),
        "the machine's /etc changed:\n{}",
        diff.join("\n")
    );
    assert_eq!(mount_points().unwrap(), mounts_before);
    assert!(run.stray.is_empty(), "left behind: {:?}", run.stray);
    let r = &run.report;
    let ctx = || {
        format!(
            "{}\n{}",
            serde_json::to_string_pretty(r).unwrap(),
            run.stderr
        )
    };
    assert_eq!(r["stray"].as_array().map(Vec::len), Some(0), "{}", ctx());
    // The daemon really used the system's `aloha` service, not a test one.
    let config = r["config"].as_str().unwrap();
    assert!(!config.contains("password_service"), "{config}");
    let user = r["user"].as_str().unwrap();
    // Wrong password: refused, clearly, and nothing of the user's exists.
    let wrong = &r["wrong_password"];
    assert_eq!(wrong["code"], 1, "{}", ctx());
    assert!(
        wrong["stderr"]
            .as_str()
            .unwrap()
            .contains("The account password is wrong."),
        "{}",
        ctx()
    );
    let files_after_wrong = strings(&r["files_after_wrong"]);
    assert!(
        !files_after_wrong.iter().any(|f| f.contains(user)),
        "a wrong password created {files_after_wrong:?}"
    );
    let status: Value =
        serde_json::from_str(r["status_after_wrong"]["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(status["enrolled"], false, "{}", ctx());
    // Right password: the PIN is set and signs in.
    assert_eq!(r["right_password"]["code"], 0, "{}", ctx());
    assert!(
        r["right_password"]["stdout"]
            .as_str()
            .unwrap()
            .contains(&format!("PIN set for {user}")),
        "{}",
        ctx()
    );
    let files_after_right = strings(&r["files_after_right"]);
    assert!(
        files_after_right.contains(&format!("public/{user}.pub").as_str()),
        "{files_after_right:?}"
    );
    assert_eq!(r["verify"]["code"], 0, "{}", ctx());
    let log = r["alohad_log"].as_str().unwrap();
    for secret in r["secrets"].as_array().unwrap() {
        assert!(
            !log.contains(secret.as_str().unwrap()),
            "a secret in the log:\n{log}"
        );
    }
}
