//! "Is the user here?" for applications (`org.aloha.Presence1`, served by `aloha-presence`):
//! the question an application asks, what the user's key signs when they answer with their
//! PIN or face, and how the application checks that answer without trusting the bus.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::challenge::{self, ChallengeError};

/// Fewest random bytes an application's challenge may have (a replayable answer otherwise).
pub const MIN_CHALLENGE: usize = 16;
/// Most bytes a challenge may have: a digest or a nonce, never a document.
pub const MAX_CHALLENGE: usize = 64;
/// Longest reason, in bytes: one line in a prompt or a terminal.
pub const MAX_REASON: usize = 160;
const DOMAIN: &[u8] = b"aloha presence v1\0";

/// The names on the system bus, shared by `aloha-presence` (the service), `aloha presence
/// agent` (a user's prompt) and `aloha presence ask` (the example application).
pub mod bus {
    /// The service's well-known name, object and interface:
    /// `Verify(s reason, ay challenge) -> (ay signature, s factor)`,
    /// `RegisterAgent(o path)`, `UnregisterAgent(o path)`.
    pub const NAME: &str = "org.aloha.Presence1";
    pub const PATH: &str = "/org/aloha/Presence1";
    pub const INTERFACE: &str = "org.aloha.Presence1";
    /// A user's agent: `AskPin(s reason, s application, s note, u seconds) -> (s pin)`; the
    /// error [`error::CANCELLED`] when the person declines, [`error::TIMED_OUT`] when nobody
    /// typed a PIN within `seconds` (the agent then takes its prompt away). And
    /// `FaceAttempt(s reason, s application)`, no reply: the face is being tried, look at the
    /// camera.
    pub const AGENT_INTERFACE: &str = "org.aloha.PresenceAgent1";
    pub const AGENT_PATH: &str = "/org/aloha/PresenceAgent1";

    /// How long a question stays open: the face attempt and the person's PIN entries all fit
    /// in it (then [`error::TIMED_OUT`]). `Verify` answers at most one step with alohad later
    /// (at most 30 s, normally milliseconds), so a caller waits a minute more before it gives
    /// up.
    pub const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(180);

    /// The errors `Verify` and the agent answer with.
    pub mod error {
        pub const INVALID: &str = "org.aloha.Presence1.Error.Invalid";
        pub const NOT_ENROLLED: &str = "org.aloha.Presence1.Error.NotEnrolled";
        pub const NO_AGENT: &str = "org.aloha.Presence1.Error.NoAgent";
        pub const CANCELLED: &str = "org.aloha.Presence1.Error.Cancelled";
        pub const TIMED_OUT: &str = "org.aloha.Presence1.Error.TimedOut";
        pub const REFUSED: &str = "org.aloha.Presence1.Error.Refused";
        pub const BUSY: &str = "org.aloha.Presence1.Error.Busy";
        pub const UNAVAILABLE: &str = "org.aloha.Presence1.Error.Unavailable";
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AskError {
    #[error("the reason is empty: say in a few words why the application asks")]
    EmptyReason,
    #[error("the reason is {0} bytes long; at most {MAX_REASON} fit on the prompt's one line")]
    LongReason(usize),
    #[error(
        "the reason holds a control character (a new line, an escape): it must be one plain line"
    )]
    ControlInReason,
    #[error(
        "the challenge is {0} bytes; it must be {MIN_CHALLENGE} to {MAX_CHALLENGE} fresh random bytes"
    )]
    ChallengeLength(usize),
}

/// An application's question, checked when it is made or read: a reason of one plain line
/// (shown to the person and signed) and a fresh challenge of bounded length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AskFields")]
pub struct Ask {
    reason: String,
    #[serde(with = "crate::hex::serde")]
    challenge: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskFields {
    reason: String,
    #[serde(with = "crate::hex::serde")]
    challenge: Vec<u8>,
}

impl TryFrom<AskFields> for Ask {
    type Error = AskError;

    fn try_from(fields: AskFields) -> Result<Ask, AskError> {
        Ask::new(fields.reason, fields.challenge)
    }
}

impl Ask {
    pub fn new(reason: impl Into<String>, challenge: Vec<u8>) -> Result<Ask, AskError> {
        let reason = reason.into();
        if reason.trim().is_empty() {
            return Err(AskError::EmptyReason);
        }
        if reason.len() > MAX_REASON {
            return Err(AskError::LongReason(reason.len()));
        }
        // Control characters would let an application draw its own lines in the prompt
        // (a fake "PIN accepted") or in the log.
        if reason.chars().any(char::is_control) {
            return Err(AskError::ControlInReason);
        }
        if !(MIN_CHALLENGE..=MAX_CHALLENGE).contains(&challenge.len()) {
            return Err(AskError::ChallengeLength(challenge.len()));
        }
        Ok(Ask { reason, challenge })
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }

