//! The guest harness itself (`aloha_tests::guest`): one real Debian 12 machine under qemu
//! proves what the later end-to-end tests rely on — systemd running, `/dev/tpmrm0` through
//! the kernel's resource manager, vivid's 8/10/16-bit formats, a frame played into
//! v4l2loopback captured back byte for byte, a pty in the guest, state kept over a reboot.
//!
//! One `#[test]` runs every check on one boot (~15-25 s under TCG, more than all the checks
//! together). libtest has no per-binary setup or teardown: a guest shared through a `static`
//! would never be dropped, leaving qemu, swtpm and the temp dir behind. Each check is run and
//! reported by name, and the test fails at the end with every failed check.
//!
//! Needs root and the packages of scripts/deps; builds the guest image on first use
//! (minutes; cached in target/vm). Timings go to stderr, past the capture.

use std::panic::catch_unwind;
use std::time::{Duration, Instant};

use aloha_tests::guest::{
    Guest, GuestOptions, assert_checks_passed, check, image, note, panic_text,
};

const SHORT: Duration = Duration::from_secs(60);

/// A named check on the running guest; a panic fails it.
type Check = (&'static str, fn(&mut Guest));

#[test]
fn guest_machine() {
    let started = Instant::now();
    boot_failure_is_reported();
    note(&format!(
        "ok   boot_failure_is_reported ({:.1} s, image included)",
        started.elapsed().as_secs_f64()
    ));
    let mut guest = Guest::boot(GuestOptions::default());
    note(&format!(
        "image ready in {:.1} s ({}); booted in {:.1} s",
        image().build_time.as_secs_f64(),
        image().dir.display(),
        guest.boot_time().as_secs_f64()
    ));
    let checks: &[Check] = &[
        ("round_trip", round_trip),
        ("systemd_running", systemd_running),
        ("tpmrm0", tpmrm0),
        ("vivid_formats", vivid_formats),
        ("v4l2loopback_frame", v4l2loopback_frame),
        ("pty", pty),
        ("reboot_keeps_state", reboot_keeps_state),
    ];
    let failed: Vec<String> = checks
        .iter()
        .filter_map(|(name, run)| check(name, || run(&mut guest)))
        .collect();
    let started = Instant::now();
    drop(guest);
    note(&format!(
        "powered off and cleaned up in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    assert_checks_passed("guest", &failed);
}

/// The pids of this process's children (qemu and swtpm are, while a guest runs).
fn children() -> Vec<(u32, String)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        if tail.split_whitespace().nth(1) == Some(me.as_str()) {
            let comm = head
                .split_once('(')
                .map(|(_, c)| c.to_owned())
                .unwrap_or_default();
            found.push((pid, comm));
        }
    }
    found
}

/// A guest that does not come up in time panics with a message that says so and shows the
/// console, and leaves no qemu, no swtpm and no temp dir behind.
fn boot_failure_is_reported() {
    let before = children();
    let err = catch_unwind(|| {
        Guest::boot(GuestOptions {
            boot_timeout: Duration::from_secs(3),
            ..GuestOptions::default()
        })
    })
    .map(drop)
    .expect_err("a guest cannot boot in 3 s under TCG");
    let msg = panic_text(&*err);
    assert!(
        msg.contains("did not answer within 3s") && msg.contains("of the guest console"),
        "unexpected boot failure message: {msg}"
    );
    let dir = msg
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no temp dir in: {msg}"));
    assert!(
        !std::path::Path::new(dir).exists(),
        "the failed guest's temp dir {dir} is still there"
    );
    assert_eq!(children(), before, "the failed guest left processes behind");
}

/// A command's round trip through the 9p queue, with the guest otherwise idle.
fn round_trip(guest: &mut Guest) {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let out = guest.run("true", SHORT);
            out.ok();
            out.elapsed
        })
        .collect();
    times.sort();
    note(&format!(
        "command round trip: min {:.2} s, median {:.2} s, max {:.2} s",
        times[0].as_secs_f64(),
        times[2].as_secs_f64(),
        times[4].as_secs_f64()
    ));
    let out = guest.run("id -u; echo to-stderr >&2; exit 3", SHORT);
    assert_eq!(out.status, 3, "{out:#?}");
    assert_eq!(
        out.stdout, "0\n",
        "the agent runs scripts as root: {out:#?}"
    );
    assert_eq!(out.stderr, "to-stderr\n", "{out:#?}");
    // A job past its limit is stopped by the guest (timeout(1): status 124).
    let out = guest.run("echo started; sleep 600", Duration::from_secs(2));
    assert_eq!(
        (out.status, out.stdout.as_str()),
        (124, "started\n"),
        "{out:#?}"
    );
    assert!(out.elapsed < Duration::from_secs(20), "{out:#?}");
}

