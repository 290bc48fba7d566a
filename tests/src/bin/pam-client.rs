//! `pam-client CONFDIR SERVICE USER [--rhost HOST] [--silent]`: one pam_authenticate with real
//! libpam, answering prompts with stdin lines; prints `{"rc":…, "messages":[[style, text]…]}`.
//! Lets tests run a PAM application as an unprivileged user (a screen locker's situation).

use std::io::BufRead;
use std::path::PathBuf;

use aloha_tests::pam::{Answer, PamDir};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        args.len() >= 3,
        "usage: pam-client CONFDIR SERVICE USER [--rhost HOST] [--silent]"
    );
    let confdir = PathBuf::from(&args[0]);
    let mut rhost = None;
    let mut flags = 0;
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--rhost" => rhost = rest.next().cloned(),
            "--silent" => flags |= aloha_tests::pam::PAM_SILENT,
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
    println!(
        "{}",
        serde_json::json!({ "rc": auth.rc, "setcred": auth.setcred, "messages": messages })
    );
}
