//! Face sign-in in the end-to-end tests: the models, a replay camera whose frames a test
//! switches between recordings (a symlink alohad reopens at every attempt), and the labelled
//! camera streams of the shared datasets (live recordings and photo attacks, never committed:
//! their terms keep them out of the repository; tests that need them say so and skip).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::build::workspace_root;

/// The converted face models (`packaging/models/fetch.sh`; scripts/test fetches them).
pub fn models_dir() -> PathBuf {
    std::env::var_os("ALOHA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/models"))
}

/// The labelled face sets: `$ALOHA_FACE_DATASETS`, else `shared/face/datasets` beside the
/// checkout. `None` (with a line on stderr) when they are not on this machine.
pub fn datasets(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ALOHA_FACE_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/face/datasets"));
    if dir.join("nuaa_live_webcam").is_dir() {
        return Some(dir);
    }
    eprintln!(
        "{test}: skipped: the camera streams are not on this machine ({} has no \
         nuaa_live_webcam; set ALOHA_FACE_DATASETS)",
        dir.display()
    );
    None
}

/// The committed public-domain stills (face/tests/data/reference): one person's photos, and
/// another person's.
pub fn still(name: &str) -> PathBuf {
    workspace_root().join(format!("face/tests/data/reference/{name}.png"))
}

/// A still and its mirror image (face/tests/data/mirrored): the head-pose spread an enrolment
/// needs, from the repository alone.
pub fn still_and_mirror(name: &str) -> Vec<PathBuf> {
    vec![
        still(name),
        workspace_root().join(format!("face/tests/data/mirrored/{name}.png")),
    ]
}

/// A `replay:` camera whose frames can be switched between attempts.
#[derive(Debug)]
pub struct ReplayCamera {
    dir: TempDir,
    shows: usize,
}

impl ReplayCamera {
    pub fn new() -> ReplayCamera {
        let dir = tempfile::Builder::new()
            .prefix("aloha-camera-")
            .tempdir()
            .expect("temp dir");
        ReplayCamera { dir, shows: 0 }
    }

    /// What `face.camera` names.
    pub fn camera(&self) -> String {
        format!("replay:{}", self.dir.path().join("now").display())
    }

    /// The `[face]` section for alohad: this camera at `fps`, the models, and the rest.
    pub fn face_section(&self, fps: f64, more: &str) -> String {
        format!(
            "[face]\ncamera = \"{}\"\nreplay_fps = {fps}\nmodel_dir = \"{}\"\n{more}\n",
            self.camera(),
            models_dir().display()
        )
    }

    /// From the next attempt on, the camera plays `frames` in this order (looping).
    pub fn show(&mut self, frames: &[PathBuf]) {
        self.shows += 1;
        let set = self.dir.path().join(format!("set{}", self.shows));
        fs::create_dir_all(&set).unwrap();
        for (i, f) in frames.iter().enumerate() {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("png");
            symlink(f, set.join(format!("{i:04}.{ext}"))).unwrap();
        }
        let link = self.dir.path().join("now.new");
        let _ = fs::remove_file(&link);
        symlink(&set, &link).unwrap();
        fs::rename(&link, self.dir.path().join("now")).unwrap();
    }
}

impl Default for ReplayCamera {
    fn default() -> Self {
        Self::new()
    }
}

/// The frames of one recording, in time order.
pub fn recording(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}
