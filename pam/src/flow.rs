//! What pam_aloha does, as ordinary Rust behind two traits: [`Host`] (the PAM handle in
//! production) and [`Daemon`] (config, key registry and alohad in production; see
//! [`crate::alohad`]). Tests script both. No policy lives here: alohad decides; this side
//! proves.
//!
//! 1. Remote sessions (non-local PAM_RHOST, or sshd) → PAM_IGNORE: a network attacker must not
//!    burn anyone's attempts.
//! 2. No registered key, daemon unreachable, config unreadable → fall through to the password
//!    (PAM_AUTHINFO_UNAVAIL, fprintd's convention); an unknown user → PAM_IGNORE. Either way
//!    with one log line saying why.
//! 3. Locked or waiting → say so ("use your password"), no prompt.
//! 4. Prompt `PIN:`; empty or cancelled → fall through, nothing counted.
//! 5. Our nonce + PIN to alohad; the signature that comes back is verified here against the
//!    registered public key. Only a verified signature is PAM_SUCCESS. Once the PIN has been
//!    sent, anything but a verifying signature or one of alohad's refusals (garbage, silence,
//!    a reply of the wrong kind) is PAM_AUTH_ERR: whoever took the PIN did not answer as
//!    alohad does.

use std::time::Duration;

use aloha::challenge;
use aloha::client::ClientError;
use aloha::config::ConfigError;
use aloha::frame::FrameError;
use aloha::lockout::{Gate, refusal_message, tpm_pause_reason};
use aloha::protocol::{BackendKind, ErrorCode, Response};
use aloha::registry::RegistryError;

use crate::alohad::Alohad;
use crate::args::Args;
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

/// How a sign-in attempt ends, one per PAM return code this module uses (lib.rs maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// A wrong PIN, a forged or broken answer, a wait in force.
    AuthErr,
    /// The PIN is locked.
    MaxTries,
    /// Nothing to sign in with here (not enrolled, daemon down): the password decides.
    Unavailable,
    /// Not our business (remote session, unknown user, the user skipped the PIN).
    Ignore,
}

/// The least of `timeout=` that must be left for the sign-in before the PIN is asked for:
/// 2 s, or half of `timeout=` if that is shorter. With less, Argon2id or the TPM could still be
/// working when the time runs out, after the PIN was sent — a counted attempt that fails.
pub fn min_sign_in_time(timeout: Duration) -> Duration {
    Duration::from_secs(2).min(timeout / 2)
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

/// A reply's kind, for logs (a signature is not a secret, but it is noise).
fn kind(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "hello",
        Response::Status(_) => "status",
        Response::Done { .. } => "done",
        Response::Signed { .. } => "signed",
        Response::Error(_) => "error",
    }
}

/// One sign-in attempt against the real config, registry and alohad.
pub fn authenticate(host: &mut dyn Host, args: &Args) -> Verdict {
    authenticate_with(host, args, Alohad::open)
}

