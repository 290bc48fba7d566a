//! Step 3: a fresh nonce and the PIN to alohad, which signs the nonce with the user's key if
//! the PIN is right. What came back is for `judge` to weigh.

use std::ops::ControlFlow;

use aloha::Secret;
use aloha::challenge::Nonce;
use aloha::protocol::Response;

use super::attempt::{Ready, Verdict};
use crate::daemon::{CallError, Daemon};
use crate::host::{Host, Level};

/// A sign-in request that went out (or tried to): the nonce it carried, and alohad's reply.
pub(super) struct Exchange {
    pub(super) nonce: Nonce,
    pub(super) reply: Result<Response, CallError>,
}

pub(super) fn send<D: Daemon>(
    host: &mut dyn Host,
    ready: &mut Ready<D>,
    pin: Secret,
) -> ControlFlow<Verdict, Exchange> {
    let Ready {
        attempt, daemon, ..
    } = ready;
    let nonce = match daemon.nonce() {
        Ok(n) => n,
        Err(e) => {
            attempt.log(host, Level::Error, &format!("result=unavailable: {e}"));
            return ControlFlow::Break(Verdict::Unavailable);
        }
    };
    attempt.log(
        host,
        Level::Debug,
        "sending the nonce and the PIN to alohad",
    );
    let vault = ready.status.vault.sealed_at.is_some();
    let reply = daemon.sign_in(&attempt.user, &attempt.service, nonce, pin, vault);
    ControlFlow::Continue(Exchange { nonce, reply })
}
