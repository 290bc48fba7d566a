//! The desktop's sign-in paths on a real Debian 12 machine with the .deb installed and enabled
//! by pam-auth-update: GDM's `gdm-password` stack, a screen locker that authenticates as the
//! user, and polkit (pkexec with pkttyagent on a pty), each with the PIN, an empty PIN
//! (Enter) and a wrong PIN reaching the password; pam_aloha inside a sandbox as tight as a
//! sandboxed polkit helper's; the login keyring unlocked by a PIN sign-in through the password
//! vault; an application's presence question answered on the real system bus through
//! aloha-presence (D-Bus-activated) and the user's terminal agent. Every message pam_aloha
//! shows on these paths is one line.
//!
//! What runs for real: libpam, pam-auth-update's stacks, pam_unix, pam_gnome_keyring and
//! gnome-keyring-daemon (on alice's user manager's session bus), polkitd, pkexec, pkttyagent and
//! polkit-agent-helper-1, systemd-run's sandbox, alohad socket-activated on swtpm, the system
//! bus and aloha-presence.
//! What does not: GDM and a locker themselves (too heavy under emulation): `pam-client` runs
//! their PAM services with the conversation they use (answers to prompts, info and error
//! messages shown), as root for the greeter and as the user for the locker. The file for
//! `gdm-password` is the one Debian's gdm3 package installs (GDM is not installed).
//!
//! One boot. Needs root, the packages of scripts/deps and the .debs `packaging/build.sh` writes
//! to target/packages (or $ALOHA_PACKAGES): `cargo test --workspace --test desktop_guest`.

use std::time::{Duration, Instant};

use aloha_tests::build::profile_dir;
use aloha_tests::guest::{Guest, GuestOptions, assert_checks_passed, check, note};
use aloha_tests::packages;
use serde_json::Value;

const SHORT: Duration = Duration::from_secs(90);
const APT: Duration = Duration::from_secs(300);
const PIN: &str = "246813";
const WRONG_PIN: &str = "135792";
const PASSWORD: &str = "correct horse 7";
/// Widest message pam_aloha may show: one line in a greeter's prompt area or a terminal.
const MAX_MESSAGE: usize = 80;

/// /etc/pam.d/gdm-password as Debian 12's gdm3 installs it.
const GDM_PASSWORD: &str = "#%PAM-1.0
auth    requisite       pam_nologin.so
auth\trequired\tpam_succeed_if.so user != root quiet_success
@include common-auth
auth    optional        pam_gnome_keyring.so
@include common-account
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so close
session required        pam_loginuid.so
session [success=ok ignore=ignore module_unknown=ignore default=bad]        pam_selinux.so open
session optional        pam_keyinit.so force revoke
session required        pam_limits.so
session required        pam_env.so readenv=1
session required        pam_env.so readenv=1 envfile=/etc/default/locale
@include common-session
session optional        pam_gnome_keyring.so auto_start
@include common-password
";

/// A screen locker's service (gnome-screensaver's and light-locker's shape): it runs as the
/// user whose screen is locked.
const LOCKER: &str = "@include common-auth\nauth optional pam_gnome_keyring.so\n";

