//! `aloha doctor` against a real alohad (software vault and swtpm), a private PAM directory
//! with the real pam_aloha.so, and alohad's own state directory: each finding appears when its
//! cause is made, with the exit status that says how bad it is.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aloha_tests::both;
use aloha_tests::build::artifact;
use aloha_tests::daemon::Run;
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::swtpm::Swtpm;
use serde_json::Value;

const NOBODY: u32 = 65534;
const PIN: &str = "482915";

/// pam-auth-update's common-auth with Aloha enabled, pam_aloha loaded by its built path.
fn common_auth() -> String {
    format!(
        "auth [success=2 default=ignore] {}\n\
         auth [success=1 default=ignore] pam_unix.so nullok\n\
         auth requisite pam_deny.so\n\
         auth required pam_permit.so\n",
        artifact("libpam_aloha.so").display()
    )
}

/// The fixture's PAM directory (it already holds alohad's password service) with `sudo`
/// including common-auth, and the password service named as alohad's default would be.
fn pam_dir(f: &Fixture) -> std::path::PathBuf {
    let dir = f.daemon.dir().join("pam.d");
    fs::write(dir.join("common-auth"), common_auth()).unwrap();
    fs::write(
        dir.join("sudo"),
        "@include common-auth\naccount required pam_permit.so\n",
    )
    .unwrap();
    dir
}

fn doctor(f: &Fixture, uid: Option<u32>, pam: &Path) -> (i32, Value) {
    let config = f.daemon.config_path();
    let args = [
        "doctor",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--pam-dir",
        pam.to_str().unwrap(),
    ];
    let run: Run = match uid {
        None => f.daemon.aloha(&args, ""),
        Some(uid) => f.daemon.aloha_as(uid, &args, ""),
    };
    let report = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run:#?}"));
    (run.code, report)
}

/// The findings at `level` in `area`, as "what" strings.
fn findings<'a>(report: &'a Value, area: &str, level: &str) -> Vec<&'a str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["area"] == area && c["level"] == level)
        .map(|c| c["what"].as_str().unwrap())
        .collect()
}

fn has(report: &Value, area: &str, level: &str, text: &str) -> bool {
    findings(report, area, level)
        .iter()
        .any(|w| w.contains(text))
}

fn a_healthy_install_then_each_fault(kind: Kind) {
    let f = Fixture::start(kind, |_| {});
    f.daemon
        .aloha(
            &["pin", "set", "--user", "nobody", "--pin-stdin"],
            &format!("{PIN}\n"),
        )
        .ok();
    let pam = pam_dir(&f);
    let (code, r) = doctor(&f, None, &pam);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        (r["problems"].as_u64(), r["warnings"].as_u64()),
        (Some(0), Some(0)),
        "{r:#}"
    );
    assert!(has(&r, "alohad", "ok", "alohad answers on"), "{r:#}");
    assert!(
        has(&r, "pam", "ok", "sudo: PIN first (") && has(&r, "pam", "ok", "common-auth:1"),
        "{r:#}"
    );
    assert!(
        has(&r, "pam", "ok", "password service \"aloha-test\""),
        "{r:#}"
    );
    assert!(has(&r, "state", "ok", "private/ to root alone"), "{r:#}");
    match kind {
        Kind::Tpm => {
            assert!(has(&r, "keys", "ok", "keys in the TPM"), "{r:#}");
            // Windows' settings on swtpm: 32 tries, headroom 2.
            assert!(
                has(
                    &r,
                    "tpm",
                    "ok",
                    "locks after 32 wrong PINs and forgets one every 7200 s"
                ),
                "{r:#}"
            );
            assert!(has(&r, "tpm", "ok", "leaving 29 to share"), "{r:#}");
        }
        Kind::Software => assert!(has(&r, "keys", "note", "software vault"), "{r:#}"),
    }

    // A lock-out stack: pam_aloha `required` in sudo.
    fs::write(
        pam.join("sudo"),
        format!(
            "auth required {}\nauth required pam_unix.so\n",
            artifact("libpam_aloha.so").display()
        ),
    )
    .unwrap();
    let (code, r) = doctor(&f, None, &pam);
    assert_eq!(code, 1, "{r:#}");
    assert!(
        has(&r, "pam", "problem", "sudo: pam_aloha is `required`"),
        "{r:#}"
    );
    fs::write(pam.join("sudo"), "@include common-auth\n").unwrap();

    // A secret others can read.
    let container = f
        .daemon
        .state_dir()
        .join("private/users/nobody/container.json");
    fs::set_permissions(&container, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, r) = doctor(&f, None, &pam);
    assert_eq!(code, 1, "{r:#}");
    assert!(
        has(&r, "state", "problem", "container.json has mode 644"),
        "{r:#}"
    );
    fs::set_permissions(&container, fs::Permissions::from_mode(0o600)).unwrap();

    // A user without root sees the same answers, and is told what only root can check.
    let (code, r) = doctor(&f, Some(NOBODY), &pam);
    assert_eq!(code, 0, "{r:#}");
    assert!(has(&r, "state", "note", "sudo aloha doctor"), "{r:#}");

    // Aloha not enabled anywhere: a warning is wrong too.
    fs::write(pam.join("sudo"), "auth required pam_unix.so\n").unwrap();
    let (code, r) = doctor(&f, None, &pam);
    assert_eq!(code, 1, "{r:#}");
    assert!(has(&r, "pam", "warning", "no PAM service in"), "{r:#}");
}

