//! Face sign-in in alohad. A face match releases the user's key exactly as a PIN does: the face
//! protector is a copy of the user's key under a random face secret (sealed by the TPM where
//! there is one), and alohad uses it only after a live match, so pam_aloha's verification is
//! the same for both.
//!
//! - [`sign_in`]: one counted attempt (written ahead, like a wrong PIN);
//! - [`enrol`]: the PIN proves the caller and makes the face protector, then frames become a
//!   labelled profile;
//! - [`manage`]: list, remove, the status lines, `aloha face test`, and what a PIN reset does
//!   to the face;
//! - [`capture`]: the capture loop they share; [`secrets`]: the face secret and profile key.

mod capture;
mod enrol;
mod manage;
mod secrets;
mod sign_in;

use std::ops::ControlFlow;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use aloha::lockout::Attempts;
use aloha::protocol::{ErrorCode, FaceProgress, Failure};
use aloha_face::ProfileSet;

use super::Service;
use super::failures::store_failure;
use crate::camera::Camera;
use crate::recognition::{Judge, Step};
use crate::store::{Container, FaceRecord};
use capture::{Capture, Report};
use secrets::FaceSecrets;

impl Service {
    /// Whether anyone has a face enrolled (alohad then loads the models at start).
    pub fn face_enrolled(&self) -> bool {
        self.store.face_users().is_ok_and(|n| n > 0)
    }

    /// The user's face record, or why there is none.
    fn face_record(&self, user: &str) -> Result<FaceRecord, Failure> {
        self.store
            .load_face(user)
            .map_err(|e| store_failure(user, e))?
            .ok_or_else(|| {
                Failure::new(
                    ErrorCode::NotEnrolled,
                    format!("{user} has no face enrolled; enrol one with `aloha face enroll`."),
                )
            })
    }

    /// The user's failed face attempts, refused while face is paused for them.
    fn face_gate(&self, user: &str) -> Result<Attempts, Failure> {
        let attempts = self
            .store
            .load_face_attempts(user)
            .map_err(|e| store_failure(user, e))?;
        let max = self.config.face.max_failures;
        if attempts.failures >= max {
            return Err(Failure::new(
                ErrorCode::FaceLocked,
                format!(
                    "Face sign-in is off for {user} after {} failed face attempts; a PIN or \
                     password sign-in turns it back on.",
                    attempts.failures
                ),
            ));
        }
        Ok(attempts)
    }

    /// The camera, for one operation at a time (a face operation, the probe, root's look at the
    /// emitter): a second one is refused at once instead of waiting behind the first (the PIN
    /// or password is right there).
    pub(in crate::service) fn camera_turn(&self) -> Result<MutexGuard<'_, ()>, Failure> {
        self.camera_in_use.try_lock().map_err(|_| {
            Failure::new(
                ErrorCode::FaceUnavailable,
                "The camera is in use by another face sign-in, enrolment or camera probe; use \
                 your PIN or password, or try again in a moment.",
            )
        })
    }

    /// The models loaded and the camera open, or why face cannot run now.
    fn ready_camera(&self) -> Result<Camera, Failure> {
        self.recognition.ready().map_err(|why| {
            Failure::new(
                ErrorCode::FaceUnavailable,
                format!("Face recognition cannot run ({why}); use your PIN or password."),
            )
        })?;
        self.cameras.open().map_err(|e| {
            Failure::new(
                ErrorCode::FaceUnavailable,
                format!("The camera cannot be used ({e}); use your PIN or password."),
            )
        })
    }

    /// The user's profiles, opened with the unsealed profile key.
    fn open_profiles(
        &self,
        user: &str,
        record: &FaceRecord,
        secrets: &FaceSecrets,
    ) -> Result<ProfileSet, Failure> {
        ProfileSet::open(user, &record.profiles, &secrets.profile_key()).map_err(|e| {
            Failure::new(
                ErrorCode::StateCorrupt,
                format!(
                    "{user}'s face profiles cannot be opened ({e}); `aloha face remove --all` \
                     and enrol again."
                ),
            )
        })
    }

    /// The user's face secrets and profiles, unsealed by the key store of `container`.
    fn unlock_face(
        &self,
        user: &str,
        container: &Container,
        record: &FaceRecord,
    ) -> Result<(FaceSecrets, ProfileSet), Failure> {
        let mut store = self.key_store(container.backend)?;
        let secrets = self.unseal_face_secrets(user, store.get(), &record.secret)?;
        drop(store);
        let profiles = self.open_profiles(user, record, &secrets)?;
        Ok((secrets, profiles))
    }

    /// Frames from `camera` through `judge` until it decides, `budget` runs out, or the
    /// camera fails; every undecided frame is reported to `progress`.
    fn judge_frames(
        &self,
        camera: &mut Camera,
        judge: &mut dyn Judge,
        budget: Duration,
        progress: &mut dyn FnMut(FaceProgress) -> bool,
    ) -> Capture<Step> {
        let face = &self.config.face;
        capture::run(
            camera,
            &*self.recognition,
            Instant::now() + budget.min(Duration::from_millis(face.attempt_timeout_ms)),
            self.pace(),
            progress,
            |frame, analysis| match judge.push(frame, analysis) {
                Step::Continue { verdict, distance } => ControlFlow::Continue(Report {
                    verdict,
                    distance,
                    done: 0,
                    wanted: 0,
                }),
                decided => ControlFlow::Break(decided),
            },
        )
    }

    /// How the capture loop paces itself (`[face]` frame_timeout_ms, frame_interval_ms).
    fn pace(&self) -> capture::Pace {
        capture::Pace {
            frame_timeout: Duration::from_millis(self.config.face.frame_timeout_ms),
            interval: Duration::from_millis(self.config.face.frame_interval_ms),
        }
    }

    /// Users with a face enrolled (at least one: the one asking).
    fn face_users(&self, user: &str) -> Result<usize, Failure> {
        self.store
            .face_users()
            .map(|n| n.max(1))
            .map_err(|e| store_failure(user, e))
    }
}
