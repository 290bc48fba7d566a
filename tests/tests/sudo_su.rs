//! Real sudo and su with pam_aloha, as root, on the software vault and on swtpm.
//!
//! The scenarios run in a child process (`src/bin/sudo-su-scenario.rs`) inside a private mount
//! namespace whose /etc, /dev, /var/log, /var/lib/sudo and /run/sudo are overlays (see
//! `aloha_tests::namespace`): test users made by useradd/chpasswd, a sudoers.d entry, and
//! pam_aloha in front of `@include common-auth` in /etc/pam.d/sudo and /etc/pam.d/su. sudo runs
//! as `sudo -S` on pipes, su on a pty, both driven prompt by prompt. The child reports what
//! happened as JSON; this test asserts on it, and checks from the outside that the machine's
//! /etc is byte-identical afterwards, that no mount was left in this namespace, and that no
//! process (alohad, swtpm, sudo, su) is left in the child's namespace.
//!
//! Needs root, sudo, su (util-linux), useradd, chpasswd, visudo and setpriv.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aloha_tests::both;
use aloha_tests::build::artifact;
use aloha_tests::fixture::Kind;
use aloha_tests::namespace::{
    describe_process, digest_diff, mount_points, processes_in_mount_namespace, tree_digest,
};
use serde_json::Value;

/// The whole scenario, TPM included, takes ~10-20 s; this only stops a hang.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

const PIN_USER: &str = "aloha-pin";
const NOPIN_USER: &str = "aloha-nopin";
const SUDO_PIN_USER_PROMPT: &str = "[sudo] password for aloha-pin: ";
const SUDO_NOPIN_USER_PROMPT: &str = "[sudo] password for aloha-nopin: ";

/// What one run must show.
struct Expect {
    name: &'static str,
    user: &'static str,
    success: bool,
    prompts: &'static [&'static str],
    /// pam_aloha's `result=` for each pam_authenticate, in order.
    results: &'static [&'static str],
}

const EXPECTED: &[Expect] = &[
    // (a) the right PIN is enough: no password prompt.
    Expect {
        name: "sudo_pin",
        user: PIN_USER,
        success: true,
        prompts: &["PIN: "],
        results: &["success"],
    },
    // (a) a wrong PIN, then a wrong password: refused. sudo tries again (passwd_tries=3),
    // asking for the PIN first again; end-of-input there ends it.
    Expect {
        name: "sudo_wrong_pin_wrong_password",
        user: PIN_USER,
        success: false,
        prompts: &["PIN: ", SUDO_PIN_USER_PROMPT, "PIN: "],
        results: &["wrong_pin", "ignore"],
    },
    // An empty PIN skips to the password without counting an attempt.
    Expect {
        name: "sudo_empty_pin_password",
        user: PIN_USER,
        success: true,
        prompts: &["PIN: ", SUDO_PIN_USER_PROMPT],
        results: &["ignore"],
    },
    // (e) a failed PIN falls through to the password, which works.
    Expect {
        name: "sudo_wrong_pin_password",
        user: PIN_USER,
        success: true,
        prompts: &["PIN: ", SUDO_PIN_USER_PROMPT],
        results: &["wrong_pin"],
    },
    // (b) su on a pty, run by another unprivileged user.
    Expect {
        name: "su_pin",
        user: PIN_USER,
        success: true,
        prompts: &["PIN: "],
        results: &["success"],
    },
    Expect {
        name: "su_wrong_pin_wrong_password",
        user: PIN_USER,
        success: false,
        prompts: &["PIN: ", "Password: "],
        results: &["wrong_pin"],
    },
    // (e) on su.
    Expect {
        name: "su_wrong_pin_password",
        user: PIN_USER,
        success: true,
        prompts: &["PIN: ", "Password: "],
        results: &["wrong_pin"],
    },
    // (c) no PIN enrolled: straight to the password.
    Expect {
        name: "sudo_no_pin_password",
        user: NOPIN_USER,
        success: true,
        prompts: &[SUDO_NOPIN_USER_PROMPT],
        results: &["unavailable"],
    },
    Expect {
        name: "su_no_pin_password",
        user: NOPIN_USER,
        success: true,
        prompts: &["Password: "],
        results: &["unavailable"],
    },
    // (d) alohad stopped: straight to the password.
    Expect {
        name: "sudo_daemon_down_password",
        user: PIN_USER,
        success: true,
        prompts: &[SUDO_PIN_USER_PROMPT],
        results: &["unavailable"],
    },
    Expect {
        name: "su_daemon_down_password",
        user: PIN_USER,
        success: true,
        prompts: &["Password: "],
        results: &["unavailable"],
    },
];

