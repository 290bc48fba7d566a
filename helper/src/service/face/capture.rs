//! The capture loop every face operation runs: frames from the camera, each analysed, until
//! the operation has what it needs, the time is up, the camera fails, or the client is gone.
//! Every frame is waited for with a deadline, so a camera that stops delivering ends the loop
//! instead of hanging it.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use aloha::protocol::{FaceProgress, FrameVerdict};
use aloha_face::{Analysis, Frame, FrameSource, Reject, SourceError};

use crate::recognition::{Recognition, verdict_of};

/// How a capture loop ended.
#[derive(Debug)]
pub(super) enum Capture<T> {
    /// The operation had what it needed.
    Done(T),
    /// The time was up.
    TimedOut,
    /// The camera failed: busy, gone, or no frame within `face.frame_timeout_ms`.
    Camera(SourceError),
    /// The client stopped listening to progress reports.
    ClientGone,
}

/// What a frame did, as the operation sees it: go on (with a report for the person) or stop.
pub(super) type Flow<T> = ControlFlow<T, Report>;

/// A progress report's variable part.
#[derive(Debug, Clone, Copy)]
pub(super) struct Report {
    pub verdict: FrameVerdict,
    pub distance: Option<f32>,
    pub done: u32,
    pub wanted: u32,
}

/// The frame's verdict when the engine could not use it.
pub(super) fn rejected(analysis: &Result<Analysis, Reject>) -> Option<FrameVerdict> {
    analysis.as_ref().err().map(|r| verdict_of(r.kind))
}

/// Run the loop until `until`. `on_frame` sees every frame and its analysis; its reports go to
/// `progress` (which answers false once the client is gone).
pub(super) fn run<T>(
    camera: &mut dyn FrameSource,
    recognition: &dyn Recognition,
    until: Instant,
    frame_timeout: Duration,
    progress: &mut dyn FnMut(FaceProgress) -> bool,
    mut on_frame: impl FnMut(&Frame<'_>, &Result<Analysis, Reject>) -> Flow<T>,
) -> Capture<T> {
    let mut frames = 0u32;
    loop {
        let now = Instant::now();
        if now >= until {
            return Capture::TimedOut;
        }
        let deadline = until.min(now + frame_timeout);
        let frame = match camera.next_frame(deadline) {
            Ok(frame) => frame,
            // The attempt's own end, not the camera's fault.
            Err(SourceError::Timeout) if deadline == until => return Capture::TimedOut,
            Err(e) => return Capture::Camera(e),
        };
        frames = frames.saturating_add(1);
        let analysis = recognition.analyze(&frame);
        let report = match on_frame(&frame, &analysis) {
            ControlFlow::Break(value) => return Capture::Done(value),
            ControlFlow::Continue(report) => report,
        };
        let message = match report.verdict {
            FrameVerdict::NoFace | FrameVerdict::Good | FrameVerdict::Match => {
                report.verdict.hint().to_string()
            }
            _ => match &analysis {
                Err(reject) => format!("{} ({})", report.verdict.hint(), reject.reason),
                Ok(_) => report.verdict.hint().to_string(),
            },
        };
        let sent = progress(FaceProgress {
            frame: frames,
            verdict: report.verdict,
            distance: report.distance,
            done: report.done,
            wanted: report.wanted,
            message,
        });
        if !sent {
            return Capture::ClientGone;
        }
    }
}
