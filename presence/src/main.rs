//! aloha-presence: "is the user here?" for applications. It owns `org.aloha.Presence1` on the
//! system bus (D-Bus-activated, as root, so it can ask alohad for any caller), and answers an
//! application's `Verify(reason, challenge)` with a fresh signature by the caller's own key,
//! released by their face or their PIN typed into their agent (`aloha presence agent`). alohad
//! stays free of D-Bus; this process holds no key and no state.

mod agents;
mod bus;
mod question;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aloha::config::Config;

const USAGE: &str = "usage: aloha-presence [--config FILE]\n\
Serves org.aloha.Presence1 on the system bus (started by D-Bus activation as root).";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--config", Some(path)) => config_path = Some(path.into()),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALOHA_PRESENCE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let config = match Config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aloha-presence: {e}");
            return ExitCode::from(1);
        }
    };
    let settings = bus::Settings {
        socket: config.daemon.socket.clone(),
        alohad_timeout: Duration::from_secs(30),
        face_timeout: Duration::from_millis(config.face.attempt_timeout_ms),
    };
    match bus::serve(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aloha-presence: {e:#}");
            ExitCode::from(1)
        }
    }
}
