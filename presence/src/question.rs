//! Answering one application's question: the face first where the user has one that works,
//! then the PIN through the user's agent (a few tries), each a counted attempt in alohad. The
//! logic is plain Rust behind two traits, so it is tested with scripted stand-ins; the bus and
//! the socket are the thin shells in `bus.rs` and `main.rs`.

use aloha::Secret;
use aloha::client::ClientError;
use aloha::presence::{Ask, bus};
use aloha::protocol::{ErrorCode, Gesture, UserStatus};
use thiserror::Error;

/// PIN entries per question: a mistyped PIN gets another chance, a guesser gets few (and each
/// counts against the user's lockout in alohad anyway).
pub const PIN_TRIES: usize = 3;

/// alohad, as this service uses it.
pub trait Alohad {
    fn status(&mut self, user: &str) -> Result<UserStatus, ClientError>;
    /// r || s over `ask.digest(user)`.
    fn presence(&mut self, user: &str, ask: &Ask, gesture: Gesture)
    -> Result<Vec<u8>, ClientError>;
}

/// The user's agent: shows the question and asks for the PIN.
pub trait Agent {
    /// `Ok(None)`: the person declined (Escape, an empty entry).
    fn ask_pin(
        &mut self,
        reason: &str,
        application: &str,
        note: &str,
    ) -> Result<Option<Secret>, AgentError>;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AgentError {
    /// The agent's connection or object is gone (it exited): it is forgotten.
    #[error("your presence agent went away")]
    Gone,
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
            Unanswered::Refused(_) => bus::error::REFUSED,
            Unanswered::Unavailable(_) | Unanswered::Agent(_) => bus::error::UNAVAILABLE,
        }
    }
}

