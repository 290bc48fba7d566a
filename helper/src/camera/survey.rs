//! What alohad tells about its camera: [`present`] for every status request (no camera is
//! opened), [`survey`] for `aloha camera` (every capture node, the pick and why, and — when
//! it may — a look at whether the IR emitter fires, which opens the camera for about half a
//! second).

use std::path::Path;
use std::time::Instant;

use aloha::config::{CameraChoice, EmitterChoice, FaceSettings};
use aloha::protocol::{CameraReport, EmitterReport};

use super::{Replay, control, emitter, open_pick, pick, select, start_timeout, wanted_device};

/// Whether a survey may open the camera to see the emitter fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitterLook {
    Look,
    /// Not this time, and why (shown in the report).
    Skip(&'static str),
}

/// The camera `face.camera` would open, or why none can be, without opening one: the nodes'
/// capabilities and formats are queried, nothing streams.
pub fn present(settings: &FaceSettings) -> Result<String, String> {
    match (settings.camera_choice(), wanted_device(settings)) {
        (CameraChoice::Replay(dir), _) => Replay::open(&dir, settings.replay_fps)
            .map(|_| format!("replay:{}", dir.display()))
            .map_err(|e| e.to_string()),
        (_, wanted) => pick(settings, wanted.flatten().as_deref())
            .1
            .map(|p| p.node.shown_path().display().to_string())
            .map_err(|e| e.to_string()),
    }
}

/// The camera survey for `aloha camera`: every capture node, the one `face.camera` picks and
/// why, and — for an infrared V4L2 camera — its emitter control and, if `look` allows,
/// whether the emitter fires.
pub fn survey(settings: &FaceSettings, state_dir: &Path, look: EmitterLook) -> CameraReport {
    let mut report = CameraReport {
        configured: settings.camera.clone(),
        nodes: Vec::new(),
        chosen: None,
        why: String::new(),
        usable: false,
        visible_light: false,
        emitter: None,
    };
    let Some(wanted) = wanted_device(settings) else {
        match present(settings) {
            Ok(chosen) => {
                report.chosen = Some(chosen);
                report.why = "face.camera names recorded frames".into();
                report.usable = true;
            }
            Err(why) => report.why = why,
        }
        return report;
    };
    let (nodes, pick) = pick(settings, wanted.as_deref());
    report.nodes = nodes
        .iter()
        .filter(|n| n.capture)
        .map(select::Node::report)
        .collect();
    match pick {
        Ok(pick) => {
            report.chosen = Some(pick.node.shown_path().display().to_string());
            report.usable = true;
            report.visible_light = pick.visible_light;
            if !pick.visible_light {
                report.emitter = Some(emitter_report(settings, state_dir, &pick, look));
            }
            report.why = pick.why;
        }
        Err(e) => report.why = e.to_string(),
    }
    report
}

fn emitter_report(
    settings: &FaceSettings,
    state_dir: &Path,
    pick: &select::Pick,
    look: EmitterLook,
) -> EmitterReport {
    let control = control(settings, state_dir, &pick.node);
    let mut words = Vec::new();
    match (&control, settings.emitter) {
        (_, EmitterChoice::Off) => {
            words.push("face.emitter = \"off\": alohad sets no camera control".to_string())
        }
        (None, EmitterChoice::Auto) => words.push("no control known for this camera".to_string()),
        (Some(_), EmitterChoice::Auto) => {}
    }
    let fires = match look {
        EmitterLook::Skip(why) => {
            words.push(format!("not checked: {why}"));
            None
        }
        EmitterLook::Look => look_at_emitter(settings, state_dir, pick, &mut words),
    };
    EmitterReport {
        control: control.map(|c| c.to_string()),
        fires,
        detail: words.join("; "),
    }
}

/// Open the camera for one look at 16 frames: does the emitter fire?
fn look_at_emitter(
    settings: &FaceSettings,
    state_dir: &Path,
    pick: &select::Pick,
    words: &mut Vec<String>,
) -> Option<bool> {
    let camera = match open_pick(settings, state_dir, pick) {
        Ok(camera) => camera,
        Err(e) => {
            words.push(format!("not checked: {e}"));
            return None;
        }
    };
    let deadline = Instant::now() + start_timeout(settings);
    let means = camera.frame_means(emitter::FIRES_FRAMES, deadline);
    if let Some(applied) = &camera.emitter {
        words.push(applied.clone());
    }
    match means {
        Ok(means) => {
            let fires = emitter::fires(&means);
            words.push(emitter::describe_fires(fires).to_string());
            fires
        }
        Err(e) => {
            words.push(format!("not checked: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay_settings(dir: &Path) -> FaceSettings {
        FaceSettings {
            camera: format!("replay:{}", dir.display()),
            ..FaceSettings::default()
        }
    }

    #[test]
    fn a_replay_is_present_and_surveyed_without_nodes_or_emitter() {
        let frames = tempfile::tempdir().unwrap();
        std::fs::write(frames.path().join("a.pgm"), b"P5 1 1 255 \x01").unwrap();
        let settings = replay_settings(frames.path());
        let named = format!("replay:{}", frames.path().display());
        assert_eq!(present(&settings), Ok(named.clone()));
        let report = survey(&settings, frames.path(), EmitterLook::Look);
        assert!(report.usable);
        assert_eq!(report.chosen, Some(named));
        assert!(report.nodes.is_empty() && report.emitter.is_none());
        // A recording has no controls to probe.
        let refused = super::super::probe(&settings, frames.path(), &mut |_| true).unwrap_err();
        assert!(refused.to_string().contains("recording"), "{refused}");
    }

    #[test]
    fn a_missing_replay_is_not_present() {
        let gone = tempfile::tempdir().unwrap().path().join("gone");
        let settings = replay_settings(&gone);
        let why = present(&settings).unwrap_err();
        assert!(why.contains("cannot be used"), "{why}");
        let report = survey(&settings, &gone, EmitterLook::Look);
        assert!(!report.usable && report.chosen.is_none());
        assert_eq!(report.why, why);
    }
}
