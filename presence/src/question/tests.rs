//! The question's flow with a scripted alohad, agent and clock.

use super::*;
use aloha::lockout::Gate;
use aloha::protocol::{FaceStatus, Failure};
use std::cell::Cell;
use std::rc::Rc;

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
    /// The time each entry was given; each entry takes `typing` on `clock`.
    within: Vec<Duration>,
    /// Face attempts it was told of.
    faces: usize,
    typing: Duration,
    clock: Rc<Cell<Instant>>,
}

impl Agent for ScriptedAgent {
    fn face_attempt(&mut self, reason: &str, application: &str) {
        assert_eq!(
            (reason, application),
            ("Unlock the vault", "keepass (pid 7)")
        );
        self.faces += 1;
    }

    fn ask_pin(
        &mut self,
        reason: &str,
        application: &str,
        note: &str,
        within: Duration,
    ) -> Result<Option<Secret>, AgentError> {
        self.within.push(within);
        self.clock.set(self.clock.get() + self.typing);
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
        within: vec![],
        faces: 0,
        typing: Duration::from_secs(2),
        clock: Rc::new(Cell::new(Instant::now())),
    }
}

const FACE_TIMEOUT: Duration = Duration::from_secs(4);
const QUESTION: Duration = Duration::from_secs(180);

fn run(a: &mut ScriptedAlohad, g: Option<&mut ScriptedAgent>) -> Result<Answer, Unanswered> {
    run_with(a, g, FACE_TIMEOUT)
}

/// The question's clock is the agent's (a question without one has a clock of its own).
fn run_with(
    a: &mut ScriptedAlohad,
    g: Option<&mut ScriptedAgent>,
    face_timeout: Duration,
) -> Result<Answer, Unanswered> {
    let ask = Ask::new("Unlock the vault", vec![1; 32]).unwrap();
    let clock = g
        .as_ref()
        .map_or_else(|| Rc::new(Cell::new(Instant::now())), |g| g.clock.clone());
    let now = || clock.get();
    let time = Time {
        face_timeout,
        deadline: clock.get() + QUESTION,
        now: &now,
    };
    answer(
        a,
        g.map(|g| g as &mut dyn Agent),
        "alice",
        "keepass (pid 7)",
        &ask,
        &time,
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
    assert_eq!(g.faces, 1, "the agent said to look at the camera first");
    assert_eq!(g.notes, vec!["Face not recognised.".to_string()]);
}

#[test]
fn a_paused_face_is_not_tried() {
    let mut a = alohad(status(true, Some((true, true))), vec![Ok(vec![7; 64])]);
    let mut g = agent(vec![Ok(Some("1234"))]);
    run(&mut a, Some(&mut g)).unwrap();
    assert_eq!(a.got.len(), 1);
    assert!(matches!(a.got[0], Gesture::Pin { .. }));
    assert_eq!(g.faces, 0, "nobody is told to look at a camera not used");
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
fn each_entry_gets_at_most_what_is_left_of_the_question_then_it_times_out() {
    let wrong = || refused(ErrorCode::WrongPin, "Wrong PIN. 7 tries left.");
    let mut a = alohad(status(true, None), vec![wrong(), wrong()]);
    let mut g = agent(vec![Ok(Some("1")), Ok(Some("2")), Ok(Some("3"))]);
    g.typing = Duration::from_secs(100);
    assert_eq!(run(&mut a, Some(&mut g)), Err(Unanswered::TimedOut));
    // 180 s: the first entry gets its own 120 s, the second the 80 s left; with 2 s left
    // nobody is asked a third time and alohad sees no third attempt.
    assert_eq!(
        g.within,
        vec![ENTRY_TIMEOUT, Duration::from_secs(80)],
        "the time each entry was given"
    );
    assert_eq!(a.got.len(), 2);
    assert_eq!(
        Unanswered::TimedOut.bus_error(),
        "org.aloha.Presence1.Error.TimedOut"
    );
}

#[test]
fn an_entry_nobody_answers_ends_the_question_as_timed_out() {
    let mut a = alohad(status(true, None), vec![]);
    let mut g = agent(vec![Err(AgentError::NoAnswer)]);
    assert_eq!(run(&mut a, Some(&mut g)), Err(Unanswered::TimedOut));
    assert!(a.got.is_empty());
}

#[test]
fn the_face_attempt_fits_in_the_question() {
    let mut a = alohad(status(true, Some((true, false))), vec![Ok(vec![8; 64])]);
    run_with(&mut a, None, Duration::from_secs(600)).unwrap();
    assert_eq!(
        a.got,
        vec![Gesture::Face {
            timeout_ms: 180_000
        }]
    );
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
