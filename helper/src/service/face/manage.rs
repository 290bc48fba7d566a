//! Managing a user's face: the profile list, removing one label or all, `aloha face test`,
//! the face lines of `aloha status`, and what a PIN reset (a new key) does to the face.

use std::time::Duration;

use aloha::protocol::{
    BackendKind, ErrorCode, FaceProfileInfo, FaceProgress, FaceStatus, Failure, Response,
};
use tracing::{info, warn};

use super::super::failures::store_failure;
use super::super::{Caller, Service, lock};
use super::capture::Capture;
use crate::backend::{AuthValue, KeyBackend};
use crate::recognition::Step;
use crate::store::{Container, FaceRecord};

fn profile_infos(record: &FaceRecord) -> Vec<FaceProfileInfo> {
    record
        .labels
        .iter()
        .map(|l| FaceProfileInfo {
            label: l.label.clone(),
            descriptors: l.descriptors,
            enrolled_at: l.enrolled_at,
        })
        .collect()
}

/// What protects the face secret and the profiles, in words.
pub(in crate::service) fn face_protection(backend: BackendKind) -> &'static str {
    match backend {
        BackendKind::Tpm => {
            "the face secret and the profile key are sealed by the TPM (useless on another \
             machine); a face match only releases a key the TPM keeps, and only descriptors, \
             never images, are stored"
        }
        BackendKind::Software => {
            "software vault: the face secret is encrypted under a key file in alohad's state, so \
             whoever can read that state (root, or a thief with an unencrypted disk) can release \
             your key without your face; only descriptors, never images, are stored"
        }
    }
}

impl Service {
    pub(in crate::service) fn face_list(
        &self,
        caller: &Caller,
        user: &str,
    ) -> Result<Response, Failure> {
        self.authorize(caller, user)?;
        let profiles = match self
            .store
            .load_face(user)
            .map_err(|e| store_failure(user, e))?
        {
            Some(record) => profile_infos(&record),
            None => Vec::new(),
        };
        Ok(Response::FaceProfiles {
            user: user.to_string(),
            profiles,
        })
    }

    /// Forget one label, or (`None`) the whole face: profiles, protector, secrets, counter.
    pub(in crate::service) fn face_remove(
        &self,
        caller: &Caller,
        user: &str,
        label: Option<&str>,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let record = self.face_record(user)?;
        let Some(label) = label else {
            lock(&self.near_misses).remove(user);
            self.store
                .remove_face(user)
                .map_err(|e| store_failure(user, e))?;
            info!(user, caller_uid = caller.uid, "face removed");
            return Ok(Response::Done {
                message: format!("Removed {user}'s face; the PIN and password still work."),
            });
        };
        if !record.labels.iter().any(|l| l.label == label) {
            return Err(Failure::new(
                ErrorCode::NotEnrolled,
                format!("{user} has no face profile labelled {label:?} (see `aloha face list`)."),
            ));
        }
        if record.labels.len() == 1 {
            return self.face_remove(caller, user, None);
        }
        let container = self.load_container(&info)?;
        let (secrets, mut profiles) = self.unlock_face(user, &container, &record)?;
        profiles.remove(label);
        let sealed = profiles.seal(&secrets.profile_key()).map_err(|e| {
            Failure::new(
                ErrorCode::Internal,
                format!("cannot seal the profiles: {e}"),
            )
        })?;
        let mut updated = record;
        updated.profiles = sealed;
        updated.labels.retain(|l| l.label != label);
        self.store
            .save_face(&updated)
            .map_err(|e| store_failure(user, e))?;
        info!(user, caller_uid = caller.uid, label, "face profile removed");
        Ok(Response::Done {
            message: format!("Removed {user}'s face profile {label:?}."),
        })
    }

