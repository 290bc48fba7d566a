//! `aloha face …`: enrol with live feedback, list and remove profiles, test the camera and the
//! profile; and `aloha verify --face`.

use std::io::{IsTerminal, Write};

use aloha::challenge::{self, Nonce};
use aloha::protocol::{FaceProgress, FrameVerdict, Request, Response};
use aloha::registry;
use aloha::timefmt::utc;
use anyhow::{Context, anyhow};
use clap::Subcommand;

use super::prompt::Source;
use super::{Ctx, Failure, client_failure, done, say, to_json, unexpected};

#[derive(Subcommand)]
pub enum FaceCommand {
    /// Enrol your face: your PIN first, then look at the camera until the bar is full.
    Enroll {
        /// Enrol this user (root only; the user's PIN is still needed).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// The profile's name, e.g. "glasses" (an existing one is replaced).
        #[arg(long, default_value = "default")]
        label: String,
        /// Read the PIN from standard input.
        #[arg(long)]
        pin_stdin: bool,
    },
    /// Your enrolled face profiles.
    List {
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Forget one profile, or (--all) your whole face enrolment.
    Remove {
        /// The profile to forget.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        label: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Look at the camera: every frame's outcome and the decision. Uses no key and counts
    /// nothing, so it never signs anyone in.
    Test {
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// How long to look, in seconds (alohad caps it at face.attempt_timeout_ms).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Print one JSON object per frame, then the decision.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(ctx: &Ctx, command: FaceCommand) -> Result<(), Failure> {
    match command {
        FaceCommand::Enroll {
            user,
            label,
            pin_stdin,
        } => {
            let user = ctx.user(user.as_deref())?;
            let pin = Source::new(pin_stdin).existing(&format!("PIN for {user}:"))?;
            if pin.is_empty() {
                return Err(Failure::Refused(anyhow!(
                    "no PIN given; nothing was enrolled"
                )));
            }
            say("Look at the camera; move your head a little while the bar fills.\n");
            let mut bar = Bar::new();
            let reply = ctx
                .connect()?
                .call_with_progress(&Request::FaceEnrol { user, label, pin }, |p| bar.show(p))
                .map_err(client_failure);
            bar.finish();
            done(reply?)
        }
        FaceCommand::List { user, json } => {
            let user = ctx.user(user.as_deref())?;
            let Response::FaceProfiles { user, profiles } = ctx.call(Request::FaceList { user })?
            else {
                return Err(unexpected("face list"));
            };
            if json {
                say(&format!("{}\n", to_json(&profiles)?));
            } else if profiles.is_empty() {
                say(&format!(
                    "{user} has no face enrolled (`aloha face enroll`).\n"
                ));
            } else {
                for p in profiles {
                    say(&format!(
                        "{:<16} {} views, enrolled {}\n",
                        p.label,
                        p.descriptors,
                        utc(p.enrolled_at)
                    ));
                }
            }
            Ok(())
        }
        FaceCommand::Remove { label, all, user } => {
            let user = ctx.user(user.as_deref())?;
            let label = if all { None } else { label };
            done(ctx.call(Request::FaceRemove { user, label })?)
        }
        FaceCommand::Test {
            user,
            seconds,
            json,
        } => {
            let user = ctx.user(user.as_deref())?;
            if !(seconds > 0.0 && seconds <= 60.0) {
                return Err(Failure::Refused(anyhow!(
                    "--seconds must be more than 0 and at most 60"
                )));
            }
            let timeout_ms = (seconds * 1000.0) as u64;
            let mut json_error = None;
            let reply = ctx
                .connect()?
                .call_with_progress(&Request::FaceTest { user, timeout_ms }, |p| {
                    if json {
                        match serde_json::to_string(p) {
                            Ok(line) => say(&format!("{line}\n")),
                            Err(e) => json_error = Some(e),
                        }
                    } else {
                        say(&format!("{}\n", frame_line(p)));
                    }
                })
                .map_err(client_failure)?;
            if let Some(e) = json_error {
                return Err(Failure::Refused(e.into()));
            }
            let Response::Done { message } = reply else {
                return Err(unexpected("face test"));
            };
            if json {
                say(&format!("{}\n", serde_json::json!({ "decision": message })));
            } else {
                say(&format!("{message}\n"));
            }
            Ok(())
        }
    }
}

/// `aloha verify --face`: our nonce, alohad's signature after a face match, our check against
/// the registered key. Exit status 0 only for a signature that verifies.
pub fn verify(ctx: &Ctx, user: Option<&str>, seconds: f64) -> Result<(), Failure> {
    if !(seconds > 0.0 && seconds <= 60.0) {
        return Err(Failure::Refused(anyhow!(
            "--seconds must be more than 0 and at most 60"
        )));
    }
    let user = ctx.user(user)?;
    let uid = nix::unistd::User::from_name(&user)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| anyhow!("there is no user named {user}"))?;
    let registered = registry::load(&ctx.config.daemon.state_dir, &user, Some(uid))
        .map_err(|e| Failure::Refused(e.into()))?;
    let nonce = Nonce::random().map_err(|e| Failure::Refused(e.into()))?;
    say("Looking for your face…\n");
    let response = ctx.call(Request::FaceSignIn {
        user: user.clone(),
        service: "aloha-verify".into(),
        nonce,
        timeout_ms: (seconds * 1000.0) as u64,
        vault: false,
    })?;
    let Response::Signed {
        signature, backend, ..
    } = response
    else {
        return Err(unexpected("face sign-in"));
    };
    challenge::verify(&registered.public_key, &user, &nonce, &signature)
        .with_context(|| format!("alohad's answer for {user} is not a valid proof"))?;
    say(&format!(
        "Verified: {user}'s face released the key in the {}, which signed a fresh challenge.\n",
        backend.name()
    ));
    Ok(())
}

/// One frame of `aloha face test`, in words.
fn frame_line(p: &FaceProgress) -> String {
    let distance = p
        .distance
        .map(|d| format!(" (distance {d:.3})"))
        .unwrap_or_default();
    let what = match p.verdict {
        FrameVerdict::Match => "matches".to_string(),
        FrameVerdict::NoMatch => "does not match".to_string(),
        _ => p.message.clone(),
    };
    format!("frame {:>3}: {what}{distance}", p.frame)
}

/// The enrolment's progress: a bar redrawn in place on a terminal, a line per change
/// elsewhere.
struct Bar {
    terminal: bool,
    last: Option<(u32, FrameVerdict)>,
}

impl Bar {
    fn new() -> Bar {
        Bar {
            terminal: std::io::stdout().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, p: &FaceProgress) {
        if self.last == Some((p.done, p.verdict)) {
            return;
        }
        self.last = Some((p.done, p.verdict));
        const WIDTH: u32 = 20;
        let filled = (p.done.min(p.wanted) * WIDTH)
            .checked_div(p.wanted)
            .unwrap_or(0);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let line = format!("[{bar}] {}/{}  {}", p.done, p.wanted, p.message);
        if self.terminal {
            // \r and erase-line: the bar stays on one line.
            say(&format!("\r\x1b[2K{line}"));
            let _ = std::io::stdout().flush();
        } else {
            say(&format!("{line}\n"));
        }
    }

    fn finish(&self) {
        if self.terminal && self.last.is_some() {
            say("\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u32, verdict: FrameVerdict, distance: Option<f32>) -> FaceProgress {
        FaceProgress {
            frame: 7,
            verdict,
            distance,
            done,
            wanted: 8,
            message: verdict.hint().into(),
        }
    }

    #[test]
    fn frames_read_as_words() {
        assert_eq!(
            frame_line(&progress(0, FrameVerdict::NoMatch, Some(0.5123))),
            "frame   7: does not match (distance 0.512)"
        );
        assert_eq!(
            frame_line(&progress(0, FrameVerdict::TooSmall, None)),
            "frame   7: move closer"
        );
    }
}
