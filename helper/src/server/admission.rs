//! Who holds connection slots and who waits in line for one: at most `max_connections` in
//! all and `max_connections_per_uid` per non-root uid, a waiting connection refused after one
//! I/O timeout, and a slot always handed on or given up, also when its thread panics.

use std::collections::{HashMap, VecDeque};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aloha::protocol::ErrorCode;

use super::{Limits, refuse};
use crate::service::Caller;

/// A connection waiting for one of its uid's slots, with when it was accepted.
pub(super) type Waiting = (UnixStream, Caller, Instant);

/// What to do with a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// A slot (and a thread) of its own.
    Serve,
    /// Its uid has all its slots busy: it waits in line and is served by one of them next.
    Wait,
    Refuse(String),
}

/// Who holds connection slots now, and who waits for one.
#[derive(Debug, Default)]
pub struct Admission {
    active: usize,
    /// When the last connection ended (`None` before the first one).
    idle_since: Option<Instant>,
    per_uid: HashMap<u32, usize>,
    waiting: HashMap<u32, VecDeque<Waiting>>,
}

impl Admission {
    /// Decide about a new connection from `uid`.
    /// A fresh admission, idle from now.
    pub(super) fn idle_from_now() -> Admission {
        Admission {
            idle_since: Some(Instant::now()),
            ..Admission::default()
        }
    }

    /// Since when no connection has been served (`None` while one is).
    pub(super) fn idle_since(&self) -> Option<Instant> {
        (self.active == 0).then_some(self.idle_since).flatten()
    }

    pub(super) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    pub fn admit(&mut self, uid: u32, limits: &Limits) -> Admit {
        let mine = self.per_uid.get(&uid).copied().unwrap_or(0);
        if uid != 0 && mine >= limits.max_connections_per_uid {
            let queued = self.waiting.get(&uid).map_or(0, VecDeque::len);
            if queued < limits.max_connections {
                return Admit::Wait;
            }
            return Admit::Refuse(format!(
                "uid {uid} already has {mine} connections to alohad open and {queued} waiting \
                 (the most one user may hold); close some and try again"
            ));
        }
        if self.active >= limits.max_connections {
            return Admit::Refuse("alohad is busy; try again in a moment".into());
        }
        self.active += 1;
        *self.per_uid.entry(uid).or_default() += 1;
        Admit::Serve
    }

    /// Put a connection in its uid's line (after [`Admit::Wait`]).
    pub(super) fn enqueue(&mut self, waiting: Waiting) {
        self.waiting
            .entry(waiting.1.uid)
            .or_default()
            .push_back(waiting);
    }

    /// Take out of line every connection that has waited `max_wait` or longer by `now`: the
    /// caller tells each to retry. Without this a uid whose slots stay busy (long face
    /// attempts) would hold its waiting connections, and their clients, indefinitely.
    pub(super) fn expire(&mut self, now: Instant, max_wait: Duration) -> Vec<Waiting> {
        let mut expired = Vec::new();
        self.waiting.retain(|_, queue| {
            // Oldest first: the line is in accept order.
            while queue
                .front()
                .is_some_and(|(_, _, accepted)| now.duration_since(*accepted) >= max_wait)
            {
                if let Some(w) = queue.pop_front() {
                    expired.push(w);
                }
            }
            !queue.is_empty()
        });
        expired
    }

    /// A slot of `uid` is done: hand it the next waiting connection, or give it up.
    fn next_or_release(&mut self, uid: u32) -> Option<Waiting> {
        if let Some(queue) = self.waiting.get_mut(&uid) {
            let next = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&uid);
            }
            if next.is_some() {
                return next;
            }
        }
        self.active = self.active.saturating_sub(1);
        if self.active == 0 {
            self.idle_since = Some(Instant::now());
        }
        if let Some(n) = self.per_uid.get_mut(&uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_uid.remove(&uid);
            }
        }
        None
    }
}

/// A slot of `uid` held by a client thread. [`ConnectionSlot::next`] hands on to the next waiting
/// connection or gives the slot up; if the thread ends any other way (a panic), dropping this
/// gives the slot up, and the connections waiting for it are told to retry rather than left
/// without a thread.
pub(super) struct ConnectionSlot {
    pub(super) admission: Arc<Mutex<Admission>>,
    pub(super) uid: u32,
    pub(super) limits: Limits,
    pub(super) released: bool,
}

impl ConnectionSlot {
    pub(super) fn next(&mut self) -> Option<Waiting> {
        let next = locked(&self.admission).next_or_release(self.uid);
        self.released = next.is_none();
        next
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if !self.released {
            refuse_waiting(&self.admission, self.uid, &self.limits);
        }
    }
}

/// Give up a slot of `uid` that can serve no one, telling each connection waiting for it to
/// retry (a connection dropped without a word looks like a crashed alohad).
fn refuse_waiting(admission: &Mutex<Admission>, uid: u32, limits: &Limits) {
    loop {
        // The lock is released before the reply is written.
        let next = locked(admission).next_or_release(uid);
        let Some((mut stream, _, _)) = next else {
            return;
        };
        refuse(
            &mut stream,
            ErrorCode::Busy,
            "alohad is busy; try again in a moment".into(),
            limits,
        );
    }
}

