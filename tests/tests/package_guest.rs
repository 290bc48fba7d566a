//! The .deb on a real Debian 12 machine, checked as a new user would: install it (and the face
//! models), pam-auth-update has put pam_aloha in the stacks, alohad.socket listens while
//! alohad itself only starts on the first request, the sandboxed unit scores as it should in
//! `systemd-analyze security`, a user sets a PIN with `aloha pin set`, `sudo` on a real
//! terminal takes the PIN, a wrong PIN falls through to the password, a reboot keeps
//! everything, `apt remove` leaves /etc/pam.d byte for byte as it was and the password works,
//! `apt purge` says it removes /var/lib/aloha and leaves no file behind.
//!
//! One boot (plus the reboot), every check in order on it; each is reported by name and the
//! test fails at the end with every failure. Needs root, the packages of scripts/deps and the
//! packages `packaging/build.sh` writes to target/packages (or $ALOHA_PACKAGES). Run it with
//! `cargo test --workspace --test package_guest` (scripts/test does, after building them).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aloha_tests::guest::{Guest, GuestOptions, assert_checks_passed, check, note};
use aloha_tests::packages;

const SHORT: Duration = Duration::from_secs(90);
const APT: Duration = Duration::from_secs(300);
const PIN: &str = "246813";
const WRONG_PIN: &str = "135792";
const PASSWORD: &str = "correct horse 7";
/// What /etc, /usr and /var/lib hold, minus what dpkg, apt, systemd and the logs keep for
/// themselves: compared before the install and after the purge.
const LIST_FILES: &str = "find /etc /usr /var/lib /lib -xdev \\( -path /var/lib/dpkg -o -path /var/lib/apt \
     -o -path /var/lib/systemd -o -path /var/lib/ucf -o -path /etc/ld.so.cache \\) -prune -o -print | sort";
const HASH_PAM_D: &str = "cd /etc/pam.d && find . -type f -print0 | sort -z | xargs -0 sha256sum";

/// The packages in $ALOHA_PACKAGES (default target/packages), and the next revision of aloha
/// for the upgrade in $ALOHA_UPGRADE_PACKAGES (default target/packages-upgrade; built by
/// scripts/test with `ALOHA_RELEASE=2 packaging/build.sh target/packages-upgrade`).
fn packages() -> (PathBuf, PathBuf, PathBuf) {
    let (aloha, models) = packages::aloha_and_models();
    let next = packages::dir("ALOHA_UPGRADE_PACKAGES", "target/packages-upgrade");
    (aloha, models, packages::deb(&next, "aloha_"))
}

/// What the checks hand on to each other.
#[derive(Default)]
struct Seen {
    files_before: String,
    pam_d_before: String,
    deb: String,
    models: String,
    upgrade: String,
}

