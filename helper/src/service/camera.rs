//! The camera survey (`aloha camera`): any local user may see which camera face sign-in uses.
//! Looking at whether the IR emitter fires opens the camera for about half a second, so only
//! root's survey does, and only while no face operation has the camera: otherwise anyone
//! asking again and again could keep the camera from someone else's sign-in. The probe for an
//! IR emitter's control (`aloha camera --probe`) writes camera controls and a state file, so
//! it is root's, and it takes the camera's turn like a face operation.

use aloha::protocol::{CameraReport, ErrorCode, FaceProgress, Failure, Response};
use tracing::info;

use super::{Caller, Service};
use crate::camera::EmitterLook;

impl Service {
    pub(super) fn camera_survey(&self, caller: &Caller) -> CameraReport {
        if !caller.is_root() {
            return self.cameras.survey(EmitterLook::Skip(
                "only root's survey opens the camera to look (sudo aloha camera)",
            ));
        }
        match self.camera_turn() {
            Ok(_turn) => self.cameras.survey(EmitterLook::Look),
            Err(_) => self.cameras.survey(EmitterLook::Skip(
                "a face sign-in or enrolment is using the camera",
            )),
        }
    }

    pub(super) fn camera_probe(
        &self,
        caller: &Caller,
        progress: &mut dyn FnMut(FaceProgress) -> bool,
    ) -> Result<Response, Failure> {
        if !caller.is_root() {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "Only root may probe the camera's controls: run it with sudo.",
            ));
        }
        let _turn = self.camera_turn()?;
        info!(caller_uid = caller.uid, "camera probe");
        self.cameras
            .probe(progress)
            .map(|message| Response::Done { message })
            .map_err(|e| Failure::new(ErrorCode::FaceUnavailable, e.to_string()))
    }
}
