//! The camera survey (`aloha camera`): any local user may see which camera face sign-in uses.
//! The probe for an IR emitter's control (`aloha camera --probe`) writes camera controls and
//! a state file, so it is root's.

use aloha::protocol::{CameraReport, ErrorCode, FaceProgress, Failure, Response};
use tracing::info;

use super::{Caller, Service};
use crate::camera;

impl Service {
    pub(super) fn camera_survey(&self) -> CameraReport {
        camera::survey(&self.config.face, self.store.root())
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
        info!(caller_uid = caller.uid, "camera probe");
        camera::probe(&self.config.face, self.store.root(), progress)
            .map(|message| Response::Done { message })
            .map_err(|e| Failure::new(ErrorCode::FaceUnavailable, e.to_string()))
    }
}
