//! What pam_aloha does, as ordinary Rust behind [`Host`] (the PAM handle in production, a
//! scripted host in tests). No policy lives here: alohad decides; this side proves.
//!
//! 1. Remote sessions (non-local PAM_RHOST, or sshd) → PAM_IGNORE: a network attacker must not
//!    burn anyone's attempts.
//! 2. No registered key, daemon unreachable, config unreadable → fall through to the password
//!    (PAM_AUTHINFO_UNAVAIL, fprintd's convention); an unknown user → PAM_IGNORE. Either way
//!    with one log line saying why.
//! 3. Locked or waiting → say so ("use your password"), no prompt.
//! 4. Prompt `PIN:`; empty or cancelled → fall through, nothing counted.
//! 5. Our nonce + PIN to alohad; the signature that comes back is verified here against the
//!    registered public key. Only a verified signature is PAM_SUCCESS.

use std::path::PathBuf;
use std::time::Duration;

use aloha::Secret;
use aloha::challenge::{self, Nonce};
use aloha::client::{Client, ClientError};
use aloha::config::Config;
use aloha::lockout::{Gate, refusal_message};
use aloha::protocol::{ErrorCode, Request, Response};
use aloha::registry::{self, RegistryError};

/// The PAM return codes this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A wrong PIN, a forged answer, a wait in force.
    AuthErr,
    /// The PIN is locked.
    MaxTries,
    /// Nothing to sign in with here (not enrolled, daemon down): the password decides.
    Unavailable,
    /// Not our business (remote session, unknown user, the user skipped the PIN).
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Notice,
    Error,
}

/// The PAM side of a sign-in: items, the conversation and syslog.
pub trait Host {
    /// PAM_USER (pam_get_user may ask for it).
    fn user(&mut self) -> Option<String>;
    fn service(&self) -> String;
    fn rhost(&self) -> Option<String>;
    /// Ask for a secret with echo off. `Err(())`: the conversation failed or was cancelled.
    #[allow(clippy::result_unit_err)]
    fn ask_secret(&mut self, prompt: &str) -> Result<Secret, ()>;
    /// Show an error message (not under PAM_SILENT — the host knows).
    fn tell(&mut self, message: &str);
    /// pam_syslog(LOG_AUTHPRIV).
    fn log(&mut self, level: Level, message: &str);
    /// The user's uid from the system's user database.
    fn uid_of(&self, user: &str) -> Option<u32>;
}

/// Module arguments from the PAM service file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// `socket=PATH`: alohad's socket (default: aloha.toml, else /run/aloha/alohad.sock).
    pub socket: Option<PathBuf>,
    /// `config=PATH`: aloha.toml to read (default /etc/aloha/aloha.toml).
    pub config: Option<PathBuf>,
    /// `timeout=SECONDS`: how long to wait for alohad at each step (default 10).
    pub timeout: Duration,
    /// `debug`: log every step.
    pub debug: bool,
    /// Arguments we did not understand (logged, otherwise ignored).
    pub unknown: Vec<String>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Args {
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
}

