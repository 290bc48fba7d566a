//! A face sign-in: one attempt, counted before the camera delivers its first frame (a kill
//! mid-attempt never yields a free one). A live match releases the face protector, which signs
//! the digest (pam_aloha's nonce, an application's question) exactly as the PIN's copy of the
//! key would. No face seen before the time
//! is up is not a failure; faces compared with none matching, or frames that look like a photo
//! or a screen, are.

use std::time::{Duration, Instant};

use aloha::lockout::Attempts;
use aloha::protocol::{ErrorCode, Failure, Response};
use aloha_face::attempt::ADAPTED_LABEL;
use tracing::{error, info, warn};

use super::super::failures::store_failure;
use super::super::key_stores::backend_failure;
use super::super::sign_in::{Factor, log_attempt};
use super::super::vault::open_vault;
use super::super::{Caller, Service, lock};
use super::capture::Capture;
use crate::recognition::Step;
use crate::store::{Container, FaceLabel};

/// How soon after a near miss a PIN sign-in confirms it (seconds).
const NEAR_MISS_WINDOW: u64 = 120;

/// Why an attempt ended without a match.
enum Miss {
    NoMatch,
    NotLive(String),
}

impl Service {
    pub(in crate::service) fn face_sign_in(
        &self,
        caller: &Caller,
        user: &str,
        service: &str,
        digest: &[u8; 32],
        timeout_ms: u64,
        vault: bool,
    ) -> Result<Response, Failure> {
        let started = Instant::now();
        let result = self.face_sign_in_inner(caller, user, digest, timeout_ms, vault);
        log_attempt(Factor::Face, caller, user, service, &result, started);
        result
    }

