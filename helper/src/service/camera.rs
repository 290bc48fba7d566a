//! The camera survey (`aloha camera`): any local user may see which camera face sign-in uses.

use aloha::protocol::CameraReport;

use super::Service;

impl Service {
    pub(super) fn camera_survey(&self) -> CameraReport {
        crate::camera::survey(&self.config.face, self.store.root())
    }
}