#[test]
fn package_in_a_real_debian() {
    let (deb, models, upgrade) = packages();
    let started = Instant::now();
    let mut guest = Guest::boot(GuestOptions::default());
    note(&format!(
        "booted in {:.1} s",
        guest.boot_time().as_secs_f64()
    ));
    let mut seen = Seen {
        deb: guest.install(&deb),
        models: guest.install(&models),
        upgrade: guest.install(&upgrade),
        ..Seen::default()
    };
    type Check = (&'static str, fn(&mut Guest, &mut Seen));
    let checks: &[Check] = &[
        ("before_the_install", before_the_install),
        ("install", install),
        (
            "socket_listens_and_alohad_waits",
            socket_listens_and_alohad_waits,
        ),
        ("pin_set", pin_set),
        ("doctor_finds_nothing_wrong", doctor_finds_nothing_wrong),
        ("sandbox", sandbox),
        ("idle_alohad_takes_no_cpu", idle_alohad_takes_no_cpu),
        ("sudo_takes_the_pin", sudo_takes_the_pin),
        ("wrong_pin_then_password", wrong_pin_then_password),
        ("reboot_keeps_everything", reboot_keeps_everything),
        ("upgrade_keeps_everything", upgrade_keeps_everything),
        ("remove_restores_pam_d", remove_restores_pam_d),
        ("purge_leaves_nothing", purge_leaves_nothing),
    ];
    let mut failed = Vec::new();
    for (name, run) in checks {
        if let Some(f) = check(name, || run(&mut guest, &mut seen)) {
            failed.push(f);
            // Nothing after these can be meaningful.
            if matches!(*name, "before_the_install" | "install" | "pin_set") {
                break;
            }
        }
    }
    drop(guest);
    note(&format!(
        "package test: {:.1} s in all",
        started.elapsed().as_secs_f64()
    ));
    assert_checks_passed("package guest", &failed);
}

/// A machine as a user has it: a TPM provisioned like a laptop's (32 tries), a user with a
/// password who may use sudo. Records /etc/pam.d and the file list before the install.
fn before_the_install(guest: &mut Guest, seen: &mut Seen) {
    guest
        .run(
            &format!(
                "set -e
                 TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_dictionarylockout -s -n 32 -t 7200 -l 86400
                 useradd -m -s /bin/bash alice
                 echo 'alice:{PASSWORD}' | chpasswd
                 echo 'alice ALL=(ALL) ALL' >/etc/sudoers.d/alice
                 chmod 0440 /etc/sudoers.d/alice"
            ),
            SHORT,
        )
        .ok();
    seen.pam_d_before = guest.run(HASH_PAM_D, SHORT).ok().stdout.clone();
    seen.files_before = guest.run(LIST_FILES, SHORT).ok().stdout.clone();
    assert!(
        !seen.pam_d_before.contains("pam_aloha"),
        "{}",
        seen.pam_d_before
    );
}

fn install(guest: &mut Guest, seen: &mut Seen) {
    let out = guest.run(
        &format!(
            "set -e
             export DEBIAN_FRONTEND=noninteractive
             apt-get install -y {} {}
             grep -nE 'pam_(aloha|unix)' /etc/pam.d/common-auth
             dpkg -L aloha | grep -E 'pam_aloha.so|alohad|man8' ",
            seen.deb, seen.models
        ),
        APT,
    );
    out.ok();
    // pam-auth-update put it first, jumping past pam_unix on success (its `end` becomes a
    // count, past the Additional block too), going on to it on anything else; the
    // keep_password line in the Additional block, after the password's success.
    let auth: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains(":auth\t"))
        .collect();
    assert!(
        auth.len() == 3
            && auth[0].contains("pam_aloha.so")
            && auth[0].contains("[success=")
            && auth[0].contains("default=ignore]")
            && auth[1].contains("pam_unix.so")
            && auth[2].contains("optional")
            && auth[2].ends_with("pam_aloha.so keep_password"),
        "{out:#?}"
    );
    assert!(
        out.stdout
            .contains("/usr/lib/x86_64-linux-gnu/security/pam_aloha.so"),
        "{out:#?}"
    );
}

fn socket_listens_and_alohad_waits(guest: &mut Guest, _: &mut Seen) {
    let out = guest.run(
        "systemctl is-enabled alohad.socket; systemctl is-active alohad.socket
         systemctl is-active alohad.service || true
         stat -c '%A %U' /run/aloha/alohad.sock",
        SHORT,
    );
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        ["enabled", "active", "inactive", "srw-rw-rw- root"],
        "nothing runs until the first request: {out:#?}"
    );
}

fn pin_set(guest: &mut Guest, _: &mut Seen) {
    let out = guest.run(
        &format!(
            "set -e
             printf '%s\\n' '{PASSWORD}' '{PIN}' '{PIN}' | runuser -u alice -- aloha pin set --pin-stdin
             systemctl is-active alohad.service
             runuser -u alice -- aloha status
             stat -c '%a %U' /var/lib/aloha/public/alice.pub
             stat -c '%a %U' /var/lib/aloha/private"
        ),
        SHORT,
    );
    out.ok();
    assert!(out.stdout.contains("\nactive\n"), "{out:#?}");
    assert!(
        out.stdout.contains("TPM"),
        "the key is in the TPM: {out:#?}"
    );
    // Public keys readable by everyone (pam_aloha runs as the user in screen lockers),
    // whatever the unit's UMask; the private side root's only.
    assert!(out.stdout.contains("644 root\n700 root"), "{out:#?}");
}

