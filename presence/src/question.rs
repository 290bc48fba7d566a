//! Answering one application's question: the face first where the user has one that works,
//! then the PIN through the user's agent (a few tries), each a counted attempt in alohad. The
//! logic is plain Rust behind two traits, so it is tested with scripted stand-ins; the bus and
//! the socket are the thin shells in `bus.rs` and `main.rs`.

use std::time::{Duration, Instant};

use aloha::Secret;
use aloha::client::ClientError;
use aloha::presence::{Ask, bus};
use aloha::protocol::{ErrorCode, Gesture, UserStatus};
use thiserror::Error;

/// PIN entries per question: a mistyped PIN gets another chance, a guesser gets few (and each
/// counts against the user's lockout in alohad anyway).
pub const PIN_TRIES: usize = 3;
/// How long a person has for one PIN entry at the agent.
pub const ENTRY_TIMEOUT: Duration = Duration::from_secs(120);
/// Less than this left of the question's time: no new PIN entry is asked for (nobody types a
/// PIN in a second), the question ends.
const LEAST_ENTRY_TIME: Duration = Duration::from_secs(5);

/// A question's time: the face attempt's own bound and the whole question's deadline, read
/// from a clock the caller gives (tests need no sleeps).
pub struct Time<'a> {
    pub face_timeout: Duration,
    pub deadline: Instant,
    pub now: &'a dyn Fn() -> Instant,
}

impl Time<'_> {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since((self.now)())
    }
}

/// alohad, as this service uses it.
pub trait Alohad {
    fn status(&mut self, user: &str) -> Result<UserStatus, ClientError>;
    /// r || s over `ask.digest(user)`.
    fn presence(&mut self, user: &str, ask: &Ask, gesture: Gesture)
    -> Result<Vec<u8>, ClientError>;
}

/// The user's agent: shows the question and asks for the PIN.
pub trait Agent {
    /// The face is being tried now: the person should look at the camera. Best effort, no
    /// answer (a face match needs nothing typed).
    fn face_attempt(&mut self, reason: &str, application: &str);

    /// `Ok(None)`: the person declined (Escape, an empty entry). `within`: how long the
    /// person has; past it the agent is [`AgentError::NoAnswer`].
    fn ask_pin(
        &mut self,
        reason: &str,
        application: &str,
        note: &str,
        within: Duration,
    ) -> Result<Option<Secret>, AgentError>;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AgentError {
    /// The agent's connection or object is gone (it exited): it is forgotten.
    #[error("your presence agent went away")]
    Gone,
    /// Nobody typed anything in the time given.
    #[error("nobody answered at your presence agent in time")]
    NoAnswer,
    #[error("your presence agent failed: {0}")]
    Failed(String),
}

/// How the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Pin,
    Face,
}

impl Factor {
    pub fn name(self) -> &'static str {
        match self {
            Factor::Pin => "pin",
            Factor::Face => "face",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub signature: Vec<u8>,
    pub factor: Factor,
}

/// Why a question got no answer; each says what to do.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Unanswered {
    #[error("{user} has no PIN with Aloha: set one with `aloha pin set`")]
    NotEnrolled { user: String },
    #[error(
        "no presence agent is running for you: start one with `aloha presence agent` in a \
         terminal (or sign in to a desktop that runs one), then ask again"
    )]
    NoAgent,
    #[error("the person declined")]
    Cancelled,
    #[error("nobody answered in time: ask again when you are at the computer")]
    TimedOut,
    /// alohad's own sentence (a lock, a paused face, too many wrong PINs...).
    #[error("{0}")]
    Refused(String),
    #[error("alohad cannot answer now: {0}; try again later")]
    Unavailable(String),
    #[error("{0}")]
    Agent(#[from] AgentError),
}

impl Unanswered {
    /// The D-Bus error name `Verify` answers with.
    pub fn bus_error(&self) -> &'static str {
        match self {
            Unanswered::NotEnrolled { .. } => bus::error::NOT_ENROLLED,
            Unanswered::NoAgent | Unanswered::Agent(AgentError::Gone) => bus::error::NO_AGENT,
            Unanswered::Cancelled => bus::error::CANCELLED,
            Unanswered::TimedOut => bus::error::TIMED_OUT,
            Unanswered::Refused(_) => bus::error::REFUSED,
            Unanswered::Unavailable(_) | Unanswered::Agent(_) => bus::error::UNAVAILABLE,
        }
    }
}

/// Answer `ask` for `user`. `agent` is `None` when the user runs none: then only the face can
/// answer. The face attempt and every PIN entry fit in `time`, so the question ends (and
/// frees the user's one open question) by its deadline plus one step with alohad.
pub fn answer(
    alohad: &mut dyn Alohad,
    mut agent: Option<&mut dyn Agent>,
    user: &str,
    application: &str,
    ask: &Ask,
    time: &Time,
) -> Result<Answer, Unanswered> {
    let status = alohad.status(user).map_err(unavailable)?;
    if !status.enrolled {
        return Err(Unanswered::NotEnrolled { user: user.into() });
    }
    let mut note = String::new();
    if status.face.as_ref().is_some_and(|f| f.usable && !f.paused) {
        if let Some(agent) = agent.as_mut() {
            agent.face_attempt(ask.reason(), application);
        }
        let within = time.face_timeout.min(time.left());
        let face = Gesture::Face {
            timeout_ms: u64::try_from(within.as_millis()).unwrap_or(u64::MAX),
        };
        match alohad.presence(user, ask, face) {
            Ok(signature) => {
                return Ok(Answer {
                    signature,
                    factor: Factor::Face,
                });
            }
            Err(ClientError::Refused(f)) => note = f.message,
            Err(e) => note = format!("Face sign-in is unavailable ({e})."),
        }
    }
    let Some(agent) = agent else {
        return Err(if note.is_empty() {
            Unanswered::NoAgent
        } else {
            Unanswered::Refused(format!("{note} No presence agent runs to ask for the PIN."))
        });
    };
    for _ in 0..PIN_TRIES {
        let left = time.left();
        if left < LEAST_ENTRY_TIME {
            return Err(Unanswered::TimedOut);
        }
        let entry = agent.ask_pin(ask.reason(), application, &note, left.min(ENTRY_TIMEOUT));
        let pin = match entry {
            Ok(Some(pin)) if !pin.is_empty() => pin,
            Ok(_) => return Err(Unanswered::Cancelled),
            Err(AgentError::NoAnswer) => return Err(Unanswered::TimedOut),
            Err(e) => return Err(e.into()),
        };
        match alohad.presence(user, ask, Gesture::Pin { pin }) {
            Ok(signature) => {
                return Ok(Answer {
                    signature,
                    factor: Factor::Pin,
                });
            }
            Err(ClientError::Refused(f)) if f.code == ErrorCode::WrongPin => note = f.message,
            Err(ClientError::Refused(f)) => return Err(Unanswered::Refused(f.message)),
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(Unanswered::Refused(note))
}

fn unavailable(e: ClientError) -> Unanswered {
    match e {
        ClientError::Refused(f) if f.code == ErrorCode::UnknownUser => {
            Unanswered::Refused(f.message)
        }
        other => Unanswered::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
