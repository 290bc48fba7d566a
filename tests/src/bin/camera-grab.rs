//! Captures through alohad's own camera code (`SystemCameras::open` and `next_frame`, what
//! alohad's face enrolment and sign-in call), for the camera guest test: built on the host,
//! run in the guest.
//!
//! `camera-grab [--allow-visible] CAMERA COUNT OUTDIR` opens `face.camera = CAMERA` (with
//! `face.allow_visible_camera` on), takes COUNT frames and saves their samples to
//! `OUTDIR/got-K.raw` (8-bit, or 16-bit little-endian).
//! `camera-grab [--allow-visible] CAMERA until-error SECONDS` takes frames until the camera
//! fails (or SECONDS pass) and says how.
//!
//! Lines on stdout: `opened DESCRIPTION in MS ms` (`opened colour …` for a colour camera),
//! `frame K WxH BITS-bit in MS ms`, and at the end `error KIND: MESSAGE (after MS ms)` or
//! `done N frames in MS ms, F.F frames/s (closed in MS ms)` (the rate from the first frame
//! to the last). KIND is the variant: busy, unavailable, not-found, visible-only, timeout,
//! bad, ended. Exit status 0 done, 2 refused; a panic would be 101.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aloha::config::FaceSettings;
use aloha_face::frame::Pixels;
use aloha_face::{FrameSource, SourceError};
use aloha_helper::camera::{CameraError, Cameras, SystemCameras};

fn ms(since: Instant) -> u128 {
    since.elapsed().as_millis()
}

fn source_kind(e: &SourceError) -> &'static str {
    match e {
        SourceError::Timeout => "timeout",
        SourceError::Ended => "ended",
        SourceError::Busy(_) => "busy",
        SourceError::Unavailable(_) => "unavailable",
        SourceError::Bad(_) => "bad",
    }
}

fn run(args: &[String]) -> Result<(), (String, Instant)> {
    let started = Instant::now();
    let (allow_visible, args) = match args {
        [flag, rest @ ..] if flag == "--allow-visible" => (true, rest),
        rest => (false, rest),
    };
    let (camera_name, mode) = match args {
        [c, m, ..] => (c, m.as_str()),
        _ => {
            return Err((
                "usage: camera-grab [--allow-visible] CAMERA COUNT OUTDIR | CAMERA until-error \
                 SECONDS"
                    .into(),
                started,
            ));
        }
    };
    let settings = FaceSettings {
        camera: camera_name.clone(),
        allow_visible_camera: allow_visible,
        ..FaceSettings::default()
    };
    let cameras = SystemCameras {
        settings,
        // No recorded emitter control: a state directory that does not exist.
        state_dir: std::env::temp_dir().join("camera-grab-state"),
    };
    let mut cam = cameras.open().map_err(|e| {
        let kind = match e {
            CameraError::Busy(_) => "busy",
            CameraError::Unavailable(_) => "unavailable",
            CameraError::NotFound(_) => "not-found",
            CameraError::VisibleOnly(_) => "visible-only",
        };
        (format!("{kind}: {e}"), started)
    })?;
    let colour = if cam.visible_light { "colour " } else { "" };
    println!("opened {colour}{} in {} ms", cam.description, ms(started));
    let frame_timeout = Duration::from_millis(cameras.settings.frame_timeout_ms);
    let (count, outdir, until) = match (mode, args.get(2)) {
        ("until-error", Some(s)) => {
            let secs: u64 = s
                .parse()
                .map_err(|_| (format!("seconds: {s:?}"), started))?;
            (usize::MAX, None, Some(started + Duration::from_secs(secs)))
        }
        (n, Some(dir)) => {
            let n = n.parse().map_err(|_| (format!("count: {n:?}"), started))?;
            (n, Some(PathBuf::from(dir)), None)
        }
        _ => return Err(("missing OUTDIR or SECONDS".into(), started)),
    };
    let mut taken = 0;
    let mut first: Option<Instant> = None;
    while taken < count {
        if until.is_some_and(|u| Instant::now() > u) {
            break;
        }
        let asked = Instant::now();
        let frame = cam
            .next_frame(asked + frame_timeout)
            .map_err(|e| (format!("{}: {e}", source_kind(&e)), started))?;
        let (bits, bytes): (u8, Vec<u8>) = match frame.pixels() {
            Pixels::Gray8(d) => (8, d.to_vec()),
            Pixels::Gray16 { data, bits } => {
                (*bits, data.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        };
        first.get_or_insert_with(Instant::now);
        println!(
            "frame {taken} {}x{} {bits}-bit in {} ms",
            frame.width(),
            frame.height(),
            ms(asked)
        );
        if let Some(dir) = &outdir {
            std::fs::write(dir.join(format!("got-{taken}.raw")), bytes)
                .map_err(|e| (e.to_string(), started))?;
        }
        taken += 1;
    }
    let rate = first.map_or(0.0, |t| {
        taken.saturating_sub(1) as f64 / t.elapsed().as_secs_f64().max(1e-3)
    });
    let closing = Instant::now();
    drop(cam);
    println!(
        "done {taken} frames in {} ms, {rate:.1} frames/s (closed in {} ms)",
        ms(started),
        ms(closing)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((e, started)) => {
            println!("error {e} (after {} ms)", ms(started));
            ExitCode::from(2)
        }
    }
}