/// One sign-in attempt; `open` makes the daemon side once the session is known to be local.
/// Never panics; every way out is logged once (and each step at debug level).
pub fn authenticate_with<D: Daemon>(
    host: &mut dyn Host,
    args: &Args,
    open: impl FnOnce(&Args) -> Result<D, ConfigError>,
) -> Verdict {
    let service = host.service();
    host.log(
        Level::Debug,
        &format!("service={service} arguments: {}", args.describe()),
    );
    for arg in &args.unknown {
        host.log(
            Level::Notice,
            &format!("ignoring unknown module argument {arg:?}"),
        );
    }
    let Some(user) = host.user() else {
        host.log(Level::Notice, "no user name; leaving it to the next module");
        return Verdict::Ignore;
    };
    let says = |host: &mut dyn Host, level: Level, why: &str| {
        host.log(level, &format!("user={user} service={service} {why}"));
    };

    if service == "sshd" {
        says(host, Level::Info, "result=ignore: remote session (sshd)");
        return Verdict::Ignore;
    }
    if let Some(rhost) = host.rhost().filter(|r| !is_local(r)) {
        says(
            host,
            Level::Info,
            &format!("result=ignore: remote session from {rhost}"),
        );
        return Verdict::Ignore;
    }

    let mut aloha = match open(args) {
        Ok(a) => a,
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Verdict::Unavailable;
        }
    };
    says(host, Level::Debug, &format!("using {}", aloha.describe()));

    let Some(uid) = host.uid_of(&user) else {
        says(host, Level::Info, "result=ignore: no such user");
        return Verdict::Ignore;
    };
    let key_path = aloha.key_path(&user);
    says(
        host,
        Level::Debug,
        &format!("uid {uid}; registered key at {}", key_path.display()),
    );
    let registered = match aloha.registered_key(&user, uid) {
        Ok(k) => k,
        Err(RegistryError::NotEnrolled { .. }) => {
            says(
                host,
                Level::Info,
                "result=unavailable: no Aloha PIN enrolled",
            );
            return Verdict::Unavailable;
        }
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Verdict::Unavailable;
        }
    };

    // Before asking for a PIN: is an attempt possible at all? Nothing secret is sent yet, so
    // any failure here falls through.
    let status = match aloha.status(&user) {
        Ok(Response::Status(s)) => s,
        Ok(other) => {
            says(
                host,
                Level::Error,
                &format!(
                    "result=unavailable: unexpected {} reply to a status request",
                    kind(&other)
                ),
            );
            return Verdict::Unavailable;
        }
        Err(CallError::NotSent(e) | CallError::Sent(e)) => {
            return unavailable(host, &user, &service, &e);
        }
    };
    says(
        host,
        Level::Debug,
        &format!(
            "alohad status: enrolled={} backend={} failed_attempts={} gate={:?}",
            status.enrolled,
            status.backend.map_or("none", |b| b.name()),
            status.failed_attempts,
            status.gate
        ),
    );
    if !status.enrolled {
        says(
            host,
            Level::Info,
            "result=unavailable: registered key but no container (alohad)",
        );
        return Verdict::Unavailable;
    }
    if let Some(message) = refusal_message(&user, status.gate, status.failed_attempts, aloha.now())
    {
        host.tell(&message);
        let (verdict, what) = match status.gate {
            Gate::Locked => (Verdict::MaxTries, "locked"),
            _ => (Verdict::AuthErr, "waiting"),
        };
        says(
            host,
            Level::Notice,
            &format!("result={what}: not prompting"),
        );
        return verdict;
    }

    // The TPM guard refuses every TPM-backed sign-in before the PIN is checked: say so instead
    // of asking for a PIN that cannot work.
    if let (Some(BackendKind::Tpm), Some(pause)) = (status.backend, status.tpm_pause) {
        host.tell(&format!(
            "PIN sign-in is paused for every user — {}",
            tpm_pause_reason(pause, aloha.now())
        ));
        says(
            host,
            Level::Notice,
            "result=unavailable: the TPM guard pauses PIN sign-in; not prompting",
        );
        return Verdict::Unavailable;
    }

    let left = aloha.time_left();
    if left < min_sign_in_time(args.timeout) {
        says(
            host,
            Level::Notice,
            &format!(
                "result=unavailable: only {:.1}s of timeout={}s left after the status check, \
                 too little for a sign-in; not prompting",
                left.as_secs_f64(),
                args.timeout.as_secs_f64()
            ),
        );
        return Verdict::Unavailable;
    }

    says(host, Level::Debug, "asking for the PIN");
    let pin = match host.ask_secret("PIN: ") {
        Ok(pin) if !pin.is_empty() => pin,
        Ok(_) => {
            says(
                host,
                Level::Info,
                "result=ignore: empty PIN, falling through to the password",
            );
            return Verdict::Ignore;
        }
        Err(()) => {
            says(
                host,
                Level::Info,
                "result=ignore: PIN prompt cancelled or failed",
            );
            return Verdict::Ignore;
        }
    };

    let nonce = match aloha.nonce() {
        Ok(n) => n,
        Err(e) => {
            says(host, Level::Error, &format!("result=unavailable: {e}"));
            return Verdict::Unavailable;
        }
    };
    says(
        host,
        Level::Debug,
        "sending the nonce and the PIN to alohad",
    );
    let reply = aloha.sign_in(&user, &service, nonce, pin);
    match &reply {
        Ok(r) => says(host, Level::Debug, &format!("reply: {}", kind(r))),
        Err(CallError::Sent(ClientError::Refused(f))) => says(
            host,
            Level::Debug,
            &format!("reply: refused ({:?})", f.code),
        ),
        Err(CallError::NotSent(e) | CallError::Sent(e)) => {
            says(host, Level::Debug, &format!("no reply: {e}"))
        }
    }
    let socket = aloha.socket().display().to_string();
    let denied = |host: &mut dyn Host, why: &str| {
        host.tell("Aloha's answer was not valid; use your password.");
        host.log(
            Level::Error,
            &format!(
                "user={user} service={service} result=denied: {why} from {socket} after the PIN \
                 was sent; is something impersonating alohad?"
            ),
        );
        Verdict::AuthErr
    };
    match reply {
        Ok(Response::Signed { signature, backend }) => {
            match challenge::verify(&registered.public_key, &user, &nonce, &signature) {
                Ok(()) => {
                    says(
                        host,
                        Level::Debug,
                        &format!("the signature verifies against {}", key_path.display()),
                    );
                    says(
                        host,
                        Level::Info,
                        &format!("result=success ({})", backend.name()),
                    );
                    Verdict::Success
                }
                Err(e) => {
                    says(
                        host,
                        Level::Debug,
                        &format!(
                            "the signature does not verify against {}",
                            key_path.display()
                        ),
                    );
                    denied(host, &format!("an answer that does not verify ({e})"))
                }
            }
        }
        Ok(other) => denied(host, &format!("an unexpected {} reply", kind(&other))),
        Err(CallError::Sent(ClientError::Refused(f))) => {
            host.tell(&f.message);
            let (verdict, what) = match f.code {
                ErrorCode::WrongPin if f.left_before_lock == Some(0) => {
                    (Verdict::MaxTries, "wrong_pin_now_locked")
                }
                ErrorCode::WrongPin => (Verdict::AuthErr, "wrong_pin"),
                ErrorCode::Delayed => (Verdict::AuthErr, "waiting"),
                ErrorCode::Locked => (Verdict::MaxTries, "locked"),
                // alohad could not try (TPM lockout, key store down, busy...): its message
                // says why, and the password decides.
                _ => (Verdict::Unavailable, "unavailable"),
            };
            says(
                host,
                Level::Notice,
                &format!("result={what} ({:?})", f.code),
            );
            verdict
        }
        // Silence is what a slow alohad looks like too (Argon2id, a busy TPM): not a sign of
        // impersonation, but the attempt may have been counted, so still no success.
        Err(CallError::Sent(ClientError::Frame(FrameError::Timeout))) => {
            host.tell("Aloha did not answer in time; use your password.");
            host.log(
                Level::Error,
                &format!(
                    "user={user} service={service} result=denied: no answer within timeout={}s \
                     after the PIN was sent",
                    args.timeout.as_secs_f64()
                ),
            );
            Verdict::AuthErr
        }
        Err(CallError::Sent(e)) => denied(host, &format!("no valid reply ({e})")),
        Err(CallError::NotSent(e)) => {
            host.tell("Aloha did not answer; use your password.");
            unavailable(host, &user, &service, &e)
        }
    }
}