/// What the scenario child printed, and how it ended.
struct Scenario {
    report: Value,
    stderr: String,
    /// Processes found in the child's namespace after it exited (killed by pid).
    stray: Vec<String>,
}

/// Run the scenario child for `kind`, holding its mount namespace open until it has exited so
/// that the namespace id cannot be reused while we look for processes left in it.
fn run_scenario(kind: Kind) -> Scenario {
    let kind_arg = match kind {
        Kind::Software => "software",
        Kind::Tpm => "tpm",
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_sudo-su-scenario"))
        .args(["--kind", kind_arg])
        .env("ALOHA_TESTS_NO_BUILD", "1")
        .env(
            aloha_tests::build::PROFILE_DIR_ENV,
            aloha_tests::build::profile_dir(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sudo-su-scenario");
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let first = rx.recv_timeout(Duration::from_secs(60));
    let (ns, ns_handle) = match first {
        Ok(line) => {
            let v: Value = serde_json::from_str(&line).expect("first line is {\"mnt_ns\": N}");
            let ns = v["mnt_ns"].as_u64().expect("mnt_ns");
            let handle =
                File::open(format!("/proc/{pid}/ns/mnt")).expect("open the child's namespace");
            assert_eq!(
                handle.metadata().unwrap().ino(),
                ns,
                "the child reported another namespace"
            );
            let own = std::fs::metadata("/proc/self/ns/mnt").unwrap().ino();
            assert_ne!(
                ns, own,
                "the scenario did not leave the test's mount namespace"
            );
            (ns, handle)
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the scenario printed no namespace:\n{}",
                stderr_reader.join().unwrap()
            );
        }
    };
    // Go on: the child may now start alohad, sudo and su.
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();

    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Only now, with the namespace still held: anything in it outlived the scenario.
    let mut stray = Vec::new();
    for p in processes_in_mount_namespace(ns) {
        stray.push(describe_process(p));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    drop(ns_handle);
    let stderr = stderr_reader.join().unwrap();
    let lines: Vec<String> = rx.try_iter().collect();
    reader.join().unwrap();
    let Some(status) = status else {
        panic!("the scenario did not finish within {SCENARIO_TIMEOUT:?}:\n{stderr}");
    };
    assert!(
        status.success(),
        "the scenario failed ({status}):\n{stderr}"
    );
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no report:\n{stderr}"));
    let report = serde_json::from_str(last).unwrap_or_else(|e| panic!("bad report {e}: {last}"));
    Scenario {
        report,
        stderr,
        stray,
    }
}

/// `result=` of each pam_aloha line (`user=U service=S result=R...`), checking the prefix.
fn module_results(run: &Value, user: &str, service: &str) -> Vec<String> {
    let lines: Vec<&str> = run["syslog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .filter(|t| t.contains(&format!("pam_aloha({service}:auth): ")))
        .collect();
    lines
        .iter()
        .map(|text| {
            let want = format!("user={user} service={service} result=");
            let at = text
                .find(&want)
                .unwrap_or_else(|| panic!("pam_aloha line without {want:?}: {text}"));
            text[at + want.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect()
        })
        .collect()
}

fn check_runs(report: &Value) {
    let runs = report["runs"].as_array().expect("runs");
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.name).collect();
    assert_eq!(names, expected, "the scenario ran something else");
    let secrets: Vec<&str> = report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(secrets.len() >= 2);
    for (run, want) in runs.iter().zip(EXPECTED) {
        let name = want.name;
        let transcript = run["transcript"].as_str().unwrap_or("");
        let context = || format!("{name}: {}", serde_json::to_string_pretty(run).unwrap());
        assert!(run["error"].is_null(), "driver error in {}", context());
        assert_eq!(run["user"], want.user, "{}", context());
        let code = run["code"].as_i64();
        if want.success {
            assert_eq!(code, Some(0), "expected success in {}", context());
        } else {
            assert!(
                code.is_some_and(|c| c != 0),
                "expected a refusal in {}",
                context()
            );
        }
        let prompts: Vec<&str> = run["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(prompts, want.prompts, "prompts in {}", context());
        let service = run["service"].as_str().unwrap();
        let results = module_results(run, want.user, service);
        assert_eq!(results, want.results, "pam_aloha lines in {}", context());
        // sudo passes PAM_SILENT, so its users never see the module's messages; su shows them.
        let told_wrong = transcript.contains("Wrong PIN");
        let wrong_pin_given = want.results.contains(&"wrong_pin");
        match service {
            "sudo" => assert!(!told_wrong, "PAM_SILENT ignored in {}", context()),
            _ => assert_eq!(
                told_wrong,
                wrong_pin_given,
                "error message in {}",
                context()
            ),
        }
        if service == "su" && !want.success {
            assert!(
                transcript.contains("su: Authentication failure"),
                "{}",
                context()
            );
        }
        if service == "sudo" && !want.success {
            assert!(transcript.contains("Sorry, try again."), "{}", context());
        }
        // Nothing typed is echoed or logged.
        for secret in &secrets {
            assert!(
                !transcript.contains(secret),
                "a secret echoed in {}",
                context()
            );
            for line in run["syslog"].as_array().unwrap() {
                let text = line["text"].as_str().unwrap();
                assert!(!text.contains(secret), "a secret in syslog: {text}");
            }
        }
    }
    let log = report["alohad_log"].as_str().unwrap();
    for secret in &secrets {
        assert!(!log.contains(secret), "a secret in alohad's log:\n{log}");
    }
    assert_eq!(
        report["alohad_gone_after_stop"], true,
        "alohad outlived its stop"
    );
}

fn sudo_and_su(kind: Kind) {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the sudo/su tests need root (they run in a private mount namespace)"
    );
    // Build the binaries under test here, once, not inside the namespace.
    for a in ["alohad", "aloha", "libpam_aloha.so"] {
        artifact(a);
    }
    let etc_before = tree_digest(Path::new("/etc")).expect("digest /etc");
    let mounts_before = mount_points().unwrap();

    let scenario = run_scenario(kind);

    let etc_after = tree_digest(Path::new("/etc")).expect("digest /etc");
    let diff = digest_diff(&etc_before, &etc_after);
    assert!(
        diff.is_empty(),
        "the machine's /etc changed:\n{}",
        diff.join("\n")
    );
    assert_eq!(
        mount_points().unwrap(),
        mounts_before,
        "mounts changed outside the namespace"
    );
    assert!(
        scenario.stray.is_empty(),
        "processes left in the scenario's namespace (killed now): {:?}",
        scenario.stray
    );
    let report = &scenario.report;
    assert_eq!(
        report["stray"].as_array().map(Vec::len),
        Some(0),
        "the scenario found leftovers: {}",
        report["stray"]
    );
    eprintln!("{}", scenario.stderr.trim_end());
    check_runs(report);
}

both!(sudo_and_su);

/// The /etc check above is only as good as the digest: it must see content, mode, owner and
/// symlink changes, and files that come and go.
#[test]
fn tree_digest_sees_every_kind_of_change() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("pam.d")).unwrap();
    std::fs::write(root.join("pam.d/sudo"), "auth include common-auth\n").unwrap();
    std::os::unix::fs::symlink("sudo", root.join("pam.d/link")).unwrap();
    let base = tree_digest(root).unwrap();
    assert_eq!(base.len(), 4, "{base:?}");
    assert!(digest_diff(&base, &tree_digest(root).unwrap()).is_empty());

    let changed = |f: &dyn Fn()| {
        f();
        let d = digest_diff(&base, &tree_digest(root).unwrap());
        assert!(!d.is_empty());
        d
    };
    // Same length, same mtime: only the content differs.
    let file = root.join("pam.d/sudo");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let d = changed(&|| {
        std::fs::write(&file, "auth include common-autH\n").unwrap();
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    });
    assert!(
        d[0].starts_with("changed") && d[0].contains("pam.d/sudo"),
        "{d:?}"
    );
    std::fs::write(&file, "auth include common-auth\n").unwrap();
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let d = changed(&|| {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap()
    });
    assert!(d.iter().any(|l| l.contains("mode=100600")), "{d:?}");
    let d = changed(&|| std::fs::write(root.join("pam.d/new"), "").unwrap());
    assert!(d.iter().any(|l| l.starts_with("added")), "{d:?}");
    let d = changed(&|| std::fs::remove_file(root.join("pam.d/link")).unwrap());
    assert!(d.iter().any(|l| l.starts_with("removed")), "{d:?}");
}
