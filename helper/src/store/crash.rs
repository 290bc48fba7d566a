//! Crash points: every step of a state write (create the temp file, write it, fsync it, put it
//! in place, fsync the directory; remove a file, fsync its directory) calls [`point`] first.
//! In the daemon it does nothing. Under test, [`arm`] makes the n-th step of this thread
//! unwind as a kill -9 would stop it — that step and everything after it never happen — so
//! the service tests can restart alohad from what is on disk after each step; [`arm_error`]
//! makes it fail as a full disk or a read-only file system would (`service::tests::crash`).

#[cfg(test)]
use std::cell::Cell;

#[cfg(test)]
thread_local! {
    /// Steps taken since [`arm`], the step at which to stop, and how: `None` unwinds (a
    /// crash), `Some(errno)` fails the step with that error.
    static PLAN: Cell<(usize, Option<usize>, Option<i32>)> = const { Cell::new((0, None, None)) };
}

/// What a crash point unwinds with.
#[cfg(test)]
#[derive(Debug)]
pub struct Crashed(pub &'static str);

/// Stop at step `at` (0-based) of this thread from now on (`None`: only count).
#[cfg(test)]
pub fn arm(at: Option<usize>) {
    PLAN.with(|p| p.set((0, at, None)));
}

/// Fail step `at` of this thread with `errno` (ENOSPC, EROFS) instead of crashing there.
#[cfg(test)]
pub fn arm_error(at: usize, errno: i32) {
    PLAN.with(|p| p.set((0, Some(at), Some(errno))));
}

/// Steps taken since [`arm`].
#[cfg(test)]
pub fn steps() -> usize {
    PLAN.with(|p| p.get().0)
}

/// One step of a state write is about to happen.
#[inline]
pub(super) fn point(_what: &'static str) -> std::io::Result<()> {
    #[cfg(test)]
    return PLAN.with(|p| {
        let (seen, at, errno) = p.get();
        p.set((seen + 1, at, errno));
        if at == Some(seen) {
            p.set((seen + 1, None, None));
            match errno {
                Some(e) => return Err(std::io::Error::from_raw_os_error(e)),
                None => std::panic::panic_any(Crashed(_what)),
            }
        }
        Ok(())
    });
    #[cfg(not(test))]
    Ok(())
}
