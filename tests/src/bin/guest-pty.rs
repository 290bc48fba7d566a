//! Runs one command on a fresh pty inside the test guest (see `aloha_tests::guest`), answering
//! its prompts with [`aloha_tests::pty::converse`]: the same driver as the host's pty tests,
//! which waits for the terminal's echo to go off before typing a secret (`script` does not,
//! and loses input typed right after a PIN prompt).
//!
//! `guest-pty REQUEST.json`, where the request is
//! `{"argv": [...], "prompts": [...], "answers": [...], "timeout_ms": N}`; prints
//! `{"code", "signal", "transcript", "killed", "prompts", "error"}` on stdout. Exit status 0
//! when the command ran (whatever it did), 2 when the request was unusable.

use std::process::{Command, ExitCode};
use std::time::Duration;

use aloha_tests::pty::{Channel, converse};
use serde_json::{Value, json};

fn main() -> ExitCode {
    match run() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("guest-pty: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<Value, String> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: guest-pty REQUEST.json")?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    let req: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let strings = |key: &str| -> Result<Vec<String>, String> {
        req[key]
            .as_array()
            .ok_or(format!("{key} must be an array of strings"))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(format!("{key}: not a string"))
            })
            .collect()
    };
    let argv = strings("argv")?;
    let prompts = strings("prompts")?;
    let answers = strings("answers")?;
    let timeout = Duration::from_millis(req["timeout_ms"].as_u64().unwrap_or(30_000));
    let (program, args) = argv.split_first().ok_or("argv is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
    let c = converse(cmd, Channel::Pty, &prompts, &answers, timeout)
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok(json!({
        "code": c.finished.code,
        "signal": c.finished.signal,
        "transcript": c.finished.transcript,
        "killed": c.finished.killed,
        "prompts": c.prompts,
        "error": c.error,
    }))
}