    fn face_sign_in_inner(
        &self,
        caller: &Caller,
        user: &str,
        digest: &[u8; 32],
        timeout_ms: u64,
        vault: bool,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let container = self.load_container(&info)?;
        let record = self.face_record(user)?;
        let before = self.face_gate(user)?;
        let _camera_turn = self.camera_turn()?;
        let (secrets, profiles) = self.unlock_face(user, &container, &record)?;
        let users = self.face_users(user)?;
        let mut camera = self.ready_camera()?;
        // Write-ahead: the attempt counts from before the first frame is judged.
        let counted = Attempts {
            failures: before.failures.saturating_add(1),
            last_failure: self.clock.now(),
        };
        self.store.save_face_attempts(user, &counted).map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("alohad cannot record the face attempt, so it refuses it: {e}"),
            )
        })?;
        let mut judge = self.recognition.judge(&profiles, users);
        let end = self.judge_frames(
            &mut camera,
            &mut *judge,
            Duration::from_millis(timeout_ms),
            &mut |_| true,
        );
        // The camera is closed before anything else happens.
        drop(camera);
        let compared = judge.compared();
        if let Some(adaptation) = judge.adaptation() {
            lock(&self.near_misses).insert(user.to_string(), (adaptation, self.clock.now()));
        }
        drop(judge);
        let miss = match end {
            Capture::Done(Step::Matched { .. }) => {
                let vault = self.vault_for_sign_in(&info, &container, vault);
                let signed = {
                    let mut store = self.key_store(container.backend)?;
                    let backend = store.get();
                    let auth = secrets.auth();
                    backend
                        .sign(&record.protector, &auth, digest)
                        .map(|signature| {
                            // The face's copy of the key opens the vault as the PIN's would.
                            let password = vault.as_ref().and_then(|v| {
                                open_vault(backend, &info, &container, v, &record.protector, &auth)
                            });
                            (signature, password)
                        })
                };
                return match signed {
                    Ok((signature, password)) => {
                        self.forget_face_failures(user);
                        Ok(Response::Signed {
                            signature: signature.to_vec(),
                            backend: container.backend,
                            password,
                        })
                    }
                    Err(e) => {
                        // The face matched: whatever the key store did, it was no guess.
                        self.restore_face_failures(user, &before);
                        warn!(user, error = %e, "the face matched but the key store failed");
                        Err(backend_failure(user, e))
                    }
                };
            }
            Capture::Done(Step::NotLive(why)) => Miss::NotLive(why),
            Capture::Done(_) => Miss::NoMatch,
            Capture::TimedOut if compared > 0 => Miss::NoMatch,
            Capture::TimedOut | Capture::ClientGone => {
                self.restore_face_failures(user, &before);
                return Err(Failure::new(
                    ErrorCode::FaceNotSeen,
                    "No face was seen in time; use your PIN or password.",
                ));
            }
            Capture::Camera(e) => {
                self.restore_face_failures(user, &before);
                return Err(Failure::new(
                    ErrorCode::FaceUnavailable,
                    format!("The camera stopped delivering ({e}); use your PIN or password."),
                ));
            }
        };
        let left = self
            .config
            .face
            .max_failures
            .saturating_sub(counted.failures);
        let standing = if left == 0 {
            format!(
                "Face sign-in is now off for {user} until a PIN or password sign-in succeeds; \
                 use your PIN or password."
            )
        } else {
            format!(
                "{left} more failed face {} turn face sign-in off until a PIN or password sign-in \
                 succeeds.",
                if left == 1 { "attempt" } else { "attempts" }
            )
        };
        Err(match miss {
            Miss::NoMatch => Failure::new(
                ErrorCode::FaceNoMatch,
                format!("Face not recognised. {standing}"),
            ),
            Miss::NotLive(why) => {
                warn!(user, why, "face attempt refused as not live");
                Failure::new(
                    ErrorCode::FaceNotLive,
                    format!("That looked like a photo or a screen, not a face. {standing}"),
                )
            }
        })
    }

    /// A PIN sign-in succeeded: if a live face of this user came near its profile just before
    /// (within [`NEAR_MISS_WINDOW`]), the PIN confirms it was the user, and its descriptors
    /// join the profile labelled "adapted" (bounded; counted in the threshold's R). This is
    /// how face sign-in keeps working across days and light. Failures are logged, never
    /// passed on: the PIN sign-in itself succeeded.
    pub(in crate::service) fn adapt_after_pin(&self, user: &str, container: &Container) {
        let Some((adaptation, at)) = lock(&self.near_misses).remove(user) else {
            return;
        };
        if self.clock.now().saturating_sub(at) > NEAR_MISS_WINDOW {
            return;
        }
        let result = (|| -> Result<usize, Failure> {
            let mut record = self.face_record(user)?;
            let (secrets, mut profiles) = self.unlock_face(user, container, &record)?;
            let kept = self.recognition.adapt(&mut profiles, adaptation);
            record.profiles = profiles.seal(&secrets.profile_key()).map_err(|e| {
                Failure::new(
                    ErrorCode::Internal,
                    format!("cannot seal the profiles: {e}"),
                )
            })?;
            record.labels.retain(|l| l.label != ADAPTED_LABEL);
            if kept > 0 {
                record.labels.push(FaceLabel {
                    label: ADAPTED_LABEL.into(),
                    descriptors: u32::try_from(kept).unwrap_or(u32::MAX),
                    enrolled_at: self.clock.now(),
                });
            }
            self.store
                .save_face(&record)
                .map_err(|e| Failure::new(ErrorCode::Internal, e.to_string()))?;
            Ok(kept)
        })();
        match result {
            Ok(kept) => info!(
                user,
                kept, "face profile adapted after a PIN confirmed a near miss"
            ),
            Err(f) => warn!(user, why = f.message, "could not adapt the face profile"),
        }
    }

    /// A root PAM application says another module (the password) signed `user` in: face
    /// sign-in is on again for them, as after a PIN sign-in. Only root is believed (sudo, su,
    /// login and the greeters run as root and call pam_setcred only after a successful
    /// authentication); root could clear the counter with `aloha admin unlock` anyway.
    pub(in crate::service) fn face_resume(
        &self,
        caller: &Caller,
        user: &str,
    ) -> Result<Response, Failure> {
        self.require_root(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let failures = self
            .store
            .load_face_attempts(user)
            .map_err(|e| store_failure(user, e))?
            .failures;
        if failures == 0 {
            return Ok(Response::Done {
                message: format!("Face sign-in was not paused for {user}."),
            });
        }
        self.store
            .save_face_attempts(user, &Attempts::default())
            .map_err(|e| store_failure(user, e))?;
        info!(
            user,
            caller_uid = caller.uid,
            failures,
            "face sign-in on again after a sign-in by another module"
        );
        Ok(Response::Done {
            message: format!(
                "Face sign-in is on again for {user} ({failures} failed attempts cleared)."
            ),
        })
    }

    /// A face or PIN sign-in succeeded: face sign-in is on again. Writes only when there is
    /// something to forget (a PIN sign-in must not pay for a face it does not use).
    pub(in crate::service) fn forget_face_failures(&self, user: &str) {
        match self.store.load_face_attempts(user) {
            Ok(a) if a.failures == 0 => {}
            _ => self.restore_face_failures(user, &Attempts::default()),
        }
    }

    fn restore_face_failures(&self, user: &str, attempts: &Attempts) {
        if let Err(e) = self.store.save_face_attempts(user, attempts) {
            error!(user, error = %e, "cannot restore the face attempt counter");
        }
    }
}