fn a_stopped_daemon_is_a_problem_with_the_fix(kind: Kind) {
    let mut f = Fixture::start(kind, |_| {});
    let pam = pam_dir(&f);
    f.daemon.stop();
    let (code, r) = doctor(&f, None, &pam);
    assert_eq!(code, 1, "{r:#}");
    let alohad: Vec<&Value> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["area"] == "alohad")
        .collect();
    assert_eq!(alohad[0]["level"], "problem", "{r:#}");
    assert!(
        alohad[0]["fix"]
            .as_str()
            .unwrap()
            .contains("systemctl enable --now alohad.socket"),
        "{r:#}"
    );
    assert!(has(&r, "keys", "note", "alohad did not answer"), "{r:#}");
    // The text form says the same, with the fix under it.
    let config = f.daemon.config_path();
    let text = f.daemon.aloha(
        &[
            "doctor",
            "--config",
            config.to_str().unwrap(),
            "--pam-dir",
            pam.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(text.code, 1, "{text:#?}");
    assert!(text.stdout.contains("PROBLEM  alohad"), "{text:#?}");
    assert!(
        text.stdout
            .contains("fix: systemctl enable --now alohad.socket"),
        "{text:#?}"
    );
}

both!(
    a_healthy_install_then_each_fault,
    a_stopped_daemon_is_a_problem_with_the_fix
);

#[test]
fn a_tpm_that_never_forgets_is_a_warning() {
    // alohad itself refuses a TPM whose maxTries leaves no budget (swtpm's default 3); one
    // that forgets no failure starts, and strands every user who uses their share.
    let f = Fixture::on(Some(Swtpm::start_with_da(32, 0, 86400)), |_| {});
    let pam = pam_dir(&f);
    let (code, r) = doctor(&f, None, &pam);
    assert_eq!(code, 1, "{r:#}");
    assert!(
        has(&r, "tpm", "warning", "never forgets a wrong PIN"),
        "{r:#}"
    );
    assert!(has(&r, "tpm", "ok", "never forgets one"), "{r:#}");
}

#[test]
fn a_broken_config_is_a_finding_not_a_crash() {
    let f = Fixture::start(Kind::Software, |_| {});
    let pam = pam_dir(&f);
    let bad = f.daemon.dir().join("bad.toml");
    fs::write(&bad, "version = 1\n[daemon]\nsokcet = \"/x\"\n").unwrap();
    let run = f.daemon.aloha(
        &[
            "doctor",
            "--json",
            "--config",
            bad.to_str().unwrap(),
            "--pam-dir",
            pam.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(run.code, 1, "{run:#?}");
    let r: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(has(&r, "config", "problem", "sokcet"), "{r:#}");
}
