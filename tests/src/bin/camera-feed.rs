//! Plays image files into a v4l2loopback device as a camera would deliver them, for the
//! camera guest test (`tests/tests/camera_guest.rs`): built on the host, run in the guest.
//!
//! `camera-feed DEV FOURCC FPS OUTDIR [--alternate] IMAGE...` decodes the images (8-bit grey,
//! all the same size), turns each into one raw frame in FOURCC — `GREY` as is, `Y16` as the
//! sample << 8, little-endian, `YUYV` (a colour camera) as that luma with neutral chroma — and
//! saves to `OUTDIR/sent-K.raw` the samples a capture of frame K must give: the raw frame for
//! `GREY` and `Y16`, the luma for `YUYV`. With `--alternate` a dimmed copy (a quarter of the
//! brightness) follows each frame, as an IR emitter lighting every other frame does. It then sets the device's OUTPUT format (`V4L2_FIELD_NONE`,
//! `bytesperline` = width × bytes a pixel), writes `OUTDIR/ready`, and `write()`s the frames
//! in turn at FPS until killed, dropping the frames it is too late for as a camera does.

use std::fs::File;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aloha_face::Frame;
use v4l::format::FieldOrder;
use v4l::video::Output;
use v4l::{Device, Format, FourCC};

/// The raw frame to write, and the samples a capture of it must give.
fn raw(gray: &[u8], fourcc: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let frame: Vec<u8> = match fourcc {
        "GREY" => gray.to_vec(),
        "Y16" => gray
            .iter()
            .flat_map(|&v| (u16::from(v) << 8).to_le_bytes())
            .collect(),
        "YUYV" => return Ok((gray.iter().flat_map(|&y| [y, 128]).collect(), gray.to_vec())),
        other => return Err(format!("unsupported fourcc {other:?} (GREY, Y16, YUYV)")),
    };
    Ok((frame.clone(), frame))
}

fn run(args: &[String]) -> Result<(), String> {
    let [dev, fourcc, fps, outdir, rest @ ..] = args else {
        return Err("usage: camera-feed DEV FOURCC FPS OUTDIR [--alternate] IMAGE...".into());
    };
    let fps: f64 = fps.parse().map_err(|_| format!("fps: {fps:?}"))?;
    let (alternate, images) = match rest {
        [flag, images @ ..] if flag == "--alternate" => (true, images),
        images => (false, images),
    };
    let outdir = PathBuf::from(outdir);
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    let mut size = None;
    for image in images {
        let frame = Frame::load(Path::new(image)).map_err(|e| e.to_string())?;
        let (w, h) = (frame.width(), frame.height());
        if size.is_some_and(|s| s != (w, h)) {
            return Err(format!("{image} is {w}x{h}, the others are not"));
        }
        size = Some((w, h));
        let gray = frame.to_gray8();
        let mut versions = vec![gray.to_vec()];
        if alternate {
            versions.push(gray.iter().map(|v| v / 4).collect());
        }
        for samples in versions {
            let (f, e) = raw(&samples, fourcc)?;
            frames.push(f);
            expected.push(e);
        }
    }
    let Some((w, h)) = size else {
        return Err("no images given".into());
    };
    for (k, e) in expected.iter().enumerate() {
        std::fs::write(outdir.join(format!("sent-{k}.raw")), e).map_err(|e| e.to_string())?;
    }
    let device = Device::with_path(dev).map_err(|e| format!("open {dev}: {e}"))?;
    let mut code = [b' '; 4];
    code[..fourcc.len()].copy_from_slice(fourcc.as_bytes());
    let mut format = Format::new(w as u32, h as u32, FourCC::new(&code));
    format.field_order = FieldOrder::Progressive;
    format.stride = (frames[0].len() / h) as u32;
    format.size = frames[0].len() as u32;
    Output::set_format(&device, &format).map_err(|e| format!("VIDIOC_S_FMT: {e}"))?;
    // SAFETY: the fd belongs to `device`, which stays open until this function returns; the
    // duplicate made from it is closed independently.
    let fd = unsafe { BorrowedFd::borrow_raw(device.handle().fd()) };
    let mut out = File::from(fd.try_clone_to_owned().map_err(|e| e.to_string())?);
    let period = Duration::from_secs_f64(1.0 / fps);
    let mut due = Instant::now();
    for (n, frame) in frames.iter().cycle().enumerate() {
        out.write_all(frame)
            .map_err(|e| format!("write a frame to {dev}: {e}"))?;
        if n == 0 {
            std::fs::write(outdir.join("ready"), b"").map_err(|e| e.to_string())?;
        }
        // A sensor's clock: a late frame takes its slot's place and the slots missed are
        // dropped, never made up in a burst. A burst (after the guest stalled this process)
        // wrote round v4l2loopback's ring while a reader was still copying a buffer out of
        // it, and the reader got a torn frame.
        due += period;
        let now = Instant::now();
        if due < now {
            due = now;
        }
        std::thread::sleep(due.saturating_duration_since(now));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camera-feed: {e}");
            ExitCode::FAILURE
        }
    }
}
