//! The Unix socket: one thread per client (bounded in total and per uid), peer credentials on
//! every connection, the protocol version first, a deadline on every frame and on the whole
//! connection, so one slow or greedy client never stalls another.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aloha::frame::{self, FrameError};
use aloha::protocol::{self, ErrorCode, Failure, Response};
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::socket::{getsockopt, sockopt};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::service::{Caller, Service};

mod admission;
mod client;
mod lifecycle;

pub use admission::{Admission, Admit};
use admission::{ConnectionSlot, locked};
use client::serve_client;
pub use lifecycle::{Ended, Lifecycle};
use lifecycle::{next_wait, poll_timeout};

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

/// Accept clients until `shutdown` is set (or, with `idle_exit`, until no client came for
/// that long). Each client gets its own thread, up to `max_connections` in all and
/// `max_connections_per_uid` per non-root uid; beyond that, clients are told to retry.
pub fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    limits: Limits,
    life: &Lifecycle<'_>,
) -> io::Result<Ended> {
    listener.set_nonblocking(true)?;
    let admission = Arc::new(Mutex::new(Admission::idle_from_now()));
    while !life.shutdown.load(Ordering::SeqCst) {
        let Some(timeout) = next_wait(&admission, life, &limits) else {
            return Ok(Ended::Idle);
        };
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(life.wake, PollFlags::POLLIN),
        ];
        match poll(&mut fds, poll_timeout(timeout)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        if fds[0]
            .revents()
            .is_none_or(|r| !r.contains(PollFlags::POLLIN))
        {
            continue;
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
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        let Some(caller) = peer(&stream) else {
            continue;
        };
        admit(stream, caller, &admission, &service, limits);
    }
    info!("shutting down");
    Ok(Ended::Shutdown)
}

/// A new connection from `caller`: served on a thread of its own, put in its uid's line, or
/// told to retry.
fn admit(
    mut stream: UnixStream,
    caller: Caller,
    admission: &Arc<Mutex<Admission>>,
    service: &Arc<Service>,
    limits: Limits,
) {
    let accepted = Instant::now();
    let mut admission_now = locked(admission);
    match admission_now.admit(caller.uid, &limits) {
        Admit::Serve => {}
        Admit::Wait => {
            admission_now.enqueue((stream, caller, accepted));
            return;
        }
        Admit::Refuse(why) => {
            drop(admission_now);
            warn!(
                caller_uid = caller.uid,
                caller_pid = caller.pid,
                "too many connections; asking a client to retry"
            );
            refuse(&mut stream, ErrorCode::Busy, why, &limits);
            return;
        }
    }
    drop(admission_now);
    let service = Arc::clone(service);
    // The stream goes with the closure; a second handle answers it if no thread starts.
    let answer_if_unserved = stream.try_clone().ok();
    let mut slot = ConnectionSlot {
        admission: Arc::clone(admission),
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
