//! `face.camera = "replay:DIR"`: the image files in DIR, in name order, looping, delivered at
//! `face.replay_fps` as 8-bit infrared frames — a camera for the demo, the tests, and anyone
//! evaluating Aloha without the hardware.

use std::path::Path;
use std::time::{Duration, Instant};

use aloha_face::{Frame, FrameSource, RecordedFrames, SourceError};

use super::CameraError;

/// Recorded frames paced like a camera.
#[derive(Debug)]
pub struct Replay {
    frames: RecordedFrames,
    period: Duration,
    /// When the next frame is due.
    due: Instant,
}

impl Replay {
    pub fn open(dir: &Path, fps: f64) -> Result<Replay, CameraError> {
        let frames = RecordedFrames::from_dir(dir, true).map_err(|e| {
            CameraError::NotFound(format!(
                "the replay camera {} cannot be used: {e}",
                dir.display()
            ))
        })?;
        let period = Duration::try_from_secs_f64(1.0 / fps).map_err(|_| {
            CameraError::Unavailable(format!("face.replay_fps = {fps} is not a frame rate"))
        })?;
        Ok(Replay {
            frames,
            period,
            due: Instant::now(),
        })
    }
}

impl FrameSource for Replay {
    fn next_frame(&mut self, deadline: Instant) -> Result<Frame<'static>, SourceError> {
        if self.due > deadline {
            return Err(SourceError::Timeout);
        }
        let now = Instant::now();
        if self.due > now {
            std::thread::sleep(self.due - now);
        }
        // A slow reader is not made to catch up with a burst: a camera drops frames too.
        self.due = self.due.max(now) + self.period;
        let frame = self.frames.next_frame(deadline.max(Instant::now()))?;
        Ok(match frame.pixels() {
            aloha_face::frame::Pixels::Gray8(_) => frame,
            _ => Frame::gray8(frame.width(), frame.height(), frame.to_gray8().into_owned())
                .map_err(|e| SourceError::Bad(e.to_string()))?,
        })
    }
}
