//! The Unix socket: one thread per client (bounded in total and per uid), peer credentials on
//! every connection, the protocol version first, a deadline on every frame and on the whole
//! connection, so one slow or greedy client never stalls another.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aloha::frame::{self, FrameError, MAX_FRAME_LEN};
use aloha::protocol::{self, ErrorCode, Failure, PROTOCOL_VERSION, Request, Response};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{getsockopt, sockopt};
use thiserror::Error;
use tracing::{debug, error, info, warn};

use crate::service::{Caller, Service};

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("another alohad is already listening on {0}")]
    InUse(String),
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: String },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: String, source: io::Error },
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub io_timeout: Duration,
    pub max_connections: usize,
    /// Most connections one non-root uid may hold at once (root, which runs sudo, su and the
    /// greeters, is bound only by `max_connections`).
    pub max_connections_per_uid: usize,
    /// Longest a connection may stay open, however busy it keeps itself.
    pub connection_lifetime: Duration,
}

/// A connection waiting for one of its uid's slots, with when it was accepted.
type Waiting = (UnixStream, Caller, Instant);

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
    per_uid: HashMap<u32, usize>,
    waiting: HashMap<u32, VecDeque<Waiting>>,
}

impl Admission {
    /// Decide about a new connection from `uid`.
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
    fn enqueue(&mut self, waiting: Waiting) {
        self.waiting
            .entry(waiting.1.uid)
            .or_default()
            .push_back(waiting);
    }

