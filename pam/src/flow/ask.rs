//! Step 2: the PIN prompt. An empty or cancelled prompt falls through to the password, with
//! nothing counted (nothing has been sent).

use std::ops::ControlFlow;

use aloha::Secret;

use super::attempt::{Attempt, Verdict};
use crate::host::{Host, Level};

/// The PIN the user typed, never empty.
pub(super) fn pin(host: &mut dyn Host, attempt: &Attempt) -> ControlFlow<Verdict, Secret> {
    attempt.log(host, Level::Debug, "asking for the PIN");
    match host.ask_secret("PIN: ") {
        Ok(pin) if !pin.is_empty() => ControlFlow::Continue(pin),
        Ok(_) => {
            attempt.log(
                host,
                Level::Info,
                "result=ignore: empty PIN, falling through to the password",
            );
            ControlFlow::Break(Verdict::Ignore)
        }
        Err(()) => {
            attempt.log(
                host,
                Level::Info,
                "result=ignore: PIN prompt cancelled or failed",
            );
            ControlFlow::Break(Verdict::Ignore)
        }
    }
}
