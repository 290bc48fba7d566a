//! dlib's face ResNet (converted to ONNX by `aloha-models`), run by the crate's own executor
//! ([`crate::cnn`]) on the caller's thread.

use crate::DESCRIPTOR_LEN;
use crate::chip::GrayImage;
use crate::cnn::Net;
use crate::error::{FaceError, Result};
use std::path::Path;
use std::sync::Arc;

/// Side of the square chip the network reads.
const CHIP: usize = 150;

/// The descriptor network.
#[derive(Debug, Clone)]
pub struct Resnet {
    net: Arc<Net>,
}

fn infer(why: impl std::fmt::Display) -> FaceError {
    FaceError::Inference {
        stage: "descriptor network",
        why: why.to_string(),
    }
}

impl Resnet {
    /// Loads the ONNX bytes of the converted model and packs its weights.
    pub fn from_onnx(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |why: String| FaceError::ModelCorrupt {
            path: path.into(),
            why,
        };
        let net = Net::from_onnx(bytes).map_err(|e| corrupt(e.0))?;
        if net.input_size() != (CHIP, CHIP) || net.output_len() != DESCRIPTOR_LEN {
            return Err(corrupt(format!(
                "network reads {:?} and gives {} values; expected ({CHIP}, {CHIP}) and {DESCRIPTOR_LEN}",
                net.input_size(),
                net.output_len()
            )));
        }
        Ok(Self { net: Arc::new(net) })
    }

    /// The executor (for the bench's throughput figure).
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The descriptor of a gray chip (150×150, 0..255): what dlib computes for that chip
    /// converted to RGB with the gray value in all three channels.
    pub fn describe_gray(&self, chip: &GrayImage) -> Result<[f32; DESCRIPTOR_LEN]> {
        if chip.data.len() != CHIP * CHIP {
            return Err(infer(format!(
                "chip has {} pixels, expected {}",
                chip.data.len(),
                CHIP * CHIP
            )));
        }
        let plane: Vec<f32> = chip.data.iter().map(|&v| f32::from(v)).collect();
        let mut d = [0f32; DESCRIPTOR_LEN];
        self.net.run(&plane, &mut d).map_err(|e| infer(e.0))?;
        Ok(d)
    }
}
