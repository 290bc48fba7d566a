//! The infrared emitter: the controls that light it (built-in quirks, or one recorded by
//! `aloha camera --probe`), applying one when the camera opens, and telling from the frames
//! whether it fires.
//!
//! Many laptop IR cameras stream dark frames (or none) until a UVC extension-unit control is
//! set, and the value does not survive a reboot, a resume or always even a close, so alohad
//! sets it on every open, before the stream starts, and leaves it set: the emitter only lights
//! while a stream runs. Detection looks for what an emitter in "alternate frame illumination"
//! mode does: frames that are alternately lit and unlit.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aloha_face::Frame;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::CameraError;
use super::uvc::{self, UvcFd, Xu};

/// A camera Aloha knows, and the control that lights its emitter.
#[derive(Debug, Clone, Copy)]
pub struct Quirk {
    /// USB vendor:product, lower-case hex.
    pub usb_id: &'static str,
    pub unit: u8,
    pub selector: u8,
    pub value: &'static [u8],
    /// Where it is found, for people.
    pub camera: &'static str,
}

/// Built-in quirks, keyed by USB id. A row needs a source that names the id; controls known
/// only as (unit, selector, value) are what `aloha camera --probe` tries instead.
pub const QUIRKS: &[Quirk] = &[
    // Chicony IR camera: vendor unit 14, selector 14, `02 19` on (`00 00` off).
    // Source: PetePriority/chicony-ir-toggle @ed296dd, main.c and
    // system/99-ir-led.rules.cmake (udev rule on 04f2:b67c). Not 04f2:b605 (ThinkPad X380
    // Yoga: ENOENT on 14/14, chicony-ir-toggle issue #7).
    Quirk {
        usb_id: "04f2:b67c",
        unit: 14,
        selector: 14,
        value: &[0x02, 0x19],
        camera: "Chicony IR camera (ThinkPad T490s, Yoga S740, X1 Yoga Gen 4)",
    },
    // Bison IR camera: the MSXU face-authentication control on unit 14 (unit 8 is an MSXU
    // without selector 6), `01 03 02 …` = one entry, endpoint 3, alternate-frame
    // illumination; no frames at all until it is set.
    // Source: EmixamPP/linux-enable-ir-emitter issue #301 (ThinkPad X13 Yoga Gen 4).
    Quirk {
        usb_id: "5986:118c",
        unit: 14,
        selector: uvc::MSXU_FACE_AUTH,
        value: &[0x01, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        camera: "Bison IR camera (ThinkPad X13 Yoga Gen 4)",
    },
];

/// Cameras on which the probe writes nothing, and why.
pub const NEVER_PROBE: &[(&str, &str)] = &[
    // Source: archledger/irlume issue #159: a blind SET_CUR sweep of vendor units left this
    // ThinkPad camera unable to enumerate.
    (
        "174f:11b4",
        "a SunplusIT camera that a control sweep has bricked before",
    ),
];

pub fn quirk_for(usb_id: &str) -> Option<&'static Quirk> {
    QUIRKS
        .iter()
        .find(|q| q.usb_id.eq_ignore_ascii_case(usb_id))
}

/// A control that lights an emitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub unit: u8,
    pub selector: u8,
    pub value: Vec<u8>,
    /// Where it comes from, in words: "built-in quirk 04f2:b67c", "recorded by `aloha
    /// camera --probe`".
    pub origin: String,
}

impl std::fmt::Display for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value: Vec<String> = self.value.iter().map(|b| format!("{b:02x}")).collect();
        write!(
            f,
            "unit {} selector {} = {} ({})",
            self.unit,
            self.selector,
            value.join(" "),
            self.origin
        )
    }
}

/// `<state_dir>/private/camera/emitter.json`: the control a probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The camera it was found on.
    pub usb_id: String,
    /// Its device name at the time, for people.
    pub device: String,
    pub unit: u8,
    pub selector: u8,
    pub value: Vec<u8>,
}

pub fn recorded_path(state_dir: &Path) -> PathBuf {
    state_dir.join("private/camera/emitter.json")
}

/// The recorded control, if there is a readable one (a broken file is logged and ignored:
/// the camera still opens).
pub fn load_recorded(state_dir: &Path) -> Option<Recorded> {
    let path = recorded_path(state_dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the recorded emitter control");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .inspect_err(|e| {
            warn!(path = %path.display(), error = %e, "ignoring a corrupt emitter record; \
                  `aloha camera --probe` writes a new one");
        })
        .ok()
}

