use aloha::Secret;

use super::PIN;
use crate::host::{Host, Level};

/// A host that records what the module did.
#[derive(Debug)]
pub struct ScriptedHost {
    rhost: Option<String>,
    service: String,
    pub answer: Answer,
    pub logs: Vec<(Level, String)>,
    pub told: Vec<String>,
    /// PAM_TEXT_INFO lines shown even under PAM_SILENT.
    pub noticed: Vec<String>,
    /// How many times the PIN was asked for.
    pub asked: usize,
    /// PAM_AUTHTOK.
    pub authtok: Option<String>,
}

/// What the user does at the PIN prompt.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Pin(&'static str),
    Cancel,
}

impl ScriptedHost {
    /// alice signs in to `service` from `rhost`, and types [`PIN`] when asked.
    pub fn new(service: &str, rhost: Option<&str>) -> ScriptedHost {
        ScriptedHost {
            rhost: rhost.map(Into::into),
            service: service.into(),
            answer: Answer::Pin(PIN),
            logs: vec![],
            told: vec![],
            noticed: vec![],
            asked: 0,
            authtok: None,
        }
    }

    /// Every log line, whatever its level.
    pub fn logged(&self) -> String {
        self.logs
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Every flow test checks every message it is shown: one line that fits a greeter.
#[track_caller]
fn one_line(m: &str) {
    assert!(
        !m.contains('\n') && m.chars().count() <= crate::host::MAX_LINE,
        "a message longer than one line of {} characters: {m:?} ({})",
        crate::host::MAX_LINE,
        m.chars().count()
    );
}

impl Host for ScriptedHost {
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
        one_line(m);
        self.told.push(m.into());
    }
    fn notice(&mut self, m: &str) {
        one_line(m);
        self.noticed.push(m.into());
    }
    fn log(&mut self, level: Level, m: &str) {
        self.logs.push((level, m.into()));
    }
    fn uid_of(&self, user: &str) -> Option<u32> {
        (user == "alice").then_some(1000)
    }
    fn authtok(&self) -> Option<Secret> {
        self.authtok.as_deref().map(Secret::new)
    }
    fn set_authtok(&mut self, password: &Secret) -> Result<(), ()> {
        self.authtok = Some(password.expose().to_string());
        Ok(())
    }
}
