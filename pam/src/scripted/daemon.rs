use std::path::{Path, PathBuf};
use std::time::Duration;

use aloha::Secret;
use aloha::challenge::{self, ChallengeError, Nonce};
use aloha::client::ClientError;
use aloha::lockout::Gate;
use aloha::protocol::{ErrorCode, Response};
use aloha::registry::{RegisteredKey, RegistryError};

use crate::args::DEFAULT_TIMEOUT;
use crate::daemon::{CallError, Daemon};

const NOW: u64 = 1_800_000_000;

/// What the fake alohad says to the status request.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    Open,
    NoContainer,
    Delayed,
    Locked,
    TpmPaused,
    /// alice's share of the TPM's failure budget is used.
    TpmShareUsed,
    /// alice's PIN expired an hour ago.
    PinExpired,
    /// Open, but the status check used most of `timeout=`.
    Slow,
    Down,
}

/// What the fake alohad answers once it has the PIN.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Signed,
    SignedByAnotherKey,
    /// alohad found the registry out of step with alice's key (a PIN reset cut short),
    /// republished it (key 8) while answering, and signed with it.
    SignedByRepublishedKey,
    RandomSignature,
    WrongPin {
        left: u32,
    },
    Delayed,
    Locked,
    BackendUnavailable,
    Done,
    Garbage,
    Silence,
    Down,
}

/// alice's face, as the fake alohad sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// No face enrolled (no face lines in the status).
    None,
    /// Enrolled, but paused after failed attempts.
    Paused,
    /// Enrolled, but no camera to use.
    NoCamera,
    /// Enrolled and usable; the face sign-in answers this.
    Answers(FaceReply),
}

/// What the fake alohad answers a face sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceReply {
    Signed,
    SignedByAnotherKey,
    NoMatch,
    NotLive,
    NotSeen,
    Silence,
    Garbage,
    Down,
}

/// alohad, the registry, the clock and randomness, scripted.
#[derive(Debug)]
pub struct ScriptedDaemon {
    /// Whether alice has a registered key.
    pub enrolled: bool,
    pub status: Status,
    pub reply: Reply,
    pub face: Face,
    /// How many sign-in requests (each with a PIN) reached it.
    pub sign_ins: usize,
    /// How many face sign-in requests reached it.
    pub face_sign_ins: usize,
    /// How many face resumptions reached it.
    pub face_resumes: usize,
    /// The registry now holds key 8 instead of key 7.
    pub republished: bool,
    /// alice keeps a password vault holding [`VAULT_PASSWORD`].
    pub vault: bool,
    /// How many sign-ins (PIN or face) asked for the vault.
    pub vault_asked: usize,
    /// The passwords setcred asked alohad to keep.
    pub captured: Vec<String>,
}

/// The password in alice's scripted vault.
pub const VAULT_PASSWORD: &str = "correct horse 7";

