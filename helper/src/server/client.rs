//! One greeted client: its requests in order, each frame within its deadline, the connection
//! within its lifetime, and the service's replies and progress reports sent back.

use std::os::unix::net::UnixStream;
use std::time::Instant;

use aloha::frame::{self, FrameError, MAX_FRAME_LEN};
use aloha::protocol::{self, ErrorCode, FaceProgress, PROTOCOL_VERSION, Request, Response};
use tracing::{debug, warn};

use super::{Limits, refuse, send};
use crate::service::{Caller, Client, Service};

/// Serve one client until it hangs up, misbehaves, times out or reaches its lifetime.
pub(super) fn serve_client(
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
                let mut client = Connection {
                    stream: &mut stream,
                    caller: &caller,
                    limits,
                    replied: Ok(()),
                };
                service.handle(&caller, request, &mut client);
                if client.replied.is_err() {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = send(&mut stream, &response, Instant::now() + limits.io_timeout) {
            debug!(caller_uid = caller.uid, error = %e, "could not send the reply");
            return;
        }
    }
}

/// A greeted client as the service sees it.
struct Connection<'a> {
    stream: &'a mut UnixStream,
    caller: &'a Caller,
    limits: &'a Limits,
    /// Whether the reply went out (a client that does not read it is dropped).
    replied: Result<(), ()>,
}

impl Client for Connection<'_> {
    fn progress(&mut self, report: FaceProgress) -> bool {
        // A client that stopped reading ends the operation.
        send(
            self.stream,
            &Response::FaceProgress(report),
            Instant::now() + self.limits.io_timeout,
        )
        .is_ok()
    }

    fn reply(&mut self, response: Response) {
        let deadline = Instant::now() + self.limits.io_timeout;
        self.replied = send(self.stream, &response, deadline).map_err(|e| {
            debug!(caller_uid = self.caller.uid, error = %e, "could not send the reply");
        });
    }
}