/// `aloha doctor` on the installed system: alohad reached through the socket, the TPM's
/// limits, pam-auth-update's stacks in the real /etc/pam.d, the state's modes, the models.
fn doctor_finds_nothing_wrong(guest: &mut Guest, _: &mut Seen) {
    let out = guest.run(
        "aloha doctor; echo \"exit=$?\"
         aloha doctor --json >/tmp/doctor.json; echo \"json-exit=$?\"
         runuser -u alice -- aloha doctor >/dev/null; echo \"alice-exit=$?\"
         cat /tmp/doctor.json",
        SHORT,
    );
    out.ok();
    for exit in ["exit=0", "json-exit=0", "alice-exit=0"] {
        assert!(out.stdout.contains(exit), "{exit}: {out:#?}");
    }
    for finding in [
        "ok       alohad  alohad answers on /run/aloha/alohad.sock",
        "ok       keys    new PINs protect keys in the TPM",
        "the TPM locks after 32 wrong PINs and forgets one every 7200 s",
        "ok       pam     sudo: PIN first (/etc/pam.d/common-auth:",
        "ok       pam     su: PIN first (",
        "password service \"aloha\" (/usr/lib/pam.d/aloha) asks only for the password",
        "ok       state   /var/lib/aloha belongs to root",
        "ok       models  the face models are in /usr/share/aloha/models",
        "Nothing wrong.",
    ] {
        assert!(out.stdout.contains(finding), "{finding}: {out:#?}");
    }
}

