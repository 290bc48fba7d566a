//! A PAM application for tests: real libpam (`pam_start_confdir`), a service file in a temp
//! dir that loads the freshly built pam_aloha.so by absolute path, and a scripted conversation
//! that records every message.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aloha_helper::pam_app::{Conversation, MessageStyle, Transaction};
use zeroize::Zeroizing;

pub use aloha_helper::pam_app::{
    PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_IGNORE, PAM_MAXTRIES, PAM_RHOST, PAM_SILENT,
    PAM_SUCCESS,
};
/// What the probe stack returns when pam_aloha said PAM_IGNORE (pam_debug auth=try_again).
pub const PROBE_IGNORED: i32 = 24;
pub const PAM_PERM_DENIED: i32 = aloha_helper::pam_app::PAM_PERM_DENIED;

/// One answer to one prompt.
#[derive(Debug, Clone)]
pub enum Answer {
    Text(String),
    /// The conversation fails (as a cancelled prompt does).
    Fail,
}

#[derive(Debug, Default)]
pub struct Transcript {
    /// `(style, text)` of every message, in order.
    pub messages: Vec<(MessageStyle, String)>,
}

impl Transcript {
    /// The texts of the messages whose style `wanted` accepts, in order.
    fn texts(&self, wanted: impl Fn(MessageStyle) -> bool) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|(s, _)| wanted(*s))
            .map(|(_, t)| t.as_str())
            .collect()
    }
    /// Every prompt, echoed or not.
    pub fn prompts(&self) -> Vec<&str> {
        self.texts(|s| matches!(s, MessageStyle::PromptEchoOff | MessageStyle::PromptEchoOn))
    }
    /// The prompts whose answer is not echoed (PAM_PROMPT_ECHO_OFF).
    pub fn hidden_prompts(&self) -> Vec<&str> {
        self.texts(|s| matches!(s, MessageStyle::PromptEchoOff))
    }
    pub fn errors(&self) -> Vec<&str> {
        self.texts(|s| matches!(s, MessageStyle::ErrorMsg))
    }
    pub fn infos(&self) -> Vec<&str> {
        self.texts(|s| matches!(s, MessageStyle::TextInfo))
    }
}

struct Scripted {
    answers: VecDeque<Answer>,
    transcript: Arc<Mutex<Transcript>>,
}

impl Conversation for Scripted {
    fn respond(
        &mut self,
        style: MessageStyle,
        text: &str,
    ) -> Result<Option<Zeroizing<String>>, ()> {
        self.transcript
            .lock()
            .unwrap()
            .messages
            .push((style, text.to_string()));
        match style {
            MessageStyle::PromptEchoOff | MessageStyle::PromptEchoOn => {
                match self.answers.pop_front() {
                    Some(Answer::Text(t)) => Ok(Some(Zeroizing::new(t))),
                    Some(Answer::Fail) | None => Err(()),
                }
            }
            _ => Ok(None),
        }
    }
}

/// The result of one `pam_authenticate`.
#[derive(Debug)]
pub struct Auth {
    pub rc: i32,
    pub setcred: i32,
    pub transcript: Transcript,
}

/// A directory of PAM service files.
#[derive(Debug)]
pub struct PamDir {
    dir: tempfile::TempDir,
}

impl PamDir {
    pub fn new() -> PamDir {
        PamDir {
            dir: tempfile::Builder::new()
                .prefix("aloha-pam-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write service `name` with these `auth` lines (`MODULE` stands for pam_aloha.so's path).
    pub fn service(&self, name: &str, lines: &[&str]) -> &PamDir {
        let module = crate::build::artifact("libpam_aloha.so");
        let text: String = lines
            .iter()
            .map(|l| format!("{}\n", l.replace("MODULE", &module.display().to_string())))
            .collect();
        std::fs::write(self.path().join(name), text).unwrap();
        self
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// pam_start_confdir + pam_authenticate (+ pam_setcred), answering prompts in order.
    pub fn authenticate(
        &self,
        service: &str,
        user: &str,
        answers: &[Answer],
        flags: i32,
        rhost: Option<&str>,
    ) -> Auth {
        PamDir::authenticate_in(self.path(), service, user, answers, flags, rhost)
    }

    /// As [`PamDir::authenticate`], with service files in `confdir`.
    pub fn authenticate_in(
        confdir: &Path,
        service: &str,
        user: &str,
        answers: &[Answer],
        flags: i32,
        rhost: Option<&str>,
    ) -> Auth {
        let transcript = Arc::new(Mutex::new(Transcript::default()));
        let conv = Box::new(Scripted {
            answers: answers.iter().cloned().collect(),
            transcript: transcript.clone(),
        });
        let mut tx =
            Transaction::start(service, user, Some(confdir), conv).expect("pam_start_confdir");
        if let Some(h) = rhost {
            assert_eq!(tx.set_item(PAM_RHOST, h), PAM_SUCCESS);
        }
        let rc = tx.authenticate(flags);
        let setcred = tx.setcred(0x2 /* PAM_ESTABLISH_CRED */);
        drop(tx);
        let transcript = std::mem::take(&mut *transcript.lock().unwrap());
        Auth {
            rc,
            setcred,
            transcript,
        }
    }
}

impl Default for PamDir {
    fn default() -> Self {
        Self::new()
    }
}

pub fn pin(p: &str) -> Vec<Answer> {
    vec![Answer::Text(p.to_string())]
}