/// Is this PAM_RHOST the machine itself?
pub fn is_local(rhost: &str) -> bool {
    let host = rhost.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "localhost" || host == "::1" || host.starts_with("127.") {
        return true;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .is_some_and(|own| own.eq_ignore_ascii_case(host))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One sign-in attempt. Never panics; every way out is logged once.
pub fn authenticate(host: &mut dyn Host, args: &Args) -> Outcome {
    let service = host.service();
    for arg in &args.unknown {
        host.log(
            Level::Notice,
            &format!("ignoring unknown module argument {arg:?}"),
        );
    }
    let Some(user) = host.user() else {
        host.log(Level::Notice, "no user name; leaving it to the next module");
        return Outcome::Ignore;
    };
    let says = |host: &mut dyn Host, level: Level, why: &str| {
        host.log(level, &format!("user={user} service={service} {why}"));
    };

    if service == "sshd" {
        says(host, Level::Info, "result=ignore: remote session (sshd)");
        return Outcome::Ignore;
    }
    if let Some(rhost) = host.rhost().filter(|r| !is_local(r)) {
        says(
            host,
            Level::Info,
            &format!("result=ignore: remote session from {rhost}"),
        );
        return Outcome::Ignore;
    }

    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Outcome::Unavailable;
        }
    };
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| config.daemon.socket.clone());

    let Some(uid) = host.uid_of(&user) else {
        says(host, Level::Info, "result=ignore: no such user");
        return Outcome::Ignore;
    };
    // The key we will check the answer against: from the registry, never from the socket.
    let registered = match registry::load(&config.daemon.state_dir, &user, Some(uid)) {
        Ok(k) => k,
        Err(RegistryError::NotEnrolled { .. }) => {
            says(
                host,
                Level::Info,
                "result=unavailable: no Aloha PIN enrolled",
            );
            return Outcome::Unavailable;
        }
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Outcome::Unavailable;
        }
    };

    // Before asking for a PIN: is an attempt possible at all?
    let status = Client::connect(&socket, args.timeout, "pam_aloha")
        .and_then(|mut c| c.call(&Request::Status { user: user.clone() }));
    let status = match status {
        Ok(Response::Status(s)) => s,
        Ok(other) => {
            says(
                host,
                Level::Error,
                &format!("result=unavailable: unexpected reply {other:?}"),
            );
            return Outcome::Unavailable;
        }
        Err(e) => return unavailable(host, &user, &service, &e),
    };
    if !status.enrolled {
        says(
            host,
            Level::Info,
            "result=unavailable: registered key but no container (alohad)",
        );
        return Outcome::Unavailable;
    }
    let now = now();
    if let Some(message) = refusal_message(&user, status.gate, status.failed_attempts, now) {
        host.tell(&message);
        let (outcome, what) = match status.gate {
            Gate::Locked => (Outcome::MaxTries, "locked"),
            _ => (Outcome::AuthErr, "waiting"),
        };
        says(
            host,
            Level::Notice,
            &format!("result={what}: not prompting"),
        );
        return outcome;
    }

    let pin = match host.ask_secret("PIN: ") {
        Ok(pin) if !pin.is_empty() => pin,
        Ok(_) => {
            says(
                host,
                Level::Info,
                "result=ignore: empty PIN, falling through to the password",
            );
            return Outcome::Ignore;
        }
        Err(()) => {
            says(
                host,
                Level::Info,
                "result=ignore: PIN prompt cancelled or failed",
            );
            return Outcome::Ignore;
        }
    };

    let nonce = match Nonce::random() {
        Ok(n) => n,
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Outcome::Unavailable;
        }
    };
    let reply = Client::connect(&socket, args.timeout, "pam_aloha").and_then(|mut c| {
        c.call(&Request::SignIn {
            user: user.clone(),
            service: service.clone(),
            nonce,
            pin,
        })
    });
    match reply {
        Ok(Response::Signed { signature, backend }) => {
            match challenge::verify(&registered.public_key, &user, &nonce, &signature) {
                Ok(()) => {
                    says(
                        host,
                        Level::Info,
                        &format!("result=success ({})", backend.name()),
                    );
                    Outcome::Success
                }
                Err(e) => {
                    says(
                        host,
                        Level::Error,
                        &format!(
                            "result=denied: the answer from {} does not verify ({e}); is something impersonating alohad?",
                            socket.display()
                        ),
                    );
                    Outcome::AuthErr
                }
            }
        }
        Ok(other) => {
            says(
                host,
                Level::Error,
                &format!("result=denied: unexpected reply {other:?}"),
            );
            Outcome::AuthErr
        }
        Err(ClientError::Refused(f)) => {
            host.tell(&f.message);
            let (outcome, what) = match f.code {
                ErrorCode::WrongPin if f.left_before_lock == Some(0) => {
                    (Outcome::MaxTries, "wrong_pin_now_locked")
                }
                ErrorCode::WrongPin => (Outcome::AuthErr, "wrong_pin"),
                ErrorCode::Delayed => (Outcome::AuthErr, "waiting"),
                ErrorCode::Locked => (Outcome::MaxTries, "locked"),
                _ => (Outcome::Unavailable, "unavailable"),
            };
            says(
                host,
                Level::Notice,
                &format!("result={what} ({:?})", f.code),
            );
            outcome
        }
        Err(e) => {
            host.tell("Aloha did not answer; use your password.");
            unavailable(host, &user, &service, &e)
        }
    }
}

