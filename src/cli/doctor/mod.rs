//! `aloha doctor`: every check an administrator would otherwise make by hand — the
//! configuration, alohad, the key store and the TPM's dictionary-attack settings, where
//! pam_aloha sits in each PAM service, the state directory's permissions, the camera and the
//! face models — each with what is wrong and the fix. The exit status says whether anything is
//! wrong: 0 nothing (notes are not wrong), 1 a warning or a problem (the JSON tells them apart;
//! 2 stays the CLI's usage error).
//!
//! It reads no user's state: alohad answers for the key store and the camera; the PAM files,
//! the models and the state directory's modes are read here (what any administrator may read;
//! the private part of the state directory only as root).

mod keys;
mod pam;
mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aloha::client::Client;
use aloha::config::Config;
use aloha::protocol::{CameraReport, Request, Response, UserStatus};
use clap::Args;
use serde::Serialize;

use super::{Failure, say, to_json};

/// alohad should answer a status or a survey within this.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(20);

/// The face models alohad loads (the face engine's `models::ALL`).
const MODEL_FILES: [&str; 3] = [
    "blazeface_front_128.onnx",
    "shape_predictor_5_face_landmarks.dat",
    "dlib_face_recognition_resnet_model_v1.onnx",
];

/// Where the aloha-face-models package puts them (the face engine's `models::DEFAULT_DIR`).
const DEFAULT_MODEL_DIR: &str = "/usr/share/aloha/models";

#[derive(Args)]
pub struct DoctorArgs {
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
    /// Read the PAM services from DIR instead of /etc/pam.d and /usr/lib/pam.d (an image
    /// being built, a chroot); may be given more than once, in the order libpam would read.
    #[arg(long, value_name = "DIR")]
    pam_dir: Vec<PathBuf>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    /// Worth knowing; nothing to fix.
    Note,
    /// Works, but not as it should (a weaker key store, the password asked first...).
    Warning,
    /// Broken, or someone could be locked out.
    Problem,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Problem => "PROBLEM",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// config, alohad, keys, tpm, pam, state, camera, models.
    pub area: &'static str,
    pub level: Level,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn new(area: &'static str, level: Level, what: impl Into<String>) -> Check {
        Check {
            area,
            level,
            what: what.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

#[derive(Debug, Serialize)]
struct Report {
    warnings: usize,
    problems: usize,
    checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        let count = |l| checks.iter().filter(|c| c.level == l).count();
        Report {
            warnings: count(Level::Warning),
            problems: count(Level::Problem),
            checks,
        }
    }

    fn exit_code(&self) -> u8 {
        u8::from(self.problems + self.warnings > 0)
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!("{:<8} {:<7} {}\n", c.level.word(), c.area, c.what));
            if let Some(fix) = &c.fix {
                out.push_str(&format!("{:<16} fix: {fix}\n", ""));
            }
        }
        out.push_str(&match (self.problems, self.warnings) {
            (0, 0) => "Nothing wrong.\n".to_string(),
            (p, w) => format!("{p} problem(s), {w} warning(s).\n"),
        });
        out
    }
}

/// Run every check; returns the exit status.
pub fn run(
    config_path: Option<&Path>,
    socket: Option<&Path>,
    args: DoctorArgs,
) -> Result<u8, Failure> {
    let mut checks = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => {
            let path = config_path.unwrap_or(Path::new(aloha::config::DEFAULT_CONFIG_PATH));
            let what = if path.exists() {
                format!("{} is valid", path.display())
            } else {
                format!(
                    "{} does not exist: every setting has its default",
                    path.display()
                )
            };
            checks.push(Check::new("config", Level::Ok, what));
            c
        }
        Err(e) => {
            checks.push(
                Check::new(
                    "config",
                    Level::Problem,
                    format!("{e}; the checks below use the defaults"),
                )
                .fix("correct the file (aloha.toml(5)); `alohad --check-config` checks it"),
            );
            Config::default()
        }
    };
    let socket = socket.map_or_else(|| config.daemon.socket.clone(), Path::to_path_buf);
    let is_root = nix::unistd::getuid().is_root();
    let daemon = ask_alohad(&socket, &mut checks);
    match &daemon {
        Some(d) => checks.extend(keys::checks(&config, &d.status)),
        None => checks.push(Check::new(
            "keys",
            Level::Note,
            "the key store and the TPM are not checked: alohad did not answer",
        )),
    }
    let pam_dirs = if args.pam_dir.is_empty() {
        aloha::pam_stack::dirs(None)
    } else {
        args.pam_dir.clone()
    };
    checks.extend(pam::checks(&config, &pam_dirs, &pam::module_dirs()));
    checks.extend(state::checks(&config.daemon.state_dir, is_root));
    let face_enrolled = daemon.as_ref().is_some_and(|d| d.status.face.is_some());
    checks.push(camera_check(
        daemon.as_ref().and_then(|d| d.camera.as_ref()),
        face_enrolled,
    ));
    checks.push(models_check(&model_dir(&config), face_enrolled));
    let report = Report::new(checks);
    if args.json {
        say(&format!("{}\n", to_json(&report)?));
    } else {
        say(&report.render());
    }
    Ok(report.exit_code())
}

/// What alohad said: the caller's status and the camera survey.
struct Daemon {
    status: UserStatus,
    camera: Option<CameraReport>,
}