/// Answer `ask` for `user`. `agent` is `None` when the user runs none: then only the face can
/// answer.
pub fn answer(
    alohad: &mut dyn Alohad,
    agent: Option<&mut dyn Agent>,
    user: &str,
    application: &str,
    ask: &Ask,
    face_timeout_ms: u64,
) -> Result<Answer, Unanswered> {
    let status = alohad.status(user).map_err(unavailable)?;
    if !status.enrolled {
        return Err(Unanswered::NotEnrolled { user: user.into() });
    }
    let mut note = String::new();
    if status.face.as_ref().is_some_and(|f| f.usable && !f.paused) {
        let face = Gesture::Face {
            timeout_ms: face_timeout_ms,
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
        let pin = match agent.ask_pin(ask.reason(), application, &note)? {
            Some(pin) if !pin.is_empty() => pin,
            _ => return Err(Unanswered::Cancelled),
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
mod tests {
    use super::*;
    use aloha::lockout::Gate;
    use aloha::protocol::{FaceStatus, Failure};

    struct ScriptedAlohad {
        status: UserStatus,
        /// What each presence call returns, in order; the gestures it got are recorded.
        replies: Vec<Result<Vec<u8>, ClientError>>,
        got: Vec<Gesture>,
    }

    impl Alohad for ScriptedAlohad {
        fn status(&mut self, _: &str) -> Result<UserStatus, ClientError> {
            Ok(self.status.clone())
        }
        fn presence(
            &mut self,
            user: &str,
            ask: &Ask,
            gesture: Gesture,
        ) -> Result<Vec<u8>, ClientError> {
            assert_eq!((user, ask.reason()), ("alice", "Unlock the vault"));
            self.got.push(gesture);
            self.replies.remove(0)
        }
    }

    struct ScriptedAgent {
        entries: Vec<Result<Option<&'static str>, AgentError>>,
        notes: Vec<String>,
    }

    impl Agent for ScriptedAgent {
        fn ask_pin(
            &mut self,
            reason: &str,
            application: &str,
            note: &str,
        ) -> Result<Option<Secret>, AgentError> {
            assert_eq!(
                (reason, application),
                ("Unlock the vault", "keepass (pid 7)")
            );
            self.notes.push(note.into());
            self.entries.remove(0).map(|e| e.map(Secret::new))
        }
    }

    fn status(enrolled: bool, face: Option<(bool, bool)>) -> UserStatus {
        UserStatus {
            user: "alice".into(),
            uid: 1000,
            enrolled,
            backend: None,
            protectors: vec![],
            pin_set_at: None,
            pin_expires_at: None,
            failed_attempts: 0,
            max_attempts: 10,
            gate: Gate::Open {
                left_before_delay: 3,
                left_before_lock: 10,
            },
            tpm: None,
            tpm_pause: None,
            tpm_share: None,
            default_backend: None,
            protection: None,
            problem: None,
            face: face.map(|(usable, paused)| FaceStatus {
                profiles: vec![],
                protector: true,
                failures: 0,
                max_failures: 5,
                paused,
                camera: "/dev/video2".into(),
                usable,
                protection: String::new(),
            }),
            vault: Default::default(),
        }
    }

    fn refused(code: ErrorCode, message: &str) -> Result<Vec<u8>, ClientError> {
        Err(ClientError::Refused(Failure::new(code, message)))
    }

    fn alohad(status: UserStatus, replies: Vec<Result<Vec<u8>, ClientError>>) -> ScriptedAlohad {
        ScriptedAlohad {
            status,
            replies,
            got: vec![],
        }
    }

    fn agent(entries: Vec<Result<Option<&'static str>, AgentError>>) -> ScriptedAgent {
        ScriptedAgent {
            entries,
            notes: vec![],
        }
    }

    fn run(a: &mut ScriptedAlohad, g: Option<&mut ScriptedAgent>) -> Result<Answer, Unanswered> {
        let ask = Ask::new("Unlock the vault", vec![1; 32]).unwrap();
        answer(
            a,
            g.map(|g| g as &mut dyn Agent),
            "alice",
            "keepass (pid 7)",
            &ask,
            4000,
        )
    }

    #[test]
    fn the_pin_through_the_agent_answers() {
        let mut a = alohad(status(true, None), vec![Ok(vec![7; 64])]);
        let mut g = agent(vec![Ok(Some("1234"))]);
        let answer = run(&mut a, Some(&mut g)).unwrap();
        assert_eq!(answer.factor, Factor::Pin);
        assert_eq!(answer.signature, vec![7; 64]);
        assert_eq!(
            a.got,
            vec![Gesture::Pin {
                pin: Secret::new("1234")
            }]
        );
    }

    #[test]
    fn a_working_face_answers_first_without_the_agent() {
        let mut a = alohad(status(true, Some((true, false))), vec![Ok(vec![8; 64])]);
        let answer = run(&mut a, None).unwrap();
        assert_eq!(answer.factor, Factor::Face);
        assert_eq!(a.got, vec![Gesture::Face { timeout_ms: 4000 }]);
    }

    #[test]
    fn a_missed_face_falls_back_to_the_pin_and_says_why() {
        let mut a = alohad(
            status(true, Some((true, false))),
            vec![
                refused(ErrorCode::FaceNoMatch, "Face not recognised."),
                Ok(vec![7; 64]),
            ],
        );
        let mut g = agent(vec![Ok(Some("1234"))]);
        assert_eq!(run(&mut a, Some(&mut g)).unwrap().factor, Factor::Pin);
        assert_eq!(g.notes, vec!["Face not recognised.".to_string()]);
    }

    #[test]
    fn a_paused_face_is_not_tried() {
        let mut a = alohad(status(true, Some((true, true))), vec![Ok(vec![7; 64])]);
        let mut g = agent(vec![Ok(Some("1234"))]);
        run(&mut a, Some(&mut g)).unwrap();
        assert_eq!(a.got.len(), 1);
        assert!(matches!(a.got[0], Gesture::Pin { .. }));
    }

    #[test]
    fn wrong_pins_are_retried_a_few_times_then_refused() {
        let wrong = || refused(ErrorCode::WrongPin, "Wrong PIN. 7 tries left.");
        let mut a = alohad(status(true, None), vec![wrong(), wrong(), wrong()]);
        let mut g = agent(vec![Ok(Some("1")), Ok(Some("2")), Ok(Some("3"))]);
        assert_eq!(
            run(&mut a, Some(&mut g)),
            Err(Unanswered::Refused("Wrong PIN. 7 tries left.".into()))
        );
        assert_eq!(a.got.len(), PIN_TRIES);
        assert_eq!(g.notes[1], "Wrong PIN. 7 tries left.");
    }

    #[test]
    fn a_lock_ends_the_question_at_once() {
        let mut a = alohad(
            status(true, None),
            vec![refused(ErrorCode::Locked, "Locked.")],
        );
        let mut g = agent(vec![Ok(Some("1")), Ok(Some("2"))]);
        assert_eq!(
            run(&mut a, Some(&mut g)),
            Err(Unanswered::Refused("Locked.".into()))
        );
        assert_eq!(a.got.len(), 1);
    }

    #[test]
    fn declining_or_an_empty_entry_cancels_without_an_attempt() {
        for entry in [None, Some("")] {
            let mut a = alohad(status(true, None), vec![]);
            let mut g = agent(vec![Ok(entry)]);
            assert_eq!(run(&mut a, Some(&mut g)), Err(Unanswered::Cancelled));
            assert!(a.got.is_empty());
        }
    }

    #[test]
    fn without_an_agent_or_a_pin_there_is_no_answer() {
        let mut a = alohad(status(true, None), vec![]);
        assert_eq!(run(&mut a, None), Err(Unanswered::NoAgent));
        let mut a = alohad(status(false, None), vec![]);
        let mut g = agent(vec![]);
        assert_eq!(
            run(&mut a, Some(&mut g)),
            Err(Unanswered::NotEnrolled {
                user: "alice".into()
            })
        );
        let mut g = agent(vec![Err(AgentError::Gone)]);
        let mut a = alohad(status(true, None), vec![]);
        assert_eq!(
            run(&mut a, Some(&mut g)),
            Err(Unanswered::Agent(AgentError::Gone))
        );
    }
}
