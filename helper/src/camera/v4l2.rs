//! A V4L2 camera: open the node, negotiate a format, light the emitter, stream.
//!
//! **How panics are kept out of alohad.** The `v4l` crate panics in places alohad cannot
//! rule out: its stream's Drop on any STREAMOFF/REQBUFS error but ENODEV, `Format::from` on
//! enum values it does not know (inside `format()`/`set_format()`), `Capabilities::from` on
//! a card name that is not UTF-8, its handle's `close().unwrap()`. So:
//! - the stream is our own ([`super::stream`]): the crate's ioctl wrapper and generated
//!   kernel structs, none of its panicking Drops;
//! - the crate is used for what it does well — opening, capabilities, formats, sizes, S_FMT —
//!   and every one of those calls runs on the camera's own worker thread inside
//!   `catch_unwind`, so a panic becomes [`CameraError::Unavailable`] (or a
//!   [`SourceError::Unavailable`] once streaming); the thread boundary is a second wall;
//! - the worker also bounds what a poll deadline cannot: uvcvideo's control and
//!   stream-start transfers may block in the kernel for up to 5 s, but the caller only ever
//!   waits until its own deadline.
//!
//! The worker streams continuously and keeps the newest frame (a slow reader gets fresh
//! frames, as from a real camera, not a queue of old ones) and the brightness of every frame,
//! in order, for the emitter check. Dropping the [`V4l2`] stops it and waits briefly for it to
//! close the device.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aloha_face::{Frame, FrameSource, SourceError};
use tracing::{debug, warn};
use v4l::Device;

use super::emitter::{self, Control};
use super::negotiate::{Negotiated, negotiate};
use super::pixels::to_frame;
use super::stream::MmapStream;
use super::{CameraError, classify};

/// Capture buffers asked for: enough to ride out a slow wake-up, few enough to stay fresh.
const BUFFERS: u32 = 4;
/// How often the worker looks up from a silent camera to see whether it should stop.
const WORKER_TICK: Duration = Duration::from_millis(50);
/// How long dropping a camera waits for the worker to close the device.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Brightness values kept for the emitter check.
const MAX_MEANS: usize = 256;

/// What the worker reports once the stream runs.
#[derive(Debug)]
struct Started {
    negotiated: Negotiated,
    /// What became of the emitter control, in words (`None`: none applied).
    emitter: Option<String>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The newest frame not yet taken, or why the newest buffer was unreadable.
    latest: Option<Result<Frame<'static>, String>>,
    /// The stream has ended for good.
    ended: Option<SourceError>,
    /// Mean brightness (0-255) of each frame since the last [`V4l2::frame_means`] call.
    means: Vec<f32>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    slot: Mutex<Slot>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut Slot)) {
        f(&mut self.slot());
        self.changed.notify_all();
    }

    /// Wait until `ready` holds or `deadline` passes; the guard either way.
    fn wait_until(
        &self,
        deadline: Instant,
        mut ready: impl FnMut(&mut Slot) -> bool,
    ) -> MutexGuard<'_, Slot> {
        let mut slot = self.slot();
        while !ready(&mut slot) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            slot = self
                .changed
                .wait_timeout(slot, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        slot
    }
}

/// An open, streaming V4L2 camera.
#[derive(Debug)]
pub struct V4l2 {
    shared: Arc<Shared>,
    pub path: PathBuf,
    pub negotiated: Negotiated,
    /// What became of the emitter control at open, in words.
    pub emitter: Option<String>,
}

impl V4l2 {
    /// Open `path`, negotiate, apply `control` (if any) and start streaming, all within
    /// `start_timeout`.
    pub fn open(
        path: &Path,
        control: Option<Control>,
        start_timeout: Duration,
    ) -> Result<V4l2, CameraError> {
        let shared = Arc::new(Shared::default());
        let (started_tx, started_rx) = mpsc::channel();
        let worker_shared = Arc::clone(&shared);
        let worker_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("alohad-camera".into())
            .spawn(move || worker(&worker_path, control, &started_tx, &worker_shared))
            .map_err(|e| CameraError::Unavailable(format!("cannot start a camera thread: {e}")))?;
        let started = match started_rx.recv_timeout(start_timeout) {
            Ok(result) => result,
            Err(_) => {
                shared.stop.store(true, Ordering::Relaxed);
                return Err(CameraError::Unavailable(format!(
                    "{} did not start streaming within {} ms",
                    path.display(),
                    start_timeout.as_millis()
                )));
            }
        };
        let started = started.inspect_err(|_| shared.stop.store(true, Ordering::Relaxed))?;
        Ok(V4l2 {
            shared,
            path: path.to_path_buf(),
            negotiated: started.negotiated,
            emitter: started.emitter,
        })
    }