fn ask_alohad(socket: &Path, checks: &mut Vec<Check>) -> Option<Daemon> {
    let unreachable = |why: String| {
        Check::new(
            "alohad",
            Level::Problem,
            format!("alohad does not answer on {}: {why}", socket.display()),
        )
        .fix(
            "systemctl enable --now alohad.socket, then `journalctl -u alohad` for why it \
                 stopped; until then every sign-in goes straight to the password",
        )
    };
    let user = match nix::unistd::User::from_uid(nix::unistd::getuid()) {
        Ok(Some(u)) => u.name,
        _ => {
            checks.push(Check::new(
                "alohad",
                Level::Note,
                "cannot find this user's name: alohad not asked",
            ));
            return None;
        }
    };
    let mut client = match Client::connect(socket, DOCTOR_TIMEOUT, "aloha-doctor") {
        Ok(c) => c,
        Err(e) => {
            checks.push(unreachable(e.to_string()));
            return None;
        }
    };
    let status = match client.call(&Request::Status { user: user.clone() }) {
        Ok(Response::Status(s)) => s,
        Ok(other) => {
            checks.push(unreachable(format!(
                "an unexpected reply to status: {}",
                reply_name(&other)
            )));
            return None;
        }
        Err(e) => {
            checks.push(unreachable(e.to_string()));
            return None;
        }
    };
    checks.push(Check::new(
        "alohad",
        Level::Ok,
        format!(
            "alohad answers on {} (protocol {})",
            socket.display(),
            aloha::protocol::PROTOCOL_VERSION
        ),
    ));
    let camera = match client.call(&Request::Camera) {
        Ok(Response::Camera(c)) => Some(c),
        Ok(_) | Err(_) => None,
    };
    Some(Daemon { status, camera })
}

fn reply_name(r: &Response) -> &'static str {
    match r {
        Response::Error(_) => "an error",
        _ => "another reply",
    }
}

/// Face sign-in's camera: a warning only for someone with a face enrolled (PIN works without).
fn camera_check(report: Option<&CameraReport>, face_enrolled: bool) -> Check {
    let missing = if face_enrolled {
        Level::Warning
    } else {
        Level::Note
    };
    let Some(r) = report else {
        return Check::new(
            "camera",
            Level::Note,
            "not checked: alohad did not answer the camera survey",
        );
    };
    let emitter = r
        .emitter
        .as_ref()
        .map_or(String::new(), |e| format!("; IR emitter: {}", e.detail));
    match (&r.chosen, r.usable) {
        (Some(c), true) if r.visible_light => Check::new(
            "camera",
            Level::Warning,
            format!("face sign-in uses the colour camera {c}: a photo or a screen is easier to pass off as a face{emitter}"),
        )
        .fix("use an infrared camera, or set face.allow_visible_camera = false"),
        (Some(c), true) => Check::new("camera", Level::Ok, format!("face sign-in uses {c} ({}){emitter}", r.why)),
        _ => Check::new("camera", missing, format!("face sign-in has no camera: {}", r.why))
            .fix("connect an infrared (Windows Hello) camera; `aloha camera` lists what alohad sees. The PIN works without one"),
    }
}

/// `face.model_dir` (a key the face engine reads), else the packaged directory.
fn model_dir(config: &Config) -> PathBuf {
    config
        .face
        .engine
        .get("model_dir")
        .and_then(|v| v.as_str())
        .map_or_else(|| PathBuf::from(DEFAULT_MODEL_DIR), PathBuf::from)
}

/// The face models: the PIN package works without them.
fn models_check(dir: &Path, face_enrolled: bool) -> Check {
    let missing: Vec<&str> = MODEL_FILES
        .iter()
        .copied()
        .filter(|f| !std::fs::metadata(dir.join(f)).is_ok_and(|m| m.is_file() && m.len() > 0))
        .collect();
    if missing.is_empty() {
        return Check::new(
            "models",
            Level::Ok,
            format!("the face models are in {}", dir.display()),
        );
    }
    let level = if face_enrolled {
        Level::Warning
    } else {
        Level::Note
    };
    Check::new(
        "models",
        level,
        format!(
            "face sign-in needs models missing from {}: {}",
            dir.display(),
            missing.join(", ")
        ),
    )
    .fix(
        "install the aloha-face-models package (or set face.model_dir); the PIN works without them",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_is_the_worst_finding() {
        let r = |levels: &[Level]| {
            Report::new(levels.iter().map(|l| Check::new("x", *l, "y")).collect()).exit_code()
        };
        assert_eq!(r(&[Level::Ok, Level::Note]), 0);
        assert_eq!(r(&[Level::Ok, Level::Warning, Level::Note]), 1);
        assert_eq!(r(&[Level::Problem, Level::Ok]), 1);
    }

    #[test]
    fn fixes_are_printed_under_their_finding() {
        let out = Report::new(vec![
            Check::new("pam", Level::Problem, "pam_aloha is required").fix("make it sufficient"),
            Check::new("state", Level::Ok, "fine"),
        ])
        .render();
        assert!(
            out.contains("PROBLEM  pam     pam_aloha is required\n"),
            "{out}"
        );
        assert!(out.contains("fix: make it sufficient\n"), "{out}");
        assert!(out.ends_with("1 problem(s), 0 warning(s).\n"), "{out}");
    }

    #[test]
    fn models_are_looked_for_by_name() {
        let dir = std::env::temp_dir().join(format!("aloha-doctor-models-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = models_check(&dir, true);
        assert_eq!(c.level, Level::Warning);
        assert!(c.what.contains("blazeface_front_128.onnx"), "{c:?}");
        assert_eq!(models_check(&dir, false).level, Level::Note);
        for f in MODEL_FILES {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        assert_eq!(models_check(&dir, true).level, Level::Ok);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