    /// What the user's key signs: bound to the user, the reason they were shown and the
    /// application's challenge, and separated from sign-ins (a presence answer never signs
    /// anyone in, and a sign-in never answers an application).
    pub fn digest(&self, user: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        for part in [user.as_bytes(), self.reason.as_bytes(), &self.challenge] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    /// Check an answer (r || s) against the user's registered public key (SEC1), as
    /// `/var/lib/aloha/public/<user>.pub` holds it.
    pub fn verify(
        &self,
        public_key: &[u8],
        user: &str,
        signature: &[u8],
    ) -> Result<(), ChallengeError> {
        challenge::verify_digest(public_key, &self.digest(user), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::{Nonce, signin_digest};
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{Signature, SigningKey};

    fn ask(reason: &str) -> Ask {
        Ask::new(reason, vec![5u8; 32]).unwrap()
    }

    fn sign(key: &SigningKey, digest: &[u8; 32]) -> Vec<u8> {
        let sig: Signature = key.sign_prehash(digest).unwrap();
        sig.to_bytes().to_vec()
    }

    #[test]
    fn an_answer_verifies_only_for_its_user_reason_challenge_and_key() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public = key.verifying_key().to_sec1_bytes();
        let a = ask("Unlock the password database");
        let sig = sign(&key, &a.digest("alice"));
        assert_eq!(a.verify(&public, "alice", &sig), Ok(()));
        assert_eq!(
            a.verify(&public, "bob", &sig),
            Err(ChallengeError::Mismatch)
        );
        assert_eq!(
            ask("Something else").verify(&public, "alice", &sig),
            Err(ChallengeError::Mismatch)
        );
        let other = Ask::new("Unlock the password database", vec![6u8; 32]).unwrap();
        assert_eq!(
            other.verify(&public, "alice", &sig),
            Err(ChallengeError::Mismatch)
        );
        let stranger = SigningKey::from_slice(&[9u8; 32]).unwrap();
        assert_eq!(
            a.verify(&public, "alice", &sign(&stranger, &a.digest("alice"))),
            Err(ChallengeError::Mismatch)
        );
    }

    #[test]
    fn a_sign_in_signature_never_answers_an_application() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public = key.verifying_key().to_sec1_bytes();
        let nonce = Nonce([5u8; 32]);
        let sign_in = sign(&key, &signin_digest("alice", &nonce));
        // Even an application that picks the sign-in nonce as its challenge learns nothing.
        let a = Ask::new("x", nonce.0.to_vec()).unwrap();
        assert_eq!(
            a.verify(&public, "alice", &sign_in),
            Err(ChallengeError::Mismatch)
        );
    }

    #[test]
    fn length_prefixes_keep_parts_apart() {
        let a = Ask::new("ab", vec![1u8; 16]).unwrap();
        let b = Ask::new("b", vec![1u8; 16]).unwrap();
        assert_ne!(a.digest("a"), b.digest("ab"));
    }

    #[test]
    fn questions_out_of_bounds_are_refused() {
        assert_eq!(Ask::new(" ", vec![0; 32]), Err(AskError::EmptyReason));
        assert_eq!(
            Ask::new("x".repeat(MAX_REASON + 1), vec![0; 32]),
            Err(AskError::LongReason(MAX_REASON + 1))
        );
        assert!(Ask::new("x".repeat(MAX_REASON), vec![0; 32]).is_ok());
        assert_eq!(
            Ask::new("ok\nPIN accepted", vec![0; 32]),
            Err(AskError::ControlInReason)
        );
        assert_eq!(
            Ask::new("ok\u{1b}[2K", vec![0; 32]),
            Err(AskError::ControlInReason)
        );
        assert_eq!(
            Ask::new("ok", vec![0; MIN_CHALLENGE - 1]),
            Err(AskError::ChallengeLength(MIN_CHALLENGE - 1))
        );
        assert_eq!(
            Ask::new("ok", vec![0; MAX_CHALLENGE + 1]),
            Err(AskError::ChallengeLength(MAX_CHALLENGE + 1))
        );
    }

    #[test]
    fn a_question_read_from_a_message_is_checked_too() {
        let good: Ask = serde_json::from_str(&format!(
            r#"{{"reason":"ok","challenge":"{}"}}"#,
            "ab".repeat(16)
        ))
        .unwrap();
        assert_eq!(good.challenge(), &[0xab; 16]);
        for bad in [
            r#"{"reason":"ok","challenge":"abab"}"#.to_string(),
            format!(r#"{{"reason":"a\nb","challenge":"{}"}}"#, "ab".repeat(16)),
            format!(
                r#"{{"reason":"ok","challenge":"{}","x":1}}"#,
                "ab".repeat(16)
            ),
        ] {
            assert!(serde_json::from_str::<Ask>(&bad).is_err(), "{bad}");
        }
    }
}