    /// An attempt that reports every frame and the decision but uses no key and counts
    /// nothing: for checking the camera and the profile, never for signing in.
    pub(in crate::service) fn face_test(
        &self,
        caller: &Caller,
        user: &str,
        timeout_ms: u64,
        progress: &mut dyn FnMut(FaceProgress) -> bool,
    ) -> Result<Response, Failure> {
        let info = self.authorize(caller, user)?;
        let guard = self.user_lock(user);
        let _held = lock(&guard);
        let container = self.load_container(&info)?;
        let record = self.face_record(user)?;
        let _camera_turn = self.camera_turn()?;
        let (secrets, profiles) = self.unlock_face(user, &container, &record)?;
        drop(secrets);
        let users = self.face_users(user)?;
        let mut camera = self.ready_camera()?;
        let mut judge = self.recognition.judge(&profiles, users);
        let end = self.judge_frames(
            &mut camera,
            &mut *judge,
            Duration::from_millis(timeout_ms),
            progress,
        );
        drop(camera);
        let message = match end {
            Capture::Done(Step::Matched { distance }) => {
                format!("Decision: match (distance {distance:.3}). A sign-in would have succeeded.")
            }
            Capture::Done(Step::NotLive(why)) => {
                format!("Decision: refused as not live ({why}). A sign-in would have failed.")
            }
            Capture::Done(_) => "Decision: no match. A sign-in would have failed.".to_string(),
            Capture::TimedOut if judge.compared() > 0 => {
                "Decision: no match in time. A sign-in would have failed.".to_string()
            }
            Capture::TimedOut => {
                "Decision: no face seen in time (a sign-in would fall through to the PIN, \
                 uncounted)."
                    .to_string()
            }
            Capture::Camera(e) => format!("The camera stopped delivering: {e}."),
            Capture::ClientGone => "Cancelled.".to_string(),
        };
        Ok(Response::Done { message })
    }

    /// The face lines of a status reply (`None`: no face enrolled).
    pub(in crate::service) fn face_status(
        &self,
        user: &str,
        problems: &mut Vec<String>,
    ) -> Option<FaceStatus> {
        let record = match self.store.load_face(user) {
            Ok(record) => record?,
            Err(e) => {
                problems.push(e.to_string());
                return None;
            }
        };
        let failures = self
            .store
            .load_face_attempts(user)
            .map(|a| a.failures)
            .unwrap_or_else(|e| {
                problems.push(e.to_string());
                self.config.face.max_failures
            });
        let max_failures = self.config.face.max_failures;
        let paused = failures >= max_failures;
        // Without the models a face cannot sign in whatever the camera: say so where the
        // camera would be named (alohad loads them at start when anyone has a face, so this
        // costs nothing then).
        let (camera, camera_ok) = match (self.recognition.ready(), self.cameras.present()) {
            (Err(why), _) => (why, false),
            (Ok(()), Ok(what)) => (what, true),
            (Ok(()), Err(why)) => (why, false),
        };
        Some(FaceStatus {
            profiles: profile_infos(&record),
            protector: true,
            failures,
            max_failures,
            paused,
            camera,
            usable: camera_ok && !paused && !record.labels.is_empty(),
            protection: face_protection(record.backend).to_string(),
        })
    }

    /// After a PIN reset made a new key: give the face a protector of the new key (under the
    /// same face secret), or, if its secrets cannot be opened, remove it and say so. No
    /// protector of the old key survives either way.
    pub(in crate::service) fn reprotect_face(
        &self,
        user: &str,
        container: &Container,
        pin_auth: &AuthValue,
        backend: &mut dyn KeyBackend,
    ) -> Option<String> {
        let record = match self.store.load_face(user) {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => {
                warn!(user, error = %e, "face record unreadable at PIN reset; removing it");
                return self.drop_face(user, "its record was unreadable");
            }
        };
        let secrets = match self.unseal_face_secrets(user, backend, &record.secret) {
            Ok(secrets) => secrets,
            Err(f) => return self.drop_face(user, &f.message),
        };
        let protector =
            match backend.change_auth(&container.protectors.pin, pin_auth, &secrets.auth()) {
                Ok(blob) => blob,
                Err(e) => return self.drop_face(user, &e.to_string()),
            };
        let updated = FaceRecord {
            backend: container.backend,
            protector,
            ..record
        };
        match self.store.save_face(&updated) {
            Ok(()) => Some("Your face enrolment now releases the new key.".to_string()),
            Err(e) => self.drop_face(user, &e.to_string()),
        }
    }

    fn drop_face(&self, user: &str, why: &str) -> Option<String> {
        warn!(user, why, "face removed at PIN reset");
        match self.store.remove_face(user) {
            Ok(_) => Some(format!(
                "Your face enrolment could not move to the new key ({why}) and was removed; \
                 enrol again with `aloha face enroll`."
            )),
            Err(e) => Some(format!(
                "Your face enrolment could not move to the new key ({why}) nor be removed ({e}); \
                 an administrator should run `aloha face remove --all --user {user}`."
            )),
        }
    }
}