/// `systemd-analyze security`: at most 2.0 (the bar; fprintd's unit scores far worse).
fn sandbox(guest: &mut Guest, _: &mut Seen) {
    let out = guest.run(
        "systemd-analyze security --no-pager alohad.service | tail -n 3
         systemd-analyze security --no-pager fprintd.service 2>/dev/null | tail -n 1 || true",
        SHORT,
    );
    out.ok();
    let score = out
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("→ Overall exposure level for alohad.service: ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("no score for alohad.service: {out:#?}"));
    note(&format!("systemd-analyze security alohad.service: {score}"));
    assert!(score <= 2.0, "exposure {score} > 2.0: {out:#?}");
}

/// Between requests alohad sleeps in poll(2) with no timeout: no wake-ups at all.
fn idle_alohad_takes_no_cpu(guest: &mut Guest, _: &mut Seen) {
    let out = guest.run(
        "set -e
         pid=$(systemctl show -p MainPID --value alohad.service)
         sw() { grep -h ctxt_switches /proc/$pid/task/$pid/status | awk '{s+=$2} END {print s}'; }
         a=$(sw); sleep 3; b=$(sw)
         echo \"$a $b\"",
        SHORT,
    );
    out.ok();
    let v: Vec<u64> = out
        .stdout
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "{out:#?}");
    assert_eq!(
        v[0], v[1],
        "alohad's accept loop woke up while idle: {out:#?}"
    );
}

fn sudo(
    guest: &mut Guest,
    prompts: &[&str],
    answers: &[&str],
) -> aloha_tests::guest::GuestConversation {
    guest.converse(
        &["runuser", "-u", "alice", "--", "sudo", "-k", "id", "-un"],
        prompts,
        answers,
        Duration::from_secs(60),
    )
}

fn sudo_takes_the_pin(guest: &mut Guest, _: &mut Seen) {
    let c = sudo(guest, &["PIN: "], &[PIN]);
    assert_eq!(c.code, Some(0), "{c:#?}");
    assert_eq!(c.prompts, ["PIN: "], "only the PIN was asked: {c:#?}");
    assert!(c.transcript.contains("root"), "{c:#?}");
}

fn wrong_pin_then_password(guest: &mut Guest, _: &mut Seen) {
    let c = sudo(
        guest,
        &["PIN: ", "password for alice"],
        &[WRONG_PIN, PASSWORD],
    );
    assert_eq!(c.code, Some(0), "{c:#?}");
    assert_eq!(c.prompts.len(), 2, "{c:#?}");
    assert!(c.transcript.contains("root"), "{c:#?}");
    let out = guest.run("aloha status --user alice --json", SHORT);
    out.ok();
    let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("status JSON");
    assert_eq!(
        status["failed_attempts"], 1,
        "the wrong PIN counted: {out:#?}"
    );
}

fn reboot_keeps_everything(guest: &mut Guest, _: &mut Seen) {
    let took = guest.reboot();
    note(&format!("rebooted in {:.1} s", took.as_secs_f64()));
    let out = guest.run(
        "systemctl is-active alohad.socket; systemctl is-active alohad.service || true",
        SHORT,
    );
    assert_eq!(out.stdout, "active\ninactive\n", "{out:#?}");
    let c = sudo(guest, &["PIN: "], &[PIN]);
    assert_eq!(c.code, Some(0), "the PIN works after the reboot: {c:#?}");
    assert_eq!(c.prompts, ["PIN: "], "{c:#?}");
}

/// The next revision over the installed one: the admin's edit of aloha.toml (a conffile the
/// package did not change) stays without a question, the user's PIN and counter stay, the
/// socket listens, sudo takes the PIN.
fn upgrade_keeps_everything(guest: &mut Guest, seen: &mut Seen) {
    let out = guest.run(
        &format!(
            "set -e
             echo '# edited by the administrator' >>/etc/aloha/aloha.toml
             before=$(aloha status --user alice --json)
             DEBIAN_FRONTEND=noninteractive apt-get install -y {}
             dpkg-query -W -f='${{Version}}\n' aloha
             tail -n 1 /etc/aloha/aloha.toml
             systemctl is-active alohad.socket
             after=$(aloha status --user alice --json)
             [ \"$before\" = \"$after\" ] && echo same-status",
            seen.upgrade
        ),
        APT,
    );
    out.ok();
    assert!(
        out.stdout
            .contains("-2\n# edited by the administrator\nactive\nsame-status"),
        "{out:#?}"
    );
    let c = sudo(guest, &["PIN: "], &[PIN]);
    assert_eq!(c.code, Some(0), "the PIN works after the upgrade: {c:#?}");
}

fn remove_restores_pam_d(guest: &mut Guest, seen: &mut Seen) {
    let out = guest.run(
        "set -e
         DEBIAN_FRONTEND=noninteractive apt-get remove -y aloha
         systemctl is-active alohad.socket || true
         test -d /var/lib/aloha && echo state-kept",
        APT,
    );
    out.ok();
    assert!(out.stdout.contains("inactive\nstate-kept"), "{out:#?}");
    let after = guest.run(HASH_PAM_D, SHORT).ok().stdout.clone();
    assert_eq!(
        after, seen.pam_d_before,
        "/etc/pam.d differs from before the install"
    );
    let c = sudo(guest, &["password for alice"], &[PASSWORD]);
    assert_eq!(c.code, Some(0), "sudo with the password: {c:#?}");
    assert!(!c.transcript.contains("PIN"), "{c:#?}");
}

fn purge_leaves_nothing(guest: &mut Guest, seen: &mut Seen) {
    let out = guest.run(
        "set -e
         export DEBIAN_FRONTEND=noninteractive
         apt-get purge -y aloha aloha-face-models",
        APT,
    );
    out.ok();
    assert!(
        out.stdout.contains("removing /var/lib/aloha"),
        "purge says what it deletes: {out:#?}"
    );
    let files = guest.run(LIST_FILES, SHORT).ok().stdout.clone();
    let before: std::collections::BTreeSet<&str> = seen.files_before.lines().collect();
    let left: Vec<&str> = files
        .lines()
        .filter(|f| !before.contains(f))
        .filter(|f| !f.starts_with("/home/") && !Path::new(f).starts_with("/var/lib/sudo"))
        .collect();
    assert!(left.is_empty(), "left behind after the purge: {left:#?}");
}
