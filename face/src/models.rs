//! The converted model files the engine loads, and where to find them.

use crate::error::{FaceError, Result};
use std::path::{Path, PathBuf};

/// BlazeFace front 128×128 detector, ConstantOfShape nodes fixed (Apache-2.0).
pub const BLAZEFACE: &str = "blazeface_front_128.onnx";
/// dlib's 5-point landmark model, dlib serialisation, read natively (public domain).
pub const LANDMARKS: &str = "shape_predictor_5_face_landmarks.dat";
/// dlib's face ResNet converted to ONNX by `aloha-models` (public domain).
pub const RESNET: &str = "dlib_face_recognition_resnet_model_v1.onnx";
/// Every file [`crate::Engine::load`] needs.
pub const ALL: [&str; 3] = [BLAZEFACE, LANDMARKS, RESNET];

/// The packaged model directory.
pub const DEFAULT_DIR: &str = "/usr/share/aloha/models";

/// Reads one model file, with an error that says how to get it.
pub fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(FaceError::ModelMissing {
            path,
            dir: dir.to_path_buf(),
        }),
        Err(source) => Err(FaceError::Io { path, source }),
    }
}

/// Where tests, benches and the eval tool look for models: `$ALOHA_MODELS`, else
/// `<workspace>/target/models` (what `packaging/models/fetch.sh target/models` fills).
pub fn dev_dir() -> PathBuf {
    match std::env::var_os("ALOHA_MODELS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/models"),
    }
}