/// Record a control for the next opens (root-only directory, atomic write).
pub fn save_recorded(state_dir: &Path, recorded: &Recorded) -> Result<(), CameraError> {
    let path = recorded_path(state_dir);
    let fail =
        |e: String| CameraError::Unavailable(format!("cannot record the emitter control: {e}"));
    if let Some(dir) = path.parent() {
        crate::store::ensure_dir(dir, 0o700).map_err(|e| fail(e.to_string()))?;
    }
    let json = serde_json::to_vec_pretty(recorded).map_err(|e| fail(e.to_string()))?;
    crate::store::write_atomic(&path, &json, 0o600).map_err(|e| fail(e.to_string()))
}

/// The control `face.emitter = "auto"` applies to the camera with `usb_id`: the recorded
/// one for that camera first, else a built-in quirk.
pub fn control_for(state_dir: &Path, usb_id: Option<&str>) -> Option<Control> {
    let usb_id = usb_id?;
    if let Some(r) = load_recorded(state_dir).filter(|r| r.usb_id.eq_ignore_ascii_case(usb_id)) {
        return Some(Control {
            unit: r.unit,
            selector: r.selector,
            value: r.value,
            origin: "recorded by `aloha camera --probe`".into(),
        });
    }
    quirk_for(usb_id).map(|q| Control {
        unit: q.unit,
        selector: q.selector,
        value: q.value.to_vec(),
        origin: format!("built-in quirk {} ({})", q.usb_id, q.camera),
    })
}

/// Set `control` through the capture node's fd; what happened, in words.
pub fn apply(fd: std::os::fd::RawFd, control: &Control) -> String {
    match apply_with(&mut UvcFd(fd), control) {
        Ok(()) => {
            info!(%control, "emitter control set");
            format!("set {control}")
        }
        Err(e) => {
            warn!(%control, error = %e, "the emitter control could not be set");
            format!("could not set {control}: {e}")
        }
    }
}

/// Only a control whose length matches the value is written.
pub fn apply_with(xu: &mut dyn Xu, control: &Control) -> Result<(), String> {
    let len = uvc::get_len(xu, control.unit, control.selector)
        .map_err(|e| format!("the camera has no such control ({e})"))?;
    if len != control.value.len() {
        return Err(format!(
            "the control is {len} bytes long, the value {}; not written",
            control.value.len()
        ));
    }
    uvc::set_cur(xu, control.unit, control.selector, &control.value).map_err(|e| e.to_string())
}

/// Frames wanted for a fires/does-not-fire decision (about half a second at 30 fps).
pub const FIRES_FRAMES: usize = 16;
/// Frames left out at the start: exposure is still settling.
const SETTLING_FRAMES: usize = 2;
/// Lit and unlit frames differ by at least this much (0-255 scale) and by a quarter of the
/// lit level.
const MIN_STEP: f32 = 8.0;

/// Mean brightness of a frame, 0-255, from every fourth pixel (plenty for a mean).
pub fn mean_brightness(frame: &Frame<'_>) -> f32 {
    let gray = frame.to_gray8();
    let (sum, n) = gray
        .iter()
        .step_by(4)
        .fold((0u64, 0u64), |(s, n), &v| (s + u64::from(v), n + 1));
    if n == 0 { 0.0 } else { sum as f32 / n as f32 }
}

/// Whether frames with these mean brightnesses (in order) were alternately lit and unlit:
/// two clearly separate brightness levels, each in at least a quarter of the frames, taking
/// turns (a steady picture, a slow change of exposure or one bright moment is not that).
/// `None`: too few frames to tell.
pub fn fires(means: &[f32]) -> Option<bool> {
    let m = means.get(SETTLING_FRAMES..)?;
    if m.len() < FIRES_FRAMES - SETTLING_FRAMES {
        return None;
    }
    let lo = m.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if hi - lo < MIN_STEP || hi - lo < hi / 4.0 {
        return Some(false);
    }
    let mid = (lo + hi) / 2.0;
    let lit: Vec<bool> = m.iter().map(|&v| v > mid).collect();
    let lit_count = lit.iter().filter(|&&l| l).count();
    let quarter = m.len() / 4;
    let turns = lit.windows(2).filter(|w| w[0] != w[1]).count();
    Some(lit_count >= quarter && m.len() - lit_count >= quarter && turns >= m.len() / 3)
}

