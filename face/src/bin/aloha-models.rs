//! `aloha-models`: converts the fetched public models into the form the face engine loads.
//!
//! Called by `packaging/models/fetch.sh`; usable by hand:
//! `aloha-models convert --resnet R.dat --landmarks L.dat --blazeface B.onnx --out DIR`
//! `aloha-models check DIR` loads the engine from DIR and prints the load time.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Convert and check Aloha's face models")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Convert dlib's .dat models and BlazeFace's ONNX into DIR.
    Convert {
        /// dlib_face_recognition_resnet_model_v1.dat
        #[arg(long)]
        resnet: PathBuf,
        /// shape_predictor_5_face_landmarks.dat
        #[arg(long)]
        landmarks: PathBuf,
        /// face_detection_front_128x128_barracuda.onnx
        #[arg(long)]
        blazeface: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load every model in DIR as the engine does and report.
    Check {
        /// Model directory.
        dir: PathBuf,
    },
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
}

/// Writes through a temporary file and a rename, so a killed run never leaves half a model.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    Ok(())
}

fn convert(resnet: &Path, landmarks: &Path, blazeface: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let lm = read(landmarks)?;
    let sp = aloha_face::dlib::ShapePredictorModel::parse(&lm).map_err(|e| {
        anyhow::anyhow!("{} is not a dlib shape predictor: {e}", landmarks.display())
    })?;
    if sp.parts() != 5 {
        bail!(
            "{} has {} landmarks; only the 5-point model may be used (the 68-point model's licence forbids commercial use)",
            landmarks.display(),
            sp.parts()
        );
    }
    println!(
        "landmarks: {} cascade levels, {} trees per level, {} points",
        sp.forests.len(),
        sp.forests.first().map_or(0, Vec::len),
        sp.parts()
    );
    write_atomic(&out.join(aloha_face::models::LANDMARKS), &lm)?;

    let rn = read(resnet)?;
    let model = aloha_face::dlib::ResnetModel::parse(&rn)
        .map_err(|e| anyhow::anyhow!("{} is not dlib's face ResNet: {e}", resnet.display()))?;
    let onnx = aloha_face::convert::resnet_to_onnx(&model);
    println!(
        "resnet: {} convolutions, fc {}→{}, {} bytes of ONNX",
        model.convs.len(),
        model.fc_in,
        model.fc_out,
        onnx.len()
    );
    write_atomic(&out.join(aloha_face::models::RESNET), &onnx)?;

    let bf = read(blazeface)?;
    let (fixed, n) = aloha_face::convert::fix_constant_of_shape(&bf)
        .map_err(|e| anyhow::anyhow!("{}: {e}", blazeface.display()))?;
    println!("blazeface: {n} ConstantOfShape node(s) given an f32 value");
    write_atomic(&out.join(aloha_face::models::BLAZEFACE), &fixed)?;
    check(out)
}

fn check(dir: &Path) -> Result<()> {
    let t = std::time::Instant::now();
    let engine = aloha_face::Engine::load(dir)?;
    println!(
        "engine loaded from {} in {:.0} ms",
        dir.display(),
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(engine);
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Convert {
            resnet,
            landmarks,
            blazeface,
            out,
        } => convert(&resnet, &landmarks, &blazeface, &out),
        Cmd::Check { dir } => check(&dir),
    }
}
