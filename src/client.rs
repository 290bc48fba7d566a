//! A synchronous alohad client with a deadline on every step, for the CLI and the PAM module
//! (which must not pull an async runtime into sudo or gdm).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, UnixAddr, connect, getsockopt, socket, sockopt,
};
use thiserror::Error;

use crate::frame::{self, FrameError, MAX_FRAME_LEN};
use crate::protocol::{self, FaceProgress, Failure, PROTOCOL_VERSION, Request, Response};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("alohad is not reachable at {path}: {reason}")]
    Unreachable { path: PathBuf, reason: String },
    #[error("the process listening at {path} runs as uid {uid}, not root: it is not alohad")]
    NotRoot { path: PathBuf, uid: u32 },
    #[error(
        "alohad speaks protocol version {theirs}, this client speaks {ours}: update Aloha so both match"
    )]
    VersionMismatch { ours: u32, theirs: u32 },
    #[error("talking to alohad failed: {0}")]
    Frame(#[from] FrameError),
    #[error("alohad sent a malformed reply: {0}")]
    Malformed(String),
    #[error("{}", .0.message)]
    Refused(Failure),
}

#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    bound: Bound,
}

/// How long the client waits for alohad.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Each step (connect, every reply) gets this long.
    EachStep(Duration),
    /// Every step ends by this instant: one bound on a whole conversation (pam_aloha).
    Until(Instant),
}

impl Bound {
    fn deadline(self) -> Instant {
        match self {
            Bound::EachStep(t) => Instant::now() + t,
            Bound::Until(d) => d,
        }
    }
}

/// Connect without blocking past `deadline` (a full listen backlog makes connect(2) wait).
fn connect_socket(path: &Path, deadline: Instant) -> Result<UnixStream, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        path: path.into(),
        reason,
    };
    let addr = UnixAddr::new(path).map_err(|e| unreachable(e.to_string()))?;
    loop {
        let fd: OwnedFd = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| unreachable(e.to_string()))?;
        match connect(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                let stream = UnixStream::from(fd);
                stream
                    .set_nonblocking(false)
                    .map_err(|e| unreachable(e.to_string()))?;
                return Ok(stream);
            }
            Err(Errno::EAGAIN | Errno::EINTR) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(Errno::EAGAIN) => return Err(unreachable("it is too busy to accept".into())),
            Err(Errno::ENOENT) => {
                return Err(unreachable("no socket there (is alohad running?)".into()));
            }
            Err(Errno::ECONNREFUSED) => {
                return Err(unreachable(
                    "nothing listens there (is alohad running?)".into(),
                ));
            }
            Err(e) => return Err(unreachable(e.desc().to_string())),
        }
    }
}

impl Client {
    /// Connect, check that the daemon runs as root, and exchange protocol versions. Each
    /// step, and later each call, may take `timeout`.
    pub fn connect(
        socket_path: &Path,
        timeout: Duration,
        client_name: &str,
    ) -> Result<Client, ClientError> {
        Client::open(socket_path, Bound::EachStep(timeout), client_name)
    }

    /// As [`Client::connect`], but this and every later call end by `deadline`.
    pub fn connect_until(
        socket_path: &Path,
        deadline: Instant,
        client_name: &str,
    ) -> Result<Client, ClientError> {
        Client::open(socket_path, Bound::Until(deadline), client_name)
    }

    fn open(socket_path: &Path, bound: Bound, client_name: &str) -> Result<Client, ClientError> {
        let stream = connect_socket(socket_path, bound.deadline())?;
        let creds = getsockopt(&stream, sockopt::PeerCredentials).map_err(|e| {
            ClientError::Unreachable {
                path: socket_path.into(),
                reason: format!("cannot read the peer's credentials: {}", e.desc()),
            }
        })?;
        if creds.uid() != 0 {
            return Err(ClientError::NotRoot {
                path: socket_path.into(),
                uid: creds.uid(),
            });
        }
        let mut client = Client { stream, bound };
        match client.call(&Request::Hello {
            version: PROTOCOL_VERSION,
            client: client_name.into(),
        })? {
            Response::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(client),
            Response::Hello { version, .. } => Err(ClientError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
            }),
            other => Err(ClientError::Malformed(format!(
                "expected hello, got {other:?}"
            ))),
        }
    }

    /// Send one request and wait (bounded) for its reply. Daemon refusals come back as
    /// [`ClientError::Refused`].
    pub fn call(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.call_with_progress(request, |_| {})
    }

    /// As [`Client::call`], handing each progress report of a long face operation to
    /// `progress` as it arrives. Each report is one read: with [`Client::connect`]'s bound,
    /// every report restarts the wait.
    pub fn call_with_progress(
        &mut self,
        request: &Request,
        mut progress: impl FnMut(&FaceProgress),
    ) -> Result<Response, ClientError> {
        let bytes = protocol::encode(request).map_err(|e| ClientError::Malformed(e.to_string()))?;
        frame::write_frame(&mut self.stream, &bytes, self.bound.deadline())?;
        loop {
            let reply = frame::read_frame(&mut self.stream, self.bound.deadline(), MAX_FRAME_LEN)?;
            match protocol::decode::<Response>(&reply) {
                Ok(Response::Error(failure)) => return Err(ClientError::Refused(failure)),
                Ok(Response::FaceProgress(p)) => progress(&p),
                Ok(response) => return Ok(response),
                Err(e) => return Err(ClientError::Malformed(e.to_string())),
            }
        }
    }
}
