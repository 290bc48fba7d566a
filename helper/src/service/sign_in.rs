//! A sign-in: the user's key, released by the PIN, signs a digest — pam_aloha's nonce bound to
//! the user name, or an application's presence question — as one counted attempt. One log
//! line per attempt, never the PIN.

use aloha::Secret;
use aloha::protocol::{ErrorCode, Failure, Response};
use aloha::timefmt;
use aloha::untrusted::Untrusted;
use std::time::Instant;

use tracing::info;

use super::vault::open_vault;
use super::{Caller, Client, Service, lock};
use crate::backend::AuthValue;

/// What proved the user.
#[derive(Debug, Clone, Copy)]
pub(super) enum Factor {
    Pin,
    Face,
}

/// One log line per sign-in attempt, PIN or face: who asked for whom, from which service, the
/// result, how long it took — never a secret.
pub(super) fn log_attempt(
    factor: Factor,
    caller: &Caller,
    user: &str,
    service: &str,
    result: &Result<Response, Failure>,
    started: Instant,
) {
    let outcome = match result {
        Ok(_) => "success".to_string(),
        Err(f) => format!("{:?}", f.code),
    };
    let factor = match factor {
        Factor::Pin => "pin",
        Factor::Face => "face",
    };
    // Both come from the client as sent (the name may have failed validation): quoted,
    // escaped and cut short, so no request can forge or flood a log line.
    info!(
        user = %Untrusted(user),
        caller_uid = caller.uid,
        caller_pid = caller.pid,
        service = %Untrusted(service),
        factor,
        result = outcome,
        ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "sign-in attempt"
    );
}

impl Service {
    #[allow(clippy::too_many_arguments)] // the request's fields, one by one, as handle() unpacks them
    pub(super) fn sign_in(
        &self,
        caller: &Caller,
        user: &str,
        service: &str,
        digest: &[u8; 32],
        pin: &Secret,
        vault: bool,
        client: &mut dyn Client,
    ) {
        let started = Instant::now();
        let mut replied = false;
        let result = self.sign_in_inner(caller, user, digest, pin, vault, &mut |response| {
            client.reply(response);
            replied = true;
        });
        log_attempt(Factor::Pin, caller, user, service, &result, started);
        if !replied {
            client.reply(result.unwrap_or_else(Response::Error));
        }
    }

    /// The sign-in; a success is sent through `reply` before the bookkeeping that follows it
    /// (and also returned, for the log line).
    fn sign_in_inner(
        &self,
        caller: &Caller,
        user: &str,
        digest: &[u8; 32],
        pin: &Secret,
        vault: bool,
        reply: &mut dyn FnMut(Response),
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        if pin.is_empty() {
            return Err(Failure::new(
                ErrorCode::BadRequest,
                "An empty PIN is not an attempt.",
            ));
        }
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let container = self.load_container(&info)?;
        let now = self.clock.now();
        if let Some(expired) = self
            .config
            .pin
            .expires_at(container.pin_set_at)
            .filter(|t| *t <= now)
        {
            return Err(Failure::new(
                ErrorCode::PinExpired,
                format!(
                    "{user}'s PIN expired on {}: set a new one with `aloha pin change`; use your password meanwhile.",
                    timefmt::utc(expired)
                ),
            ));
        }
        let auth = AuthValue::from_pin(pin, &container.pin_salt);
        let blob = &container.protectors.pin;
        let record = self.vault_for_sign_in(&info, &container, vault);
        let signed = |(signature, password): &([u8; 64], Option<Secret>)| Response::Signed {
            signature: signature.to_vec(),
            backend: container.backend,
            password: password.clone(),
        };
        let outcome = self.attempt_replying(
            user,
            &container,
            |b| {
                let signature = b.sign(blob, &auth, digest)?;
                // The PIN proved right: the vault opens with the same authValue, or not at all.
                let password = record
                    .as_ref()
                    .and_then(|r| open_vault(b, &info, &container, r, blob, &auth));
                Ok((signature, password))
            },
            |outcome| reply(signed(outcome)),
        )?;
        // After the reply: a face adaptation the PIN confirmed costs the person nothing.
        self.adapt_after_pin(user, &container);
        Ok(signed(&outcome))
    }
}