    /// Take out of line every connection that has waited `max_wait` or longer by `now`: the
    /// caller tells each to retry. Without this a uid whose slots stay busy (long face
    /// attempts) would hold its waiting connections, and their clients, indefinitely.
    fn expire(&mut self, now: Instant, max_wait: Duration) -> Vec<Waiting> {
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
struct ConnectionSlot {
    admission: Arc<Mutex<Admission>>,
    uid: u32,
    limits: Limits,
    released: bool,
}

impl ConnectionSlot {
    fn next(&mut self) -> Option<Waiting> {
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
fn locked(a: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    a.lock().unwrap_or_else(PoisonError::into_inner)
}

fn peer(stream: &UnixStream) -> Option<Caller> {
    match getsockopt(&stream.as_fd(), sockopt::PeerCredentials) {
        Ok(c) => Some(Caller {
            uid: c.uid(),
            pid: c.pid(),
        }),
        Err(e) => {
            warn!(error = %e, "no peer credentials; dropping the connection");
            None
        }
    }
}

/// Bind the socket (mode 0666: authorization is per request), replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let shown = path.display().to_string();
    let bind_err = |source| ServerError::Bind {
        path: shown.clone(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(bind_err)?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(shown));
            }
            fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => return Err(ServerError::NotASocket { path: shown }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(bind_err)?;
    Ok(listener)
}

fn send(stream: &mut UnixStream, response: &Response, deadline: Instant) -> Result<(), FrameError> {
    let bytes =
        protocol::encode(response).map_err(|e| FrameError::Io(io::Error::other(e.to_string())))?;
    frame::write_frame(stream, &bytes, deadline)
}

fn refuse(stream: &mut UnixStream, code: ErrorCode, message: String, limits: &Limits) {
    let _ = send(
        stream,
        &Response::Error(Failure::new(code, message)),
        Instant::now() + limits.io_timeout,
    );
}

/// Serve one client until it hangs up, misbehaves, times out or reaches its lifetime.
fn serve_client(
    mut stream: UnixStream,
    caller: Caller,
    accepted: Instant,
    service: &Service,
    limits: &Limits,
) {
    // The lifetime counts from accept(2), time spent waiting in line included.
    let end_of_life = accepted + limits.connection_lifetime;
    let mut greeted = false;
    loop {
        let deadline = (Instant::now() + limits.io_timeout).min(end_of_life);
        let bytes = match frame::read_frame(&mut stream, deadline, MAX_FRAME_LEN) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Empty)) => {
                warn!(caller_uid = caller.uid, caller_pid = caller.pid, error = %e, "bad frame");
                refuse(&mut stream, ErrorCode::BadRequest, e.to_string(), limits);
                return;
            }
            Err(e) => {
                debug!(caller_uid = caller.uid, error = %e, "connection ended");
                return;
            }
        };
        let request = match protocol::decode::<Request>(&bytes) {
            Ok(r) => r,
            Err(e) => {
                warn!(
                    caller_uid = caller.uid,
                    caller_pid = caller.pid,
                    "malformed request"
                );
                refuse(&mut stream, ErrorCode::BadRequest, e.to_string(), limits);
                return;
            }
        };
        drop(bytes);
        let response = match (greeted, request) {
            (false, Request::Hello { version, .. }) if version == PROTOCOL_VERSION => {
                greeted = true;
                Response::Hello {
                    version: PROTOCOL_VERSION,
                    daemon: format!("alohad {}", env!("CARGO_PKG_VERSION")),
                }
            }
            (false, Request::Hello { version, .. }) => {
                refuse(
                    &mut stream,
                    ErrorCode::VersionMismatch,
                    format!(
                        "alohad speaks protocol version {PROTOCOL_VERSION}, the client {version}: update Aloha so both match"
                    ),
                    limits,
                );
                return;
            }
            (false, _) => {
                refuse(
                    &mut stream,
                    ErrorCode::BadRequest,
                    "the first message must be hello".into(),
                    limits,
                );
                return;
            }
            (true, request) => {
                // Progress reports of long face operations; a client that stopped reading ends
                // the operation.
                let mut progress = |p| {
                    send(
                        &mut stream,
                        &Response::FaceProgress(p),
                        Instant::now() + limits.io_timeout,
                    )
                    .is_ok()
                };
                service.handle(&caller, request, &mut progress)
            }
        };
        if let Err(e) = send(&mut stream, &response, Instant::now() + limits.io_timeout) {
            debug!(caller_uid = caller.uid, error = %e, "could not send the reply");
            return;
        }
    }
}

/// Accept clients until `shutdown` is set. Each client gets its own thread, up to
/// `max_connections` in all and `max_connections_per_uid` per non-root uid; beyond that,
/// clients are told to retry.
pub fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    limits: Limits,
    shutdown: &AtomicBool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let admission = Arc::new(Mutex::new(Admission::default()));
    while !shutdown.load(Ordering::SeqCst) {
        // A connection waits in line at most one I/O timeout (checked at least every 250 ms).
        let expired = locked(&admission).expire(Instant::now(), limits.io_timeout);
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
                &limits,
            );
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(250u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                error!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let mut stream = stream;
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let Some(caller) = peer(&stream) else {
            continue;
        };
        let accepted = Instant::now();
        let mut admission_now = locked(&admission);
        match admission_now.admit(caller.uid, &limits) {
            Admit::Serve => {}
            Admit::Wait => {
                admission_now.enqueue((stream, caller, accepted));
                continue;
            }
            Admit::Refuse(why) => {
                drop(admission_now);
                warn!(
                    caller_uid = caller.uid,
                    caller_pid = caller.pid,
                    "too many connections; asking a client to retry"
                );
                refuse(&mut stream, ErrorCode::Busy, why, &limits);
                continue;
            }
        }
        drop(admission_now);
        let service = service.clone();
        // The stream goes with the closure; a second handle answers it if no thread starts.
        let answer_if_unserved = stream.try_clone().ok();
        let mut slot = ConnectionSlot {
            admission: admission.clone(),
            uid: caller.uid,
            limits,
            released: false,
        };
        let spawned = std::thread::Builder::new()
            .name("alohad-client".into())
            .spawn(move || {
                let mut next = Some((stream, caller, accepted));
                while let Some((stream, caller, accepted)) = next {
                    // One that waited past its lifetime has given up already.
                    if accepted.elapsed() < limits.connection_lifetime {
                        serve_client(stream, caller, accepted, &service, &limits);
                    }
                    next = slot.next();
                }
            });
        if let Err(e) = spawned {
            // The closure, and with it the slot, is dropped: its line was told to retry.
            error!(error = %e, "cannot start a client thread");
            if let Some(mut stream) = answer_if_unserved {
                refuse(
                    &mut stream,
                    ErrorCode::Busy,
                    "alohad is busy; try again in a moment".into(),
                    &limits,
                );
            }
        }
    }
    info!("shutting down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