fn systemd_running(guest: &mut Guest) {
    let out = guest.run(
        "state=$(systemctl is-system-running --wait); echo \"$state\"
         if [ \"$state\" != running ]; then
             systemctl --failed --no-legend --no-pager
             for u in $(systemctl --failed --no-legend --plain | cut -d' ' -f1); do
                 journalctl -b -u \"$u\" --no-pager | tail -n 20
             done
         fi",
        Duration::from_secs(180),
    );
    assert_eq!(
        out.stdout.lines().next(),
        Some("running"),
        "systemd is not `running`; failed units and their logs:\n{}{}",
        out.stdout,
        out.stderr
    );
}

fn tpmrm0(guest: &mut Guest) {
    let out = guest.run(
        "ls -l /dev/tpm0 /dev/tpmrm0 >&2
         TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_getrandom --hex 8",
        SHORT,
    );
    out.ok();
    let hex = out.stdout.trim();
    assert!(
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "tpm2_getrandom through /dev/tpmrm0 gave no 8 random bytes: {out:#?}"
    );
}

fn vivid_formats(guest: &mut Guest) {
    let out = guest.run(
        "set -e
         modprobe vivid n_devs=1 node_types=0x1
         udevadm settle
         for n in /sys/class/video4linux/video*/name; do
             if grep -q vivid \"$n\"; then dev=/dev/${n#/sys/class/video4linux/}; dev=${dev%/name}; fi
         done
         echo \"device $dev\"
         v4l2-ctl -d \"$dev\" --list-formats",
        SHORT,
    );
    out.ok();
    for fourcc in ["'GREY'", "'Y10 '", "'Y16 '"] {
        assert!(
            out.stdout.contains(fourcc),
            "vivid does not offer {fourcc}:\n{}",
            out.stdout
        );
    }
}

fn v4l2loopback_frame(guest: &mut Guest) {
    let bin = guest.install(std::path::Path::new(env!("CARGO_BIN_EXE_v4l2-frame")));
    let out = guest.run(
        &format!(
            "set -e
             modprobe v4l2loopback devices=1 video_nr=10 exclusive_caps=1 card_label=aloha-loop
             udevadm settle
             for fmt in GREY Y16; do
                 {bin} produce /dev/video10 640 480 $fmt 30 /tmp/sent.$fmt &
                 producer=$!
                 {bin} capture /dev/video10 /tmp/got.$fmt 20
                 kill $producer; wait $producer || true
                 cmp /tmp/sent.$fmt /tmp/got.$fmt
                 echo \"$fmt identical $(stat -c %s /tmp/got.$fmt) bytes\"
             done"
        ),
        SHORT,
    );
    out.ok();
    assert!(
        out.stdout.contains("GREY identical 307200 bytes")
            && out.stdout.contains("Y16 identical 614400 bytes"),
        "{out:#?}"
    );
}

fn pty(guest: &mut Guest) {
    let c = guest.converse(
        &[
            "bash",
            "-c",
            "[ -t 0 ] || exit 9; read -r -s -p 'PIN: ' pin; echo; echo \"got <$pin>\"",
        ],
        &["PIN: "],
        &["2468"],
        Duration::from_secs(30),
    );
    assert_eq!(c.code, Some(0), "{c:#?}");
    assert_eq!(c.prompts, ["PIN: "], "{c:#?}");
    assert!(c.transcript.contains("got <2468>"), "{c:#?}");
    // Echo was off while the PIN was typed: it appears once, in the reply only.
    assert_eq!(c.transcript.matches("2468").count(), 1, "{c:#?}");
}

/// An NV index in the owner range for the reboot check.
const NV_INDEX: &str = "0x1500016";

/// A file in /var/lib and a TPM NV index survive [`Guest::reboot`]; the boot id changes.
fn reboot_keeps_state(guest: &mut Guest) {
    let token = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos()
    );
    guest
        .run(
            &format!(
                "set -e
                 mkdir -p /var/lib/aloha-guest-check
                 echo {token} >/var/lib/aloha-guest-check/stamp
                 export TPM2TOOLS_TCTI=device:/dev/tpmrm0
                 tpm2_nvdefine {NV_INDEX} -C o -s 8 -a 'ownerread|ownerwrite' >/dev/null
                 printf aloha-nv | tpm2_nvwrite {NV_INDEX} -C o -i -
                 sync"
            ),
            SHORT,
        )
        .ok();
    let before = guest.boot_id().to_owned();
    let took = guest.reboot();
    note(&format!("rebooted in {:.1} s", took.as_secs_f64()));
    assert_ne!(guest.boot_id(), before, "the boot id did not change");
    let out = guest.run(
        &format!(
            "cat /var/lib/aloha-guest-check/stamp /proc/sys/kernel/random/boot_id
             TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_nvread {NV_INDEX} -C o -s 8; echo"
        ),
        SHORT,
    );
    out.ok();
    let mut lines = out.stdout.lines();
    assert_eq!(lines.next(), Some(token.as_str()), "{out:#?}");
    assert_eq!(lines.next(), Some(guest.boot_id()), "{out:#?}");
    assert_eq!(
        lines.next(),
        Some("aloha-nv"),
        "the TPM's NV index did not survive the reboot: {out:#?}"
    );
}
