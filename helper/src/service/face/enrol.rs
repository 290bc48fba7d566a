//! Face enrolment: the PIN proves the caller (a counted attempt, as a PIN change is) and, in
//! the same key-store command, makes the face protector — a copy of the user's key under the
//! face secret. Then the camera collects good frames with live feedback until the profile has
//! enough; only descriptors are kept, sealed under the profile key. Nothing is stored unless
//! the whole enrolment succeeds.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use aloha::Secret;
use aloha::protocol::{ErrorCode, FaceProgress, Failure, FrameVerdict, Response};
use aloha_face::{Analysis, ProfileSet};
use tracing::info;

use super::super::failures::store_failure;
use super::super::{Caller, Service, lock};
use super::capture::{self, Capture, Report, rejected};
use super::secrets::FaceSecrets;
use crate::backend::AuthValue;
use crate::store::{FACE_VERSION, FaceLabel, FaceRecord};

impl Service {
    pub(in crate::service) fn face_enrol(
        &self,
        caller: &Caller,
        user: &str,
        label: &str,
        pin: &Secret,
        progress: &mut dyn FnMut(FaceProgress) -> bool,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        aloha_face::profile::check_label(label)
            .map_err(|e| Failure::new(ErrorCode::BadRequest, format!("{e}")))?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let container = self.load_container(&info)?;
        let existing = self
            .store
            .load_face(user)
            .map_err(|e| store_failure(user, e))?
            .filter(|r| r.backend == container.backend);
        let _camera_turn = self.camera_turn()?;
        // Models and camera before the PIN: a PIN attempt spent on an enrolment that cannot
        // run would be a waste of the user's tries.
        let mut camera = self.ready_camera()?;
        let (secrets, mut profiles) = match &existing {
            Some(record) => self.unlock_face(user, &container, record)?,
            None => (FaceSecrets::generate()?, ProfileSet::new(user)),
        };
        let pin_auth = AuthValue::from_pin(pin, &container.pin_salt);
        let face_auth = secrets.auth();
        let blob = container.protectors.pin.clone();
        let protector = self.attempt(user, &container, |b| {
            b.change_auth(&blob, &pin_auth, &face_auth)
        })?;

        let wanted = self.recognition.enrol_frames();
        let mut good: Vec<Analysis> = Vec::new();
        let end = capture::run(
            &mut camera,
            &*self.recognition,
            Instant::now() + Duration::from_millis(self.config.face.enrol_timeout_ms),
            self.pace(),
            progress,
            |_, analysis| {
                if let Ok(a) = analysis {
                    good.push(a.clone());
                }
                if good.len() >= wanted {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(Report {
                    verdict: rejected(analysis).unwrap_or(FrameVerdict::Good),
                    distance: None,
                    done: u32::try_from(good.len()).unwrap_or(u32::MAX),
                    wanted: u32::try_from(wanted).unwrap_or(u32::MAX),
                })
            },
        );
        drop(camera);
        match end {
            Capture::Done(()) => {}
            Capture::TimedOut => {
                return Err(Failure::new(
                    ErrorCode::FaceNotSeen,
                    format!(
                        "Only {} of {wanted} good frames in time; nothing was enrolled. Look at \
                         the camera from arm's length in even light and try again.",
                        good.len()
                    ),
                ));
            }
            Capture::Camera(e) => {
                return Err(Failure::new(
                    ErrorCode::FaceUnavailable,
                    format!("The camera stopped delivering ({e}); nothing was enrolled."),
                ));
            }
            Capture::ClientGone => {
                return Err(Failure::new(
                    ErrorCode::BadRequest,
                    "The enrolment was cancelled; nothing was enrolled.",
                ));
            }
        }
        let profile = self.recognition.enrol(label, &good).map_err(|e| {
            Failure::new(
                ErrorCode::FaceNotSeen,
                format!("{e}; nothing was enrolled."),
            )
        })?;
        let descriptors = profile.descriptors.len();
        profiles.upsert(profile);
        let sealed_profiles = profiles.seal(&secrets.profile_key()).map_err(|e| {
            Failure::new(ErrorCode::BadRequest, format!("{e}; nothing was enrolled."))
        })?;
        let sealed_secret = match &existing {
            Some(record) => record.secret.clone(),
            None => {
                let mut store = self.key_store(container.backend)?;
                self.seal_face_secrets(user, store.get(), &secrets)?
            }
        };
        let now = self.clock.now();
        let mut labels: Vec<FaceLabel> = existing
            .map(|r| r.labels)
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.label != label)
            .collect();
        labels.push(FaceLabel {
            label: label.to_string(),
            descriptors: u32::try_from(descriptors).unwrap_or(u32::MAX),
            enrolled_at: now,
        });
        let record = FaceRecord {
            version: FACE_VERSION,
            user: user.to_string(),
            backend: container.backend,
            protector,
            secret: sealed_secret,
            profiles: sealed_profiles,
            labels,
        };
        self.store
            .save_face(&record)
            .map_err(|e| store_failure(user, e))?;
        self.forget_face_failures(user);
        info!(
            user,
            caller_uid = caller.uid,
            label,
            descriptors,
            "face enrolled"
        );
        Ok(Response::Done {
            message: format!(
                "Face enrolled for {user} as {label:?} ({descriptors} views; no image is kept). \
                 Sign in by looking at the camera; your PIN and password keep working."
            ),
        })
    }
}
