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

/// How the loop paces itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    /// The most to wait for one frame before the camera counts as not delivering.
    pub frame_timeout: Duration,
    /// Frames that arrive sooner than this after the last analysed one are dropped.
    pub interval: Duration,
}

/// Run the loop until `until`. `on_frame` sees every analysed frame and its analysis; its
/// reports go to `progress` (which answers false once the client is gone).
pub(super) fn run<T>(
    camera: &mut dyn FrameSource,
    recognition: &dyn Recognition,
    until: Instant,
    pace: Pace,
    progress: &mut dyn FnMut(FaceProgress) -> bool,
    mut on_frame: impl FnMut(&Frame<'_>, &Result<Analysis, Reject>) -> Flow<T>,
) -> Capture<T> {
    let frame_timeout = pace.frame_timeout;
    let mut frames = 0u32;
    let mut last: Option<Instant> = None;
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
        let arrived = Instant::now();
        if last.is_some_and(|t| arrived.duration_since(t) < pace.interval) {
            continue;
        }
        last = Some(arrived);
        frames = frames.saturating_add(1);
        let analysis = recognition.analyze(&frame);
        let report = match on_frame(&frame, &analysis) {
            ControlFlow::Break(value) => return Capture::Done(value),
            ControlFlow::Continue(report) => report,
        };
        // The hint says what to do; the engine's own reason (numbers, limits) goes to the
        // log at debug level, not to the person.
        if let Err(reject) = &analysis {
            tracing::debug!(frame = frames, reason = %reject.reason, "frame not usable");
        }
        let message = report.verdict.hint().to_string();
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
