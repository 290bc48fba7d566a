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
use std::path::Path;
use std::time::Duration;

use aloha_tests::both;
use aloha_tests::build::artifact;
use aloha_tests::fixture::Kind;
use aloha_tests::namespace::{self, ScenarioRun, digest_diff, mount_points, tree_digest};
use serde_json::Value;

/// The whole scenario, TPM included, takes ~10-20 s; this only stops a hang.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

const PIN_USER: &str = "aloha-pin";
const NOPIN_USER: &str = "aloha-nopin";
const SUDO_PIN_USER_PROMPT: &str = "[sudo] password for aloha-pin: ";
const SUDO_NOPIN_USER_PROMPT: &str = "[sudo] password for aloha-nopin: ";
const FACE_USER: &str = "aloha-face";
const LOOKING: &str = "Looking for your face…";

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
    // (f) a face alone, through sudo: no prompt at all (where the camera streams are).
    Expect {
        name: "sudo_face",
        user: FACE_USER,
        success: true,
        prompts: &[],
        results: &["success"],
    },
    // (f) a photo (or a printed photo attack): refused as not live, counted, then the PIN.
    Expect {
        name: "sudo_face_photo_pin",
        user: FACE_USER,
        success: true,
        prompts: &["PIN: "],
        results: &["success"],
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

/// Run the scenario child for `kind` (namespace::run_scenario holds its mount namespace open
/// until it has exited, and ends what it left behind by pid).
fn run_scenario(kind: Kind) -> ScenarioRun {
    let kind_arg = match kind {
        Kind::Software => "software",
        Kind::Tpm => "tpm",
    };
    namespace::run_scenario(
        Path::new(env!("CARGO_BIN_EXE_sudo-su-scenario")),
        &["--kind", kind_arg],
        SCENARIO_TIMEOUT,
    )
}

/// `result=` of each pam_aloha line (`user="U" service="S" result=R...`), checking the prefix.
fn module_results(run: &Value, user: &str, service: &str) -> Vec<String> {
    let lines: Vec<&str> = run["syslog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .filter(|t| t.contains(&format!("pam_aloha({service}:auth): ")))
        // A face attempt that fell through logs its own line before the PIN's result.
        .filter(|t| !t.contains(" face: "))
        .collect();
    lines
        .iter()
        .map(|text| {
            let want = format!("user=\"{user}\" service=\"{service}\" result=");
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
        if let Some(why) = run["skipped"].as_str() {
            eprintln!("sudo_su: {name} skipped: {why}");
            continue;
        }
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
        // The camera looking for someone is shown even under sudo's PAM_SILENT, and only to a
        // user with a face.
        assert_eq!(
            transcript.contains(LOOKING),
            want.user == FACE_USER,
            "\"{LOOKING}\" in {}",
            context()
        );
        if name == "sudo_face_photo_pin" {
            let face_line = run["syslog"].as_array().unwrap().iter().any(|l| {
                let t = l["text"].as_str().unwrap();
                t.contains("face: FaceNotLive") || t.contains("face: FaceNoMatch")
            });
            assert!(face_line, "the refused face is logged in {}", context());
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