    /// The mean brightness of the next `count` frames, in order (fewer if `deadline` comes
    /// first). Frames taken by [`FrameSource::next_frame`] meanwhile still count.
    pub fn frame_means(&self, count: usize, deadline: Instant) -> Result<Vec<f32>, SourceError> {
        self.shared.slot().means.clear();
        let mut slot = self
            .shared
            .wait_until(deadline, |s| s.means.len() >= count || s.ended.is_some());
        if let Some(e) = &slot.ended {
            return Err(copy_error(e));
        }
        Ok(std::mem::take(&mut slot.means))
    }
}

impl FrameSource for V4l2 {
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame<'static>, SourceError> {
        let mut slot = self
            .shared
            .wait_until(deadline, |s| s.latest.is_some() || s.ended.is_some());
        match slot.latest.take() {
            Some(Ok(frame)) => Ok(frame),
            Some(Err(why)) => Err(SourceError::Bad(why)),
            None => Err(slot.ended.as_ref().map_or(SourceError::Timeout, copy_error)),
        }
    }
}

impl Drop for V4l2 {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let closed = self
            .shared
            .wait_until(Instant::now() + CLOSE_WAIT, |s| s.closed)
            .closed;
        if !closed {
            // Stuck in the kernel (a sick USB camera): it closes the device when it returns.
            warn!(device = %self.path.display(), "the camera thread has not closed the device yet");
        }
    }
}

fn copy_error(e: &SourceError) -> SourceError {
    match e {
        SourceError::Timeout => SourceError::Timeout,
        SourceError::Ended => SourceError::Ended,
        SourceError::Busy(s) => SourceError::Busy(s.clone()),
        SourceError::Unavailable(s) => SourceError::Unavailable(s.clone()),
        SourceError::Bad(s) => SourceError::Bad(s.clone()),
    }
}

/// The text of a caught panic.
pub(super) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "no message".into())
}

/// The camera thread: everything that touches the device, under `catch_unwind`.
fn worker(
    path: &Path,
    control: Option<Control>,
    started: &mpsc::Sender<Result<Started, CameraError>>,
    shared: &Shared,
) {
    let run = catch_unwind(AssertUnwindSafe(|| capture(path, control, started, shared)));
    if let Err(panic) = run {
        let why = format!(
            "the V4L2 library failed on {} ({}); use your PIN",
            path.display(),
            panic_text(&*panic)
        );
        warn!("{why}");
        let _ = started.send(Err(CameraError::Unavailable(why.clone())));
        shared.update(|s| {
            s.ended.get_or_insert(SourceError::Unavailable(why));
        });
    }
    shared.update(|s| s.closed = true);
}

fn capture(
    path: &Path,
    control: Option<Control>,
    started: &mpsc::Sender<Result<Started, CameraError>>,
    shared: &Shared,
) {
    let setup = (|| {
        let device = Device::with_path(path).map_err(|e| classify(&e, "open", path))?;
        let negotiated = negotiate(&device, path)?;
        let emitter = control.map(|c| emitter::apply(device.handle().fd(), &c));
        let stream = MmapStream::start(device.handle(), BUFFERS)
            .map_err(|e| classify(&e, "start streaming from", path))?;
        Ok((
            device,
            stream,
            Started {
                negotiated,
                emitter,
            },
        ))
    })();
    let (device, mut stream, negotiated) = match setup {
        Ok((device, stream, s)) => {
            let negotiated = s.negotiated;
            if started.send(Ok(s)).is_err() {
                return;
            }
            (device, stream, negotiated)
        }
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    debug!(device = %path.display(), format = %negotiated, "streaming");
    let (w, h) = (negotiated.width as usize, negotiated.height as usize);
    while !shared.stop.load(Ordering::Relaxed) {
        // The bytes are copied out and the buffer handed back to the driver before the
        // conversion: a slow conversion (a debug build, a busy machine) then neither starves
        // the driver of buffers nor reads one that a driver sharing its buffers with the
        // producer (v4l2loopback) is already writing the next frame into.
        let next = stream.next(WORKER_TICK, <[u8]>::to_vec).map(|bytes| {
            bytes.map(|bytes| {
                to_frame(
                    negotiated.format,
                    w,
                    h,
                    negotiated.bytesperline as usize,
                    &bytes,
                )
            })
        });
        match next {
            Ok(None) => {}
            Ok(Some(frame)) => shared.update(|s| {
                if let Ok(f) = &frame
                    && s.means.len() < MAX_MEANS
                {
                    s.means.push(emitter::mean_brightness(f));
                }
                s.latest = Some(frame);
            }),
            Err(e) => {
                let why = classify(&e, "capture from", path);
                debug!(device = %path.display(), error = %why, "the stream ended");
                shared.update(|s| s.ended = Some(why.into()));
                break;
            }
        }
    }
    // The stream before the device: buffers are unmapped and freed while the fd is open.
    drop(stream);
    drop(device);
}
