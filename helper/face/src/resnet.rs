//! dlib's face ResNet (converted to ONNX by `aloha-models`), run by tract on one thread.

use crate::DESCRIPTOR_LEN;
use crate::chip::GrayImage;
use crate::error::{FaceError, Result};
use std::path::Path;
use tract_onnx::prelude::*;

type Plan = TypedSimplePlan;

/// The descriptor network.
#[derive(Debug, Clone)]
pub struct Resnet {
    plan: std::sync::Arc<Plan>,
}

fn infer(why: impl std::fmt::Display) -> FaceError {
    FaceError::Inference {
        stage: "descriptor network",
        why: why.to_string(),
    }
}

impl Resnet {
    /// Loads and optimises the ONNX bytes of the converted model.
    pub fn from_onnx(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |e: TractError| FaceError::ModelCorrupt {
            path: path.into(),
            why: format!("{e:#}"),
        };
        let model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(corrupt)?
            .with_input_fact(0, f32::fact([1, 1, 150, 150]).into())
            .map_err(corrupt)?
            .into_optimized()
            .map_err(corrupt)?;
        let plan = model.into_runnable().map_err(corrupt)?;
        Ok(Self { plan })
    }

    /// The descriptor of a gray chip (150×150, 0..255): what dlib computes for that chip
    /// converted to RGB with the gray value in all three channels.
    pub fn describe_gray(&self, chip: &GrayImage) -> Result<[f32; DESCRIPTOR_LEN]> {
        if chip.data.len() != 150 * 150 {
            return Err(infer(format!(
                "chip has {} pixels, expected {}",
                chip.data.len(),
                150 * 150
            )));
        }
        let plane: Vec<f32> = chip.data.iter().map(|&v| f32::from(v)).collect();
        let input = Tensor::from_shape(&[1, 1, 150, 150], &plane).map_err(infer)?;
        let out = self.plan.run(tvec!(input.into())).map_err(infer)?;
        let Some(first) = out.first() else {
            return Err(infer("no output"));
        };
        let view = first.to_plain_array_view::<f32>().map_err(infer)?;
        let mut d = [0f32; DESCRIPTOR_LEN];
        if view.len() != DESCRIPTOR_LEN {
            return Err(infer(format!("output has {} values", view.len())));
        }
        for (o, v) in d.iter_mut().zip(view.iter()) {
            *o = *v;
        }
        Ok(d)
    }
}