fn unavailable(host: &mut dyn Host, user: &str, service: &str, e: &ClientError) -> Outcome {
    if let ClientError::Refused(f) = e {
        // e.g. the TPM is in lockout, or the state is corrupt: the user should know.
        host.tell(&f.message);
    }
    host.log(
        Level::Notice,
        &format!("user={user} service={service} result=unavailable: {e}"),
    );
    Outcome::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = Args::parse([
            "socket=/tmp/s",
            "config=/tmp/c.toml",
            "timeout=2.5",
            "debug",
            "bogus",
            "timeout=-1",
        ]);
        assert_eq!(a.socket, Some(PathBuf::from("/tmp/s")));
        assert_eq!(a.config, Some(PathBuf::from("/tmp/c.toml")));
        assert_eq!(a.timeout, Duration::from_millis(2500));
        assert!(a.debug);
        assert_eq!(
            a.unknown,
            vec!["bogus".to_string(), "timeout=-1".to_string()]
        );
        let d = Args::parse([]);
        assert_eq!(d.timeout, DEFAULT_TIMEOUT);
        assert_eq!(d.socket, None);
    }

    #[test]
    fn locality() {
        for local in ["", "localhost", "127.0.0.1", "127.0.1.1", "::1", "[::1]"] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["10.0.0.7", "example.org", "2001:db8::1"] {
            assert!(!is_local(remote), "{remote}");
        }
        let own = nix::unistd::gethostname().unwrap().into_string().unwrap();
        assert!(is_local(&own));
    }

    /// A host that records what the module did.
    struct Scripted {
        rhost: Option<String>,
        service: String,
        logs: Vec<String>,
        told: Vec<String>,
        asked: usize,
    }

    impl Host for Scripted {
        fn user(&mut self) -> Option<String> {
            Some("root".into())
        }
        fn service(&self) -> String {
            self.service.clone()
        }
        fn rhost(&self) -> Option<String> {
            self.rhost.clone()
        }
        fn ask_secret(&mut self, _: &str) -> Result<Secret, ()> {
            self.asked += 1;
            Ok(Secret::new("482915"))
        }
        fn tell(&mut self, m: &str) {
            self.told.push(m.into());
        }
        fn log(&mut self, _: Level, m: &str) {
            self.logs.push(m.into());
        }
        fn uid_of(&self, _: &str) -> Option<u32> {
            Some(0)
        }
    }

    fn scripted(service: &str, rhost: Option<&str>) -> Scripted {
        Scripted {
            rhost: rhost.map(Into::into),
            service: service.into(),
            logs: vec![],
            told: vec![],
            asked: 0,
        }
    }

    #[test]
    fn remote_sessions_are_ignored_before_anything_else() {
        let mut h = scripted("sshd", None);
        assert_eq!(authenticate(&mut h, &Args::parse([])), Outcome::Ignore);
        let mut h = scripted("login", Some("203.0.113.9"));
        assert_eq!(authenticate(&mut h, &Args::parse([])), Outcome::Ignore);
        assert_eq!(h.asked, 0);
        assert!(
            h.logs[0].contains("remote session from 203.0.113.9"),
            "{:?}",
            h.logs
        );
    }

    #[test]
    fn an_unreadable_config_falls_through() {
        let mut h = scripted("sudo", None);
        let args = Args::parse(["config=/nonexistent/aloha.toml"]);
        assert_eq!(authenticate(&mut h, &args), Outcome::Unavailable);
        assert_eq!(h.asked, 0);
        assert!(
            h.logs[0].contains("cannot read the config file"),
            "{:?}",
            h.logs
        );
    }
}
