//! The shipped password service (`packaging/pam/aloha`) with real pam_unix, for
//! `tests/tests/cli.rs`: run as root in a private mount namespace (see
//! `aloha_tests::namespace`), where /etc is an overlay, so useradd, chpasswd and the installed
//! /etc/pam.d/aloha vanish with the namespace.
//!
//! 1. enters a [`PrivateSystem`], prints `{"mnt_ns": INODE}` and waits for one line on stdin
//!    (the caller holds the namespace open to prove afterwards that nothing is left in it);
//! 2. creates a user with a password, installs the shipped file as /etc/pam.d/aloha, starts
//!    an alohad on the software vault that checks passwords with the system's `aloha` service;
//! 3. as that user (setpriv), runs `aloha pin set --pin-stdin` with a wrong password, then with
//!    the right one, then `aloha verify`;
//! 4. prints one JSON object with what happened. It asserts nothing: the test does.
//!
//! Exit status 0 when the steps ran (whatever they showed), 2 when setup failed or the caller
//! did not say `go` (the private system is dropped first, so its temp dir goes too).

use std::io::Write;
use std::path::Path;

use aloha_tests::build::workspace_root;
use aloha_tests::daemon::Run;
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::namespace::{self, PrivateSystem, step};
use serde_json::{Value, json};

const USER: &str = "aloha-pw";
const PASSWORD: &str = "Shipped-Service-4417";
const BAD_PASSWORD: &str = "Shipped-Wrong-8820";
const PIN: &str = "51827364";

fn record(run: &Run) -> Value {
    json!({"code": run.code, "stdout": run.stdout, "stderr": run.stderr})
}

/// Every file below `dir` (relative paths), to show what a step created.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn main() {
    namespace::scenario_main("shipped-pam-scenario", run);
}

fn run(system: &PrivateSystem) -> Result<(), String> {
    let ns = namespace::mount_namespace(None).map_err(step("namespace id"))?;
    println!("{}", json!({ "mnt_ns": ns }));
    let _ = std::io::stdout().flush();
    namespace::wait_for_go().map_err(step("stdin"))?;

    let uid = system
        .add_user(USER, Some(PASSWORD))
        .map_err(step("add user"))?;
    system.check().map_err(step("overlay"))?;
    let shipped = workspace_root().join("packaging/pam/aloha");
    std::fs::copy(&shipped, "/etc/pam.d/aloha")
        .map_err(step("install the shipped /etc/pam.d/aloha"))?;

    let fixture = Fixture::start(Kind::Software, |o| o.system_password_service = true);
    let d = &fixture.daemon;
    let state = d.state_dir();
    let as_user = |args: &[&str], stdin: &str| d.aloha_as(uid, args, stdin);
    let wrong = as_user(
        &["pin", "set", "--pin-stdin"],
        &format!("{BAD_PASSWORD}\n{PIN}\n"),
    );
    let after_wrong = files(&state);
    let status_after_wrong = as_user(&["status", "--json"], "");
    // A wrong account password earns a 2 s wait before alohad checks another (whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let right = as_user(
        &["pin", "set", "--pin-stdin"],
        &format!("{PASSWORD}\n{PIN}\n"),
    );
    let after_right = files(&state);
    let verify = as_user(&["verify", "--pin-stdin"], &format!("{PIN}\n"));
    let config = std::fs::read_to_string(d.config_path()).unwrap_or_default();
    let log = d.log();
    drop(fixture);

    let stray = namespace::end_strays(ns, Some(std::process::id()));
    let report = json!({
        "user": USER,
        "uid": uid,
        "secrets": [PASSWORD, BAD_PASSWORD, PIN],
        "config": config,
        "wrong_password": record(&wrong),
        "files_after_wrong": after_wrong,
        "status_after_wrong": record(&status_after_wrong),
        "right_password": record(&right),
        "files_after_right": after_right,
        "verify": record(&verify),
        "alohad_log": log,
        "stray": stray,
    });
    println!("{report}");
    Ok(())
}
