//! The module arguments from the PAM service file ([`Args`]; the README's table).

use std::ffi::CStr;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Module arguments from the PAM service file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `socket=PATH`: alohad's socket (default: aloha.toml, else /run/aloha/alohad.sock).
    pub socket: Option<PathBuf>,
    /// `config=PATH`: aloha.toml to read (default /etc/aloha/aloha.toml).
    pub config: Option<PathBuf>,
    /// `timeout=SECONDS`: how long, in all, one sign-in may wait for alohad (default 10).
    pub timeout: Duration,
    /// `debug`: log every step.
    pub debug: bool,
    /// Arguments we did not understand (logged, otherwise ignored).
    pub unknown: Vec<String>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Args {
    /// The arguments as libpam hands them over (one that is not UTF-8 is dropped).
    pub fn from_pam(args: &[&CStr]) -> Args {
        Args::parse(args.iter().filter_map(|a| a.to_str().ok()))
    }

    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Args {
        let mut parsed = Args {
            socket: None,
            config: None,
            timeout: DEFAULT_TIMEOUT,
            debug: false,
            unknown: vec![],
        };
        for arg in args {
            match arg.split_once('=') {
                Some(("socket", v)) if !v.is_empty() => parsed.socket = Some(v.into()),
                Some(("config", v)) if !v.is_empty() => parsed.config = Some(v.into()),
                Some(("timeout", v)) => match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 600.0 => parsed.timeout = Duration::from_secs_f64(s),
                    _ => parsed.unknown.push(arg.to_string()),
                },
                None if arg == "debug" => parsed.debug = true,
                _ => parsed.unknown.push(arg.to_string()),
            }
        }
        parsed
    }

    /// The arguments in effect, defaults included, for the debug log.
    pub fn describe(&self) -> String {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("(default)".to_string(), |p| p.display().to_string())
        };
        format!(
            "socket={} config={} timeout={}s debug={}",
            path(&self.socket),
            path(&self.config),
            self.timeout.as_secs_f64(),
            self.debug
        )
    }
}