/// Nothing panics while holding it; a poisoned count is still the best we have.
pub(super) fn locked(a: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    a.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloha::frame::{self, MAX_FRAME_LEN};
    use aloha::protocol::{self, Failure, Response};

    fn limits() -> Limits {
        Limits {
            io_timeout: Duration::from_secs(5),
            max_connections: 6,
            max_connections_per_uid: 2,
            connection_lifetime: Duration::from_secs(60),
        }
    }

    fn waiting(uid: u32) -> Waiting {
        let (a, _b) = UnixStream::pair().unwrap();
        (a, Caller { uid, pid: 1 }, Instant::now())
    }

    #[test]
    fn one_uid_cannot_take_every_slot() {
        let l = limits();
        let mut a = Admission::default();
        assert_eq!(a.admit(1000, &l), Admit::Serve);
        assert_eq!(a.admit(1000, &l), Admit::Serve);
        // Its third waits for one of its own two slots, up to max_connections in line...
        for _ in 0..l.max_connections {
            assert_eq!(a.admit(1000, &l), Admit::Wait);
            a.enqueue(waiting(1000));
        }
        let Admit::Refuse(why) = a.admit(1000, &l) else {
            panic!()
        };
        assert!(why.contains("uid 1000 already has 2 connections"), "{why}");
        // ... while others still get in, root beyond the per-uid cap.
        assert_eq!(a.admit(1001, &l), Admit::Serve);
        for _ in 0..3 {
            assert_eq!(a.admit(0, &l), Admit::Serve);
        }
        // The total still binds everyone.
        assert!(matches!(a.admit(0, &l), Admit::Refuse(w) if w.contains("busy")));
        assert!(matches!(a.admit(1002, &l), Admit::Refuse(_)));
        // A finished slot of uid 1000 serves its line first, then is given up.
        for _ in 0..l.max_connections {
            assert!(a.next_or_release(1000).is_some());
        }
        assert!(a.next_or_release(1000).is_none());
        assert_eq!(a.admit(1002, &l), Admit::Serve);
        assert!(a.next_or_release(1001).is_none());
        assert_eq!(a.admit(1003, &l), Admit::Serve);
    }

    #[test]
    fn a_waiting_connection_waits_at_most_max_wait() {
        let l = limits();
        let mut a = Admission::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(a.admit(1000, &l), Admit::Serve);
        assert_eq!(a.admit(1000, &l), Admit::Serve);
        let (early, _p1) = UnixStream::pair().unwrap();
        let (late, _p2) = UnixStream::pair().unwrap();
        let (other, _p3) = UnixStream::pair().unwrap();
        a.enqueue((early, Caller { uid: 1000, pid: 1 }, at(0)));
        a.enqueue((late, Caller { uid: 1000, pid: 2 }, at(3000)));
        assert_eq!(a.admit(1001, &l), Admit::Serve);
        assert_eq!(a.admit(1001, &l), Admit::Serve);
        a.enqueue((other, Caller { uid: 1001, pid: 3 }, at(1000)));
        let wait = Duration::from_secs(5);
        assert!(a.expire(at(4999), wait).is_empty());
        let mut gone: Vec<i32> = a.expire(at(6000), wait).iter().map(|w| w.1.pid).collect();
        gone.sort();
        assert_eq!(gone, [1, 3], "the two that waited 5 s or more");
        // The one that came later still waits, and is next for uid 1000's slot; the slots
        // themselves are untouched.
        assert_eq!(a.next_or_release(1000).map(|w| w.1.pid), Some(2));
        assert!(a.next_or_release(1001).is_none());
        assert_eq!(a.active, 3);
    }

    fn refusal(peer: &mut UnixStream) -> Failure {
        let deadline = Instant::now() + Duration::from_secs(5);
        let bytes = frame::read_frame(peer, deadline, MAX_FRAME_LEN).unwrap();
        match protocol::decode::<Response>(&bytes).unwrap() {
            Response::Error(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_panicking_client_thread_gives_its_slot_up_and_its_line_an_answer() {
        let mut l = limits();
        l.max_connections_per_uid = 1;
        let admission = Arc::new(Mutex::new(Admission::default()));
        assert_eq!(locked(&admission).admit(1000, &l), Admit::Serve);
        assert_eq!(locked(&admission).admit(1000, &l), Admit::Wait);
        let (queued, mut peer) = UnixStream::pair().unwrap();
        locked(&admission).enqueue((queued, Caller { uid: 1000, pid: 1 }, Instant::now()));
        let slot = ConnectionSlot {
            admission: admission.clone(),
            uid: 1000,
            limits: l,
            released: false,
        };
        let r = std::thread::spawn(move || {
            let _slot = slot;
            panic!("a bug while serving");
        })
        .join();
        assert!(r.is_err());
        let f = refusal(&mut peer);
        assert_eq!(f.code, ErrorCode::Busy, "{}", f.message);
        // The slot is free again: uid 1000 is served, not queued.
        assert_eq!(locked(&admission).admit(1000, &l), Admit::Serve);
        assert_eq!(locked(&admission).active, 1);
    }

    #[test]
    fn a_slot_handed_on_normally_is_released_once() {
        let l = limits();
        let admission = Arc::new(Mutex::new(Admission::default()));
        assert_eq!(locked(&admission).admit(1000, &l), Admit::Serve);
        assert_eq!(locked(&admission).admit(1001, &l), Admit::Serve);
        let mut slot = ConnectionSlot {
            admission: admission.clone(),
            uid: 1000,
            limits: l,
            released: false,
        };
        assert!(slot.next().is_none());
        drop(slot);
        assert_eq!(locked(&admission).active, 1, "uid 1001's slot is untouched");
    }
}
