//! `pam-client CONFDIR SERVICE USER [--rhost HOST] [--silent] [--syslog]`: one pam_authenticate
//! with real libpam, answering prompts with stdin lines; prints
//! `{"rc":…, "setcred":…, "messages":[[style, text]…], "syslog":[{"priority":…, "text":…}…]}`.
//! Lets tests run a PAM application as an unprivileged user (a screen locker's situation).
//!
//! `--syslog` (root): first enter a private mount namespace (`aloha_tests::namespace`) and
//! bind a sink at /dev/log, so that the module's pam_syslog lines can be checked; the machine's
//! own log is not touched.

use std::io::BufRead;
use std::path::PathBuf;

use aloha_tests::namespace::PrivateSystem;
use aloha_tests::pam::{Answer, PamDir};
use aloha_tests::syslog::Syslog;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // First, while the process still has one thread.
    let system = args
        .iter()
        .any(|a| a == "--syslog")
        .then(|| PrivateSystem::enter().unwrap_or_else(|e| panic!("private namespace: {e}")));
    let syslog = system.as_ref().map(|s| {
        s.free_dev_log()
            .and_then(|p| Syslog::bind(&p))
            .unwrap_or_else(|e| panic!("bind /dev/log: {e}"))
    });
    assert!(
        args.len() >= 3,
        "usage: pam-client CONFDIR SERVICE USER [--rhost HOST] [--silent] [--syslog]"
    );
    let confdir = PathBuf::from(&args[0]);
    let mut rhost = None;
    let mut flags = 0;
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--rhost" => rhost = rest.next().cloned(),
            "--silent" => flags |= aloha_tests::pam::PAM_SILENT,
            "--syslog" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let answers: Vec<Answer> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| Answer::Text(l.unwrap()))
        .collect();
    let auth = PamDir::authenticate_in(
        &confdir,
        &args[1],
        &args[2],
        &answers,
        flags,
        rhost.as_deref(),
    );
    let messages: Vec<(String, String)> = auth
        .transcript
        .messages
        .iter()
        .map(|(s, t)| (format!("{s:?}"), t.clone()))
        .collect();
    let lines: Vec<serde_json::Value> = syslog
        .as_ref()
        .map(|s| s.drain())
        .unwrap_or_default()
        .into_iter()
        .map(|l| serde_json::json!({ "priority": l.priority, "text": l.text }))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "rc": auth.rc,
            "setcred": auth.setcred,
            "messages": messages,
            "syslog": lines,
        })
    );
    drop(syslog);
    drop(system);
}
