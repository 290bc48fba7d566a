//! How the accept loop sleeps and ends: refusing connections that waited in line too long,
//! the idle exit under socket activation, and a poll(2) without a timeout while idle.

use std::os::fd::BorrowedFd;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use aloha::protocol::ErrorCode;
use nix::poll::PollTimeout;
use tracing::{debug, info};

use super::admission::{Admission, locked};
use super::{Limits, refuse};

/// How the accept loop ends and sleeps.
#[derive(Debug)]
pub struct Lifecycle<'a> {
    /// Set (by a signal handler) to stop; `wake` is written to at the same time.
    pub shutdown: &'a AtomicBool,
    /// Readable when `shutdown` was set: the loop sleeps in poll(2) without a timeout while
    /// nothing waits, so an idle alohad takes no CPU, and a signal taken by any thread
    /// still wakes it.
    pub wake: BorrowedFd<'a>,
    /// Return after this long without a client (socket activation: systemd starts alohad
    /// again on the next connection, which waits in the socket's queue meanwhile).
    pub idle_exit: Option<Duration>,
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Shutdown,
    Idle,
}

/// Before the loop sleeps: refuse the connections that waited in line past one I/O timeout,
/// and say how long to sleep — `None` when the idle period has run out.
pub(super) fn next_wait(
    admission: &Mutex<Admission>,
    life: &Lifecycle<'_>,
    limits: &Limits,
) -> Option<Duration> {
    let (expired, waiting, idle_since) = {
        let mut a = locked(admission);
        let expired = a.expire(Instant::now(), limits.io_timeout);
        (expired, a.has_waiting(), a.idle_since())
    };
    for (mut stream, caller, accepted) in expired {
        debug!(
            caller_uid = caller.uid,
            waited_ms = u64::try_from(accepted.elapsed().as_millis()).unwrap_or(u64::MAX),
            "a waiting connection timed out"
        );
        refuse(
            &mut stream,
            ErrorCode::Busy,
            format!(
                "uid {}'s other connections to alohad stayed busy for {} s; try again in a moment",
                caller.uid,
                limits.io_timeout.as_secs()
            ),
            limits,
        );
    }
    let idle_left = match (life.idle_exit, idle_since) {
        (Some(limit), Some(since)) => {
            let left = limit.saturating_sub(since.elapsed());
            if left.is_zero() {
                info!(
                    idle_s = limit.as_secs(),
                    "no client for the idle period; exiting until the next one"
                );
                return None;
            }
            Some(left)
        }
        // Busy: look again one idle period from now (a client ending wakes nothing).
        (Some(limit), None) => Some(limit),
        (None, _) => None,
    };
    // The line is checked every LINE_CHECK while someone waits in it.
    Some(match (waiting, idle_left) {
        (true, left) => left.map_or(LINE_CHECK, |l| l.min(LINE_CHECK)),
        (false, Some(left)) => left,
        (false, None) => Duration::MAX,
    })
}

/// How often the line of waiting connections is checked for ones past their deadline.
const LINE_CHECK: Duration = Duration::from_millis(250);

/// `d` for poll(2): whole milliseconds rounded up (so a deadline is not missed by a hair and
/// spun on), none for `Duration::MAX`.
pub(super) fn poll_timeout(d: Duration) -> PollTimeout {
    if d == Duration::MAX {
        return PollTimeout::NONE;
    }
    let ms = d.as_micros().div_ceil(1000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}
