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
    /// Try the face first (`noface` turns it off).
    pub face: bool,
    /// Ask for the PIN (`nopin` turns it off).
    pub pin: bool,
    /// `face_timeout=SECONDS`: how long to look for the face (default 4, at most 30).
    pub face_timeout: Duration,
    /// `keep_password`: this line sits after the password module and only hands the password
    /// the stack accepted to the user's vault (libpam wipes PAM_AUTHTOK when pam_authenticate
    /// returns, so setcred cannot).
    pub keep_password: bool,
    /// Arguments we did not understand (logged, otherwise ignored).
    pub unknown: Vec<String>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_FACE_TIMEOUT: Duration = Duration::from_secs(4);

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
            face: true,
            pin: true,
            face_timeout: DEFAULT_FACE_TIMEOUT,
            keep_password: false,
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
                Some(("face_timeout", v)) => match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 30.0 => {
                        parsed.face_timeout = Duration::from_secs_f64(s)
                    }
                    _ => parsed.unknown.push(arg.to_string()),
                },
                None if arg == "debug" => parsed.debug = true,
                None if arg == "noface" => parsed.face = false,
                None if arg == "nopin" => parsed.pin = false,
                None if arg == "keep_password" => parsed.keep_password = true,
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
            "socket={} config={} timeout={}s debug={} face={} face_timeout={}s pin={}",
            path(&self.socket),
            path(&self.config),
            self.timeout.as_secs_f64(),
            self.debug,
            self.face,
            self.face_timeout.as_secs_f64(),
            self.pin
        )
    }
}