impl ScriptedDaemon {
    /// alice is enrolled, nothing is in her way, and the PIN is right.
    pub const OPEN: ScriptedDaemon = ScriptedDaemon {
        enrolled: true,
        status: Status::Open,
        reply: Reply::Signed,
        face: Face::None,
        sign_ins: 0,
        face_sign_ins: 0,
        face_resumes: 0,
        republished: false,
        vault: false,
        vault_asked: 0,
        captured: Vec::new(),
    };
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

impl ScriptedDaemon {
    fn face_status(&self) -> Option<aloha::protocol::FaceStatus> {
        let (paused, usable) = match self.face {
            Face::None => return None,
            Face::Paused => (true, false),
            Face::NoCamera => (false, false),
            Face::Answers(_) => (false, true),
        };
        Some(aloha::protocol::FaceStatus {
            profiles: vec![],
            protector: true,
            failures: if paused { 5 } else { 0 },
            max_failures: 5,
            paused,
            camera: if usable { "/dev/video2" } else { "no camera" }.into(),
            usable,
            protection: String::new(),
        })
    }
}

impl Daemon for &mut ScriptedDaemon {
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
            public_key: signing_key(if self.republished { 8 } else { 7 })
                .verifying_key()
                .to_sec1_bytes()
                .to_vec(),
        })
    }
    fn status(&mut self, user: &str) -> Result<Response, CallError> {
        let gate = match self.status {
            Status::Down => return Err(down()),
            Status::Open
            | Status::NoContainer
            | Status::TpmPaused
            | Status::TpmShareUsed
            | Status::PinExpired
            | Status::Slow => Gate::Open {
                left_before_delay: 3,
                left_before_lock: 10,
            },
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
            pin_expires_at: matches!(self.status, Status::PinExpired).then_some(NOW - 3600),
            failed_attempts: if matches!(self.status, Status::Locked) {
                10
            } else {
                4
            },
            max_attempts: 10,
            gate,
            tpm: None,
            tpm_pause: matches!(self.status, Status::TpmPaused).then_some(
                aloha::lockout::TpmPause {
                    in_lockout: false,
                    until: Some(NOW + 7200),
                },
            ),
            tpm_share: Some(aloha::lockout::TpmShare {
                debt: if matches!(self.status, Status::TpmShareUsed) {
                    14
                } else {
                    2
                },
                share: 14,
                next_forgotten: Some(NOW + 7200),
            }),
            default_backend: None,
            protection: None,
            problem: None,
            face: self.face_status(),
            vault: aloha::protocol::VaultStatus {
                allowed: true,
                sealed_at: self.vault.then_some(NOW - 60),
                problem: None,
            },
        }))
    }
    fn sign_in(
        &mut self,
        user: &str,
        service: &str,
        nonce: Nonce,
        pin: Secret,
        vault: bool,
    ) -> Result<Response, CallError> {
        assert_eq!((user, service), ("alice", "sudo"));
        assert_eq!(nonce, Nonce([5; 32]));
        assert!(!pin.is_empty());
        self.sign_ins += 1;
        self.vault_asked += usize::from(vault);
        let password = (vault && self.vault).then(|| Secret::new(VAULT_PASSWORD));
        let signed = |signature| Response::Signed {
            signature,
            backend: aloha::protocol::BackendKind::Tpm,
            password: password.clone(),
        };
        match self.reply {
            Reply::Signed => Ok(signed(sign(7, user, &nonce))),
            Reply::SignedByAnotherKey => Ok(signed(sign(9, user, &nonce))),
            Reply::SignedByRepublishedKey => {
                self.republished = true;
                Ok(signed(sign(8, user, &nonce)))
            }
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
    fn face_resume(&mut self, user: &str) -> Result<Response, CallError> {
        assert_eq!(user, "alice");
        self.face_resumes += 1;
        if matches!(self.reply, Reply::Down) {
            return Err(down());
        }
        Ok(Response::Done {
            message: "Face sign-in is on again for alice (5 failed attempts cleared).".into(),
        })
    }
    fn vault_capture(&mut self, user: &str, password: Secret) -> Result<Response, CallError> {
        assert_eq!(user, "alice");
        self.captured.push(password.expose().to_string());
        if matches!(self.reply, Reply::Down) {
            return Err(down());
        }
        Ok(Response::Done {
            message: "alice's password vault holds the password just used.".into(),
        })
    }

    fn face_sign_in(
        &mut self,
        user: &str,
        service: &str,
        nonce: Nonce,
        timeout: Duration,
        vault: bool,
    ) -> Result<Response, CallError> {
        assert_eq!((user, service), ("alice", "sudo"));
        assert_eq!(nonce, Nonce([5; 32]));
        assert_eq!(timeout, crate::args::DEFAULT_FACE_TIMEOUT);
        self.face_sign_ins += 1;
        self.vault_asked += usize::from(vault);
        let password = (vault && self.vault).then(|| Secret::new(VAULT_PASSWORD));
        let Face::Answers(reply) = self.face else {
            panic!("a face sign-in without a usable face: {:?}", self.face)
        };
        let signed = |signature| Response::Signed {
            signature,
            backend: aloha::protocol::BackendKind::Tpm,
            password: password.clone(),
        };
        match reply {
            FaceReply::Signed => Ok(signed(sign(7, user, &nonce))),
            FaceReply::SignedByAnotherKey => Ok(signed(sign(9, user, &nonce))),
            FaceReply::NoMatch => Err(refused(
                ErrorCode::FaceNoMatch,
                "Face not recognised. 4 more failed face attempts turn face sign-in off.",
                None,
            )),
            FaceReply::NotLive => Err(refused(
                ErrorCode::FaceNotLive,
                "That looked like a photo or a screen, not a face.",
                None,
            )),
            FaceReply::NotSeen => Err(refused(
                ErrorCode::FaceNotSeen,
                "No face was seen in time; use your PIN or password.",
                None,
            )),
            FaceReply::Silence => Err(CallError::Sent(ClientError::Frame(
                aloha::frame::FrameError::Timeout,
            ))),
            FaceReply::Garbage => Err(CallError::Sent(ClientError::Malformed(
                "expected value at line 1 column 1".into(),
            ))),
            FaceReply::Down => Err(down()),
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