fn unavailable(host: &mut dyn Host, user: &str, service: &str, e: &ClientError) -> Verdict {
    if let ClientError::Refused(f) = e {
        // e.g. the TPM is in lockout, or the state is corrupt: the user should know.
        host.tell(&f.message);
    }
    host.log(
        Level::Notice,
        &format!("user={user} service={service} result=unavailable: {e}"),
    );
    Verdict::Unavailable
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use aloha::Secret;
    use aloha::challenge::{ChallengeError, Nonce};
    use aloha::registry::RegisteredKey;

    use super::*;
    use crate::args::DEFAULT_TIMEOUT;

    #[test]
    fn the_sign_in_keeps_a_minimum_of_the_timeout() {
        assert_eq!(min_sign_in_time(DEFAULT_TIMEOUT), Duration::from_secs(2));
        assert_eq!(
            min_sign_in_time(Duration::from_secs(3)),
            Duration::from_millis(1500)
        );
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
        answer: Answer,
        logs: Vec<(Level, String)>,
        told: Vec<String>,
        asked: usize,
    }

    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Pin(&'static str),
        Cancel,
    }

    impl Host for Scripted {
        fn user(&mut self) -> Option<String> {
            Some("alice".into())
        }
        fn service(&self) -> String {
            self.service.clone()
        }
        fn rhost(&self) -> Option<String> {
            self.rhost.clone()
        }
        fn ask_secret(&mut self, prompt: &str) -> Result<Secret, ()> {
            assert_eq!(prompt, "PIN: ");
            self.asked += 1;
            match self.answer {
                Answer::Pin(p) => Ok(Secret::new(p)),
                Answer::Cancel => Err(()),
            }
        }
        fn tell(&mut self, m: &str) {
            self.told.push(m.into());
        }
        fn log(&mut self, level: Level, m: &str) {
            self.logs.push((level, m.into()));
        }
        fn uid_of(&self, user: &str) -> Option<u32> {
            (user == "alice").then_some(1000)
        }
    }

    impl Scripted {
        fn logged(&self) -> String {
            self.logs
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        }
    }

    fn scripted(service: &str, rhost: Option<&str>) -> Scripted {
        Scripted {
            rhost: rhost.map(Into::into),
            service: service.into(),
            answer: Answer::Pin(PIN),
            logs: vec![],
            told: vec![],
            asked: 0,
        }
    }

    const PIN: &str = "482915";
    const NOW: u64 = 1_800_000_000;

    /// What the fake alohad says to the status request.
    #[derive(Debug, Clone, Copy)]
    enum Status {
        Open,
        NoContainer,
        Delayed,
        Locked,
        TpmPaused,
        /// Open, but the status check used most of `timeout=`.
        Slow,
        Down,
    }

    /// What the fake alohad answers once it has the PIN.
    #[derive(Debug, Clone, Copy)]
    enum Reply {
        Signed,
        SignedByAnotherKey,
        RandomSignature,
        WrongPin { left: u32 },
        Delayed,
        Locked,
        BackendUnavailable,
        Done,
        Garbage,
        Silence,
        Down,
    }

    /// alohad, the registry, the clock and randomness, scripted.
    struct Fake {
        enrolled: bool,
        status: Status,
        reply: Reply,
        sign_ins: usize,
    }

    fn signing_key(seed: u8) -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn sign(seed: u8, user: &str, nonce: &Nonce) -> Vec<u8> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let sig: p256::ecdsa::Signature = signing_key(seed)
            .sign_prehash(&challenge::signin_digest(user, nonce))
            .unwrap();
        sig.to_bytes().to_vec()
    }

    fn refused(code: ErrorCode, message: &str, left: Option<u32>) -> CallError {
        let mut f = aloha::protocol::Failure::new(code, message);
        f.left_before_lock = left;
        CallError::Sent(ClientError::Refused(f))
    }

    fn down() -> CallError {
        CallError::NotSent(ClientError::Unreachable {
            path: "/fake.sock".into(),
            reason: "nothing listens there (is alohad running?)".into(),
        })
    }

    impl Daemon for &mut Fake {
        fn describe(&self) -> String {
            "a fake alohad".into()
        }
        fn socket(&self) -> &Path {
            Path::new("/fake.sock")
        }
        fn key_path(&self, user: &str) -> PathBuf {
            format!("/fake/public/{user}.pub").into()
        }
        fn registered_key(&self, user: &str, uid: u32) -> Result<RegisteredKey, RegistryError> {
            if !self.enrolled {
                return Err(RegistryError::NotEnrolled {
                    user: user.into(),
                    path: self.key_path(user),
                });
            }
            Ok(RegisteredKey {
                version: 1,
                user: user.into(),
                uid,
                backend: aloha::protocol::BackendKind::Tpm,
                public_key: signing_key(7).verifying_key().to_sec1_bytes().to_vec(),
            })
        }
        fn status(&mut self, user: &str) -> Result<Response, CallError> {
            let gate = match self.status {
                Status::Down => return Err(down()),
                Status::Open | Status::NoContainer | Status::TpmPaused | Status::Slow => {
                    Gate::Open {
                        left_before_delay: 3,
                        left_before_lock: 10,
                    }
                }
                Status::Delayed => Gate::Delayed { until: NOW + 600 },
                Status::Locked => Gate::Locked,
            };
            Ok(Response::Status(aloha::protocol::UserStatus {
                user: user.into(),
                uid: 1000,
                enrolled: !matches!(self.status, Status::NoContainer),
                backend: Some(aloha::protocol::BackendKind::Tpm),
                protectors: vec!["pin".into()],
                pin_set_at: None,
                pin_expires_at: None,
                failed_attempts: if matches!(self.status, Status::Locked) {
                    10
                } else {
                    4
                },
                max_attempts: 10,
                gate,
                tpm: None,
                tpm_pause: matches!(self.status, Status::TpmPaused).then_some(
                    aloha::protocol::TpmPause {
                        in_lockout: false,
                        until: Some(NOW + 7200),
                    },
                ),
                default_backend: None,
                protection: None,
                problem: None,
            }))
        }
        fn sign_in(
            &mut self,
            user: &str,
            service: &str,
            nonce: Nonce,
            pin: Secret,
        ) -> Result<Response, CallError> {
            assert_eq!((user, service), ("alice", "sudo"));
            assert_eq!(nonce, Nonce([5; 32]));
            assert!(!pin.is_empty());
            self.sign_ins += 1;
            let signed = |signature| Response::Signed {
                signature,
                backend: aloha::protocol::BackendKind::Tpm,
            };
            match self.reply {
                Reply::Signed => Ok(signed(sign(7, user, &nonce))),
                Reply::SignedByAnotherKey => Ok(signed(sign(9, user, &nonce))),
                Reply::RandomSignature => Ok(signed(vec![0x5a; 64])),
                Reply::WrongPin { left } => Err(refused(
                    ErrorCode::WrongPin,
                    &format!("Wrong PIN. {left} more tries before the lock."),
                    Some(left),
                )),
                Reply::Delayed => Err(refused(
                    ErrorCode::Delayed,
                    "Wrong PIN. Next try in 10 minutes.",
                    None,
                )),
                Reply::Locked => Err(refused(
                    ErrorCode::Locked,
                    "alice's PIN is locked — use your password.",
                    None,
                )),
                Reply::BackendUnavailable => Err(refused(
                    ErrorCode::BackendUnavailable,
                    "The TPM cannot be used now; use your password.",
                    None,
                )),
                Reply::Done => Ok(Response::Done {
                    message: "ok".into(),
                }),
                Reply::Garbage => Err(CallError::Sent(ClientError::Malformed(
                    "expected value at line 1 column 1".into(),
                ))),
                Reply::Silence => Err(CallError::Sent(ClientError::Frame(
                    aloha::frame::FrameError::Timeout,
                ))),
                Reply::Down => Err(down()),
            }
        }
        fn nonce(&mut self) -> Result<Nonce, ChallengeError> {
            Ok(Nonce([5; 32]))
        }
        fn now(&self) -> u64 {
            NOW
        }
        fn time_left(&self) -> Duration {
            match self.status {
                Status::Slow => Duration::from_millis(1500),
                _ => DEFAULT_TIMEOUT,
            }
        }
    }

    struct Case {
        name: &'static str,
        enrolled: bool,
        status: Status,
        answer: Answer,
        reply: Reply,
        verdict: Verdict,
        /// Each PAM_ERROR_MSG must contain the matching text.
        told: &'static [&'static str],
        /// The one log line that is not debug must contain this.
        logged: &'static str,
        prompted: bool,
        sign_ins: usize,
    }

    const OPEN: Case = Case {
        name: "",
        enrolled: true,
        status: Status::Open,
        answer: Answer::Pin(PIN),
        reply: Reply::Signed,
        verdict: Verdict::Success,
        told: &[],
        logged: "user=alice service=sudo result=success (TPM 2.0)",
        prompted: true,
        sign_ins: 1,
    };

    const CASES: &[Case] = &[
        Case {
            name: "right PIN",
            ..OPEN
        },
        Case {
            name: "wrong PIN, tries left",
            reply: Reply::WrongPin { left: 2 },
            verdict: Verdict::AuthErr,
            told: &["Wrong PIN. 2 more tries before the lock."],
            logged: "result=wrong_pin (WrongPin)",
            ..OPEN
        },
        Case {
            name: "wrong PIN, none left",
            reply: Reply::WrongPin { left: 0 },
            verdict: Verdict::MaxTries,
            told: &["Wrong PIN. 0 more tries before the lock."],
            logged: "result=wrong_pin_now_locked",
            ..OPEN
        },
        Case {
            name: "a waiting time before the prompt",
            status: Status::Delayed,
            verdict: Verdict::AuthErr,
            told: &["Too many wrong PINs: try again in 10 minutes"],
            logged: "result=waiting: not prompting",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "a waiting time after the PIN",
            reply: Reply::Delayed,
            verdict: Verdict::AuthErr,
            told: &["Next try in 10 minutes"],
            logged: "result=waiting (Delayed)",
            ..OPEN
        },
        Case {
            name: "locked before the prompt",
            status: Status::Locked,
            verdict: Verdict::MaxTries,
            told: &["locked after 10 wrong tries — use your password"],
            logged: "result=locked: not prompting",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "the TPM guard pauses PIN sign-in",
            status: Status::TpmPaused,
            verdict: Verdict::Unavailable,
            told: &[
                "PIN sign-in is paused for every user — the TPM is close to its dictionary-attack lockout; next attempt in about 2 hours",
            ],
            logged: "result=unavailable: the TPM guard pauses PIN sign-in; not prompting",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "locked after the PIN",
            reply: Reply::Locked,
            verdict: Verdict::MaxTries,
            told: &["use your password"],
            logged: "result=locked (Locked)",
            ..OPEN
        },
        Case {
            name: "empty PIN",
            answer: Answer::Pin(""),
            verdict: Verdict::Ignore,
            logged: "result=ignore: empty PIN",
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "cancelled conversation",
            answer: Answer::Cancel,
            verdict: Verdict::Ignore,
            logged: "result=ignore: PIN prompt cancelled or failed",
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "unexpected reply",
            reply: Reply::Done,
            verdict: Verdict::AuthErr,
            told: &["Aloha's answer was not valid; use your password."],
            logged: "result=denied: an unexpected done reply from /fake.sock after the PIN",
            ..OPEN
        },
        Case {
            name: "garbage reply",
            reply: Reply::Garbage,
            verdict: Verdict::AuthErr,
            told: &["Aloha's answer was not valid"],
            logged: "result=denied: no valid reply (alohad sent a malformed reply",
            ..OPEN
        },
        Case {
            name: "no reply after the PIN",
            reply: Reply::Silence,
            verdict: Verdict::AuthErr,
            told: &["Aloha did not answer in time; use your password."],
            logged: "result=denied: no answer within timeout=10s after the PIN was sent",
            ..OPEN
        },
        Case {
            name: "too little of the timeout left after the status check",
            status: Status::Slow,
            verdict: Verdict::Unavailable,
            logged: "result=unavailable: only 1.5s of timeout=10s left after the status check",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "bad signature",
            reply: Reply::RandomSignature,
            verdict: Verdict::AuthErr,
            told: &["Aloha's answer was not valid"],
            logged: "result=denied: an answer that does not verify",
            ..OPEN
        },
        Case {
            name: "signature by another key",
            reply: Reply::SignedByAnotherKey,
            verdict: Verdict::AuthErr,
            told: &["Aloha's answer was not valid"],
            logged: "does not verify against the user's registered public key",
            ..OPEN
        },
        Case {
            name: "registered key but no container",
            status: Status::NoContainer,
            verdict: Verdict::Unavailable,
            logged: "result=unavailable: registered key but no container (alohad)",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "no registered key",
            enrolled: false,
            verdict: Verdict::Unavailable,
            logged: "result=unavailable: no Aloha PIN enrolled",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "daemon down before the prompt",
            status: Status::Down,
            verdict: Verdict::Unavailable,
            logged: "result=unavailable: alohad is not reachable at /fake.sock",
            prompted: false,
            sign_ins: 0,
            ..OPEN
        },
        Case {
            name: "daemon gone before the PIN was sent",
            reply: Reply::Down,
            verdict: Verdict::Unavailable,
            told: &["Aloha did not answer; use your password."],
            logged: "result=unavailable: alohad is not reachable",
            ..OPEN
        },
        Case {
            name: "the key store cannot be used",
            reply: Reply::BackendUnavailable,
            verdict: Verdict::Unavailable,
            told: &["The TPM cannot be used now"],
            logged: "result=unavailable (BackendUnavailable)",
            ..OPEN
        },
    ];

    #[test]
    fn every_verdict_and_its_message() {
        for case in CASES {
            let mut host = scripted("sudo", None);
            host.answer = case.answer;
            let mut fake = Fake {
                enrolled: case.enrolled,
                status: case.status,
                reply: case.reply,
                sign_ins: 0,
            };
            let verdict = authenticate_with(&mut host, &Args::parse(["debug"]), |_| Ok(&mut fake));
            let name = case.name;
            assert_eq!(verdict, case.verdict, "{name}: {:?}", host.logs);
            assert_eq!(host.told.len(), case.told.len(), "{name}: {:?}", host.told);
            for (told, want) in host.told.iter().zip(case.told) {
                assert!(told.contains(want), "{name}: {told:?} lacks {want:?}");
            }
            let results: Vec<&str> = host
                .logs
                .iter()
                .filter(|(l, _)| *l != Level::Debug)
                .map(|(_, m)| m.as_str())
                .collect();
            assert_eq!(
                results.len(),
                1,
                "{name}: one line per sign-in: {results:?}"
            );
            assert!(
                results[0].starts_with("user=alice service=sudo result=")
                    && results[0].contains(case.logged),
                "{name}: {:?} lacks {:?}",
                results[0],
                case.logged
            );
            assert_eq!(host.asked, usize::from(case.prompted), "{name}");
            assert_eq!(
                fake.sign_ins, case.sign_ins,
                "{name}: attempts sent to alohad"
            );
            assert!(
                !host.logged().contains(PIN),
                "{name}: the PIN in a log line"
            );
        }
    }

    #[test]
    fn debug_lines_trace_every_step_and_never_the_pin() {
        let mut host = scripted("sudo", None);
        let mut fake = OPEN_FAKE;
        let verdict = authenticate_with(&mut host, &Args::parse(["debug", "timeout=3"]), |_| {
            Ok(&mut fake)
        });
        assert_eq!(verdict, Verdict::Success);
        let debug: Vec<&str> = host
            .logs
            .iter()
            .filter(|(l, _)| *l == Level::Debug)
            .map(|(_, m)| m.as_str())
            .collect();
        for want in [
            "service=sudo arguments: socket=(default) config=(default) timeout=3s debug=true",
            "using a fake alohad",
            "registered key at /fake/public/alice.pub",
            "alohad status: enrolled=true backend=TPM 2.0 failed_attempts=4 gate=Open",
            "asking for the PIN",
            "reply: signed",
            "the signature verifies against /fake/public/alice.pub",
        ] {
            assert!(
                debug.iter().any(|l| l.contains(want)),
                "no debug line with {want:?}: {debug:#?}"
            );
        }
        assert!(!host.logged().contains(PIN));
    }

    const OPEN_FAKE: Fake = Fake {
        enrolled: true,
        status: Status::Open,
        reply: Reply::Signed,
        sign_ins: 0,
    };

    #[test]
    fn remote_sessions_are_ignored_before_anything_else() {
        for (service, rhost) in [("sshd", None), ("login", Some("203.0.113.9"))] {
            let mut h = scripted(service, rhost);
            let mut opened = false;
            let mut fake = OPEN_FAKE;
            let verdict = authenticate_with(&mut h, &Args::parse([]), |_| {
                opened = true;
                Ok(&mut fake)
            });
            assert_eq!(verdict, Verdict::Ignore);
            assert!(!opened, "the daemon side is not even opened");
            assert_eq!(h.asked, 0);
        }
        let mut h = scripted("login", Some("203.0.113.9"));
        authenticate(&mut h, &Args::parse([]));
        assert!(
            h.logged().contains("remote session from 203.0.113.9"),
            "{:?}",
            h.logs
        );
    }

    #[test]
    fn an_unreadable_config_falls_through() {
        let mut h = scripted("sudo", None);
        let args = Args::parse(["config=/nonexistent/aloha.toml"]);
        assert_eq!(authenticate(&mut h, &args), Verdict::Unavailable);
        assert_eq!(h.asked, 0);
        assert!(
            h.logged().contains("cannot read the config file"),
            "{:?}",
            h.logs
        );
    }
}