/// [`fires`] in words, for the survey and the probe.
pub fn describe_fires(fires: Option<bool>) -> &'static str {
    match fires {
        Some(true) => "the emitter fires: lit and unlit frames alternate",
        Some(false) => {
            "no lit/unlit alternation seen: the emitter is off, or lit steadily \
             (`aloha camera --probe` tries the known controls)"
        }
        None => "too few frames to tell whether the emitter fires",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::uvc::tests::FakeXu;

    #[test]
    fn quirks_are_found_by_usb_id_only() {
        let q = quirk_for("04F2:B67C").unwrap();
        assert_eq!((q.unit, q.selector, q.value), (14, 14, &[0x02, 0x19][..]));
        assert_eq!(quirk_for("5986:118c").unwrap().value.len(), 9);
        assert!(quirk_for("04f2:b605").is_none());
        assert!(quirk_for("").is_none());
        for q in QUIRKS {
            assert!(!NEVER_PROBE.iter().any(|(id, _)| *id == q.usb_id));
        }
    }

    #[test]
    fn recorded_control_wins_over_the_quirk_and_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        // As the store makes it.
        fs::create_dir(dir.path().join("private")).unwrap();
        let quirk = control_for(dir.path(), Some("04f2:b67c")).unwrap();
        assert!(quirk.origin.starts_with("built-in quirk 04f2:b67c"));
        assert!(control_for(dir.path(), None).is_none());
        assert!(control_for(dir.path(), Some("1234:5678")).is_none());
        let rec = Recorded {
            usb_id: "04f2:b67c".into(),
            device: "/dev/v4l/by-id/usb-x-video-index0".into(),
            unit: 10,
            selector: 6,
            value: vec![1, 3, 2, 0, 0, 0, 0, 0, 0],
        };
        save_recorded(dir.path(), &rec).unwrap();
        assert_eq!(load_recorded(dir.path()), Some(rec));
        let c = control_for(dir.path(), Some("04f2:b67c")).unwrap();
        assert_eq!((c.unit, c.selector), (10, 6));
        assert!(c.to_string().contains("01 03 02"));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&recorded_path(dir.path())), 0o600);
        assert_eq!(mode(recorded_path(dir.path()).parent().unwrap()), 0o700);
        // Another camera's record does not apply.
        assert!(
            control_for(dir.path(), Some("5986:118c"))
                .unwrap()
                .origin
                .starts_with("built-in")
        );
        // A corrupt record is ignored, not fatal.
        fs::write(recorded_path(dir.path()), b"{").unwrap();
        assert!(load_recorded(dir.path()).is_none());
    }

    #[test]
    fn apply_writes_only_a_value_of_the_controls_length() {
        let mut xu = FakeXu::default();
        xu.controls.insert((14, 14), (vec![0, 0], true));
        let c = |value: Vec<u8>| Control {
            unit: 14,
            selector: 14,
            value,
            origin: "test".into(),
        };
        assert!(apply_with(&mut xu, &c(vec![2, 0x19, 0])).is_err());
        assert!(xu.writes.is_empty());
        apply_with(&mut xu, &c(vec![2, 0x19])).unwrap();
        assert_eq!(xu.writes, vec![(14, 14, vec![2, 0x19])]);
        let mut missing = c(vec![2, 0x19]);
        missing.unit = 7;
        assert!(apply_with(&mut xu, &missing).is_err());
    }

    fn pattern(levels: &[f32], n: usize) -> Vec<f32> {
        (0..n).map(|i| levels[i % levels.len()]).collect()
    }

    #[test]
    fn fires_sees_alternation_not_steady_light() {
        // Alternate-frame illumination, also one lit frame in three.
        assert_eq!(fires(&pattern(&[120.0, 30.0], 16)), Some(true));
        assert_eq!(fires(&pattern(&[120.0, 121.0, 28.0], 18)), Some(true));
        // Steady: dark, lit, or noisy around one level.
        assert_eq!(fires(&pattern(&[2.0], 16)), Some(false));
        assert_eq!(fires(&pattern(&[140.0], 16)), Some(false));
        assert_eq!(fires(&pattern(&[100.0, 104.0, 98.0], 16)), Some(false));
        // Exposure settling then steady: one change, not alternation.
        let mut ramp: Vec<f32> = (0..8).map(|i| i as f32 * 15.0).collect();
        ramp.extend([120.0; 8]);
        assert_eq!(fires(&ramp), Some(false));
        // A single bright frame.
        let mut flash = vec![20.0; 16];
        flash[9] = 200.0;
        assert_eq!(fires(&flash), Some(false));
        // The first frames are ignored; too few frames cannot tell.
        assert_eq!(fires(&pattern(&[120.0, 30.0], 8)), None);
        assert_eq!(fires(&[]), None);
    }

    #[test]
    fn mean_brightness_of_frames() {
        let f = Frame::gray8(4, 2, vec![10u8; 8]).unwrap();
        assert_eq!(mean_brightness(&f), 10.0);
        let f = Frame::gray16(2, 2, 10, vec![1023u16; 4]).unwrap();
        assert_eq!(mean_brightness(&f), 255.0);
    }
}