#[test]
fn desktop_paths_in_a_real_debian() {
    let (deb, models) = packages::aloha_and_models();
    let started = Instant::now();
    let guest = Guest::boot(GuestOptions::default());
    note(&format!(
        "booted in {:.1} s",
        guest.boot_time().as_secs_f64()
    ));
    let deb = guest.install(&deb);
    let models = guest.install(&models);
    let client = guest.install(&profile_dir().join("pam-client"));
    let mut desk = Desk {
        guest,
        client,
        messages: Vec::new(),
    };
    type Check = (&'static str, fn(&mut Desk));
    let checks: &[Check] = &[
        ("greeter_pin", greeter_pin),
        (
            "greeter_enter_or_wrong_pin_reach_the_password",
            greeter_fallbacks,
        ),
        ("locker_as_the_user", locker_as_the_user),
        ("polkit_pkexec_on_a_pty", polkit_pkexec_on_a_pty),
        (
            "sandboxed_like_a_polkit_helper",
            sandboxed_like_a_polkit_helper,
        ),
        (
            "login_keyring_unlocked_by_the_pin",
            login_keyring_unlocked_by_the_pin,
        ),
        ("presence_on_the_system_bus", presence_on_the_system_bus),
        ("every_message_is_one_line", every_message_is_one_line),
    ];
    let mut failed = Vec::new();
    if let Some(f) = check("install", || install(&mut desk, &deb, &models)) {
        failed.push(f);
    } else {
        for (name, run) in checks {
            if let Some(f) = check(name, || run(&mut desk)) {
                failed.push(f);
            }
        }
    }
    drop(desk);
    note(&format!(
        "desktop test: {:.1} s in all",
        started.elapsed().as_secs_f64()
    ));
    assert_checks_passed("desktop guest", &failed);
}

struct Desk {
    guest: Guest,
    /// pam-client's path in the guest.
    client: String,
    /// Every (style, text) pam_aloha and the stacks showed, for the one-line check.
    messages: Vec<(String, String)>,
}

/// One pam_authenticate through the guest's /etc/pam.d, answering `answers` in order.
struct Auth {
    rc: i64,
    prompts: Vec<String>,
    shown: Vec<String>,
    raw: String,
}

impl Desk {
    /// `prefix` runs pam-client (runuser for the user, systemd-run for a sandbox).
    fn authenticate(&mut self, prefix: &str, service: &str, answers: &[&str]) -> Auth {
        let input: String = answers.iter().map(|a| format!("{a}\n")).collect();
        let out = self.guest.run(
            &format!(
                "printf %s '{input}' | {prefix} {} /etc/pam.d {service} alice",
                self.client
            ),
            SHORT,
        );
        out.ok();
        let v: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("pam-client printed no JSON ({e}): {out:#?}"));
        let messages: Vec<(String, String)> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m[0].as_str().unwrap().to_string(),
                    m[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        self.messages.extend(messages.iter().cloned());
        Auth {
            rc: v["rc"].as_i64().unwrap(),
            prompts: messages
                .iter()
                .filter(|(s, _)| s.starts_with("Prompt"))
                .map(|(_, t)| t.clone())
                .collect(),
            shown: messages
                .iter()
                .filter(|(s, _)| !s.starts_with("Prompt"))
                .map(|(_, t)| t.clone())
                .collect(),
            raw: out.stdout.clone(),
        }
    }
}

fn install(desk: &mut Desk, deb: &str, models: &str) {
    let out = desk.guest.run(
        &format!(
            "set -e
             export DEBIAN_FRONTEND=noninteractive
             TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_dictionarylockout -s -n 32 -t 7200 -l 86400
             apt-get install -y {deb} {models} >/dev/null
             useradd -m -s /bin/bash -G sudo alice
             echo 'alice:{PASSWORD}' | chpasswd
             printf '%s\\n' '{PASSWORD}' '{PIN}' '{PIN}' | runuser -u alice -- aloha pin set --pin-stdin
             cat >/etc/pam.d/gdm-password <<'PAM'
{GDM_PASSWORD}PAM
             cat >/etc/pam.d/aloha-locker <<'PAM'
{LOCKER}PAM
             dpkg-query -W -f '${{Version}}\\n' polkitd"
        ),
        APT,
    );
    out.ok();
    note(&format!(
        "polkitd {}",
        out.stdout.lines().last().unwrap_or("?")
    ));
}

/// What GDM's worker does (as root): the PIN alone signs in, no password asked.
fn greeter_pin(desk: &mut Desk) {
    let a = desk.authenticate("", "gdm-password", &[PIN]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: "], "{}", a.raw);
}

/// Enter on an empty PIN goes on to the password without counting anything; a wrong PIN says
/// so and goes on to the password; the password signs in either way.
fn greeter_fallbacks(desk: &mut Desk) {
    let a = desk.authenticate("", "gdm-password", &["", PASSWORD]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: ", "Password: "], "{}", a.raw);
    let a = desk.authenticate("", "gdm-password", &[WRONG_PIN, PASSWORD]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: ", "Password: "], "{}", a.raw);
    assert!(
        a.shown.iter().any(|m| m.starts_with("Wrong PIN.")),
        "{}",
        a.raw
    );
    // The right PIN clears the count again.
    greeter_pin(desk);
}

/// A locker runs PAM as the user whose screen is locked: pam_aloha reaches alohad and reads
/// the public key without root.
fn locker_as_the_user(desk: &mut Desk) {
    let a = desk.authenticate("runuser -u alice --", "aloha-locker", &[PIN]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: "], "{}", a.raw);
    let a = desk.authenticate("runuser -u alice --", "aloha-locker", &["", PASSWORD]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: ", "Password: "], "{}", a.raw);
}

/// pkexec on a real terminal with pkttyagent as the user's agent (pkexec's built-in agent
/// is refused by polkitd 122, "No session for cookie", whatever the stack): polkitd asks
/// polkit-agent-helper-1 (setuid root) to run the polkit-1 service, which pam-auth-update's
/// common-auth gives pam_aloha. pkexec authorizes its parent: the shell the agent serves.
fn polkit_pkexec_on_a_pty(desk: &mut Desk) {
    let script = "coproc AGENT { exec pkttyagent --notify-fd 9 --process $$ 9>&1 >/dev/tty 2>&1; }; \
                  read -r -u \"${AGENT[0]}\" _; \
                  pkexec /usr/bin/id -un; rc=$?; kill \"$AGENT_PID\"; exit $rc";
    let argv = ["runuser", "-u", "alice", "--", "bash", "-c", script];
    let c = desk
        .guest
        .converse(&argv, &["PIN: "], &[PIN], Duration::from_secs(60));
    assert_eq!(c.code, Some(0), "{c:#?}");
    assert!(c.transcript.contains("AUTHENTICATION COMPLETE"), "{c:#?}");
    assert!(c.transcript.trim_end().ends_with("root"), "{c:#?}");
    let c = desk.guest.converse(
        &argv,
        &["PIN: ", "Password: "],
        &["", PASSWORD],
        Duration::from_secs(60),
    );
    assert_eq!(c.code, Some(0), "{c:#?}");
    assert!(c.transcript.trim_end().ends_with("root"), "{c:#?}");
}

/// polkit ≥ 124 can run its helper as a sandboxed socket-activated service; whatever the
/// guest's polkit does, pam_aloha must work in such a sandbox: no devices, no network, a
/// read-only system, no capabilities beyond root's file access, only AF_UNIX. It needs only
/// alohad's socket, /etc/aloha and the public keys; hiding the socket falls through to the
/// password.
fn sandboxed_like_a_polkit_helper(desk: &mut Desk) {
    let sandbox = "systemd-run --quiet --pipe --wait --collect \
        -p PrivateDevices=yes -p PrivateNetwork=yes -p ProtectSystem=strict -p ProtectHome=yes \
        -p PrivateTmp=yes -p NoNewPrivileges=yes -p RestrictAddressFamilies=AF_UNIX \
        -p ProtectKernelTunables=yes -p ProtectKernelModules=yes -p ProtectControlGroups=yes \
        -p ProtectClock=yes -p ProtectHostname=yes -p LockPersonality=yes \
        -p MemoryDenyWriteExecute=yes -p RestrictNamespaces=yes -p RestrictRealtime=yes \
        -p SystemCallArchitectures=native -p 'CapabilityBoundingSet=CAP_DAC_READ_SEARCH'";
    let a = desk.authenticate(sandbox, "polkit-1", &[PIN]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: "], "{}", a.raw);
    let hidden = format!("{sandbox} -p InaccessiblePaths=/run/aloha");
    let a = desk.authenticate(&hidden, "polkit-1", &[PASSWORD]);
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["Password: "], "{}", a.raw);
}

/// A login-style stack whose keyring module starts gnome-keyring-daemon and unlocks the login
/// keyring with PAM_AUTHTOK, as a display manager's does.
const LOGIN: &str = "@include common-auth\nauth optional pam_gnome_keyring.so auto_start\n";

/// The password vault's point: after `aloha vault enable`, a PIN sign-in through a stack with
/// pam_gnome_keyring unlocks the login keyring (created by an earlier password sign-in), which
/// a PIN sign-in alone never could. Checked over the user's session bus (the Secret Service's
/// `Locked` property), locked first so the check can fail.
fn login_keyring_unlocked_by_the_pin(desk: &mut Desk) {
    let session =
        "XDG_RUNTIME_DIR=/run/user/1000 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus";
    let locked = format!(
        "runuser -u alice -- env {session} busctl --user get-property org.freedesktop.secrets \
         /org/freedesktop/secrets/collection/login org.freedesktop.Secret.Collection Locked"
    );
    let out = desk.guest.run(
        &format!(
            "set -e
             cat >/etc/pam.d/aloha-login <<'PAM'
{LOGIN}PAM
             loginctl enable-linger alice
             for i in $(seq 150); do [ -S /run/user/1000/bus ] && break; sleep 0.2; done
             printf '%s\\n' '{PASSWORD}' | runuser -u alice -- aloha vault enable --pin-stdin
             runuser -u alice -- aloha status | grep -i 'password vault'
             # A password sign-in creates the login keyring under the password.
             printf '\\n%s\\n' '{PASSWORD}' | runuser -u alice -- env {session} {client} /etc/pam.d aloha-login alice
             pkill -u alice -x gnome-keyring-d || true
             sleep 1
             echo \"before: $({locked})\"",
            client = desk.client
        ),
        SHORT,
    );
    out.ok();
    assert!(
        out.stdout.contains("before: b true"),
        "the keyring starts locked: {out:#?}"
    );
    let a = desk.authenticate(
        &format!("runuser -u alice -- env {session}"),
        "aloha-login",
        &[PIN],
    );
    assert_eq!(a.rc, 0, "{}", a.raw);
    assert_eq!(a.prompts, ["PIN: "], "the PIN alone: {}", a.raw);
    let out = desk.guest.run(&locked, SHORT);
    out.ok();
    assert!(
        out.stdout.contains("b false"),
        "the login keyring is unlocked after the PIN sign-in: {out:#?}"
    );
}

/// "Is the user here?" through the installed package: aloha-presence D-Bus-activated by the
/// guest's system bus (through systemd), alice's terminal agent, the example application.
fn presence_on_the_system_bus(desk: &mut Desk) {
    let out = desk.guest.run(
        &format!(
            "printf '%s\\n' '{WRONG_PIN}' '{PIN}' >/tmp/pins
             runuser -u alice -- sh -c 'aloha presence agent --pin-stdin </tmp/pins 2>/tmp/agent.log & echo $! >/tmp/agent.pid'
             for i in $(seq 150); do grep -q 'Presence agent for alice' /tmp/agent.log && break; sleep 0.2; done
             runuser -u alice -- aloha presence ask 'Unlock the test vault'; rc=$?
             kill $(cat /tmp/agent.pid)
             echo \"unit: $(systemctl is-active aloha-presence.service)\"
             cat /tmp/agent.log
             journalctl -q -u aloha-presence.service --no-pager | tail -n 5
             exit $rc"
        ),
        SHORT,
    );
    out.ok();
    assert!(
        out.stdout.contains("alice is here (answered by pin)"),
        "{out:#?}"
    );
    assert!(
        out.stdout.contains("unit: active"),
        "started by D-Bus activation: {out:#?}"
    );
    assert!(
        out.stdout.contains("Wrong PIN"),
        "the agent said why it asked again: {out:#?}"
    );
    assert!(out.stdout.contains("presence question"), "logged: {out:#?}");
}

/// A greeter shows a message in one line under the entry; a terminal in one row.
fn every_message_is_one_line(desk: &mut Desk) {
    assert!(!desk.messages.is_empty());
    for (style, text) in &desk.messages {
        assert!(
            !text.contains('\n') && text.chars().count() <= MAX_MESSAGE,
            "{style} {text:?} is not one line of at most {MAX_MESSAGE} characters"
        );
    }
}
