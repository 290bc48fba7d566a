//! `aloha-face-bench`: per-stage timings of the face pipeline on one thread, model load time
//! and peak resident memory. Prints figures; asserts nothing.
//!
//! `aloha-face-bench [--models DIR] [--frame IMAGE] [--iterations N]` (default frame: the
//! 640×480 reference frame `obama.png` from the crate's test data). Build with `--release`.

use aloha_face::chip::{self, CHIP_PADDING, CHIP_SIZE};
use aloha_face::engine::{LANDMARK_PASSES, rect_from_detection};
use aloha_face::frame::Gray;
use aloha_face::liveness::{Liveness, LivenessConfig};
use aloha_face::{Engine, Frame, pose, quality};
use anyhow::{Context, Result, bail};
use clap::Parser;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Benchmark the face pipeline (one thread)")]
struct Cli {
    /// Model directory (default: $ALOHA_MODELS or <workspace>/target/models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Frame to time (default: tests/data/reference/obama.png, 640×480).
    #[arg(long)]
    frame: Option<PathBuf>,
    /// Timed repetitions per stage.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
}

fn status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    for _ in 0..3.min(n) {
        std::hint::black_box(f());
    }
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    aloha_face::eval::median_p95(&mut v)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let dir = cli
        .models
        .clone()
        .unwrap_or_else(aloha_face::models::dev_dir);
    let rss0 = status_kb("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let engine = Engine::load(&dir)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_loaded = status_kb("VmRSS:").unwrap_or(0);

    let path = cli.frame.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference/obama.png")
    });
    let frame = Frame::load(&path).with_context(|| format!("loading {}", path.display()))?;
    let n = cli.iterations.max(1);
    println!(
        "# aloha-face-bench: {} ({}x{}), {n} iterations per stage, one thread",
        path.display(),
        frame.width(),
        frame.height()
    );
    println!(
        "model load: {load_ms:.0} ms (RSS {} MB before, {} MB after)",
        rss0 / 1024,
        rss_loaded / 1024
    );

    let gray = frame.to_gray8().into_owned();
    let img = Gray {
        w: frame.width(),
        h: frame.height(),
        data: &gray,
    };
    let faces = engine.detector().detect(&img)?;
    let Some(face) = faces.first().copied() else {
        bail!("no face in {}", path.display())
    };
    let rect = rect_from_detection(&face);
    let pts = engine
        .landmark_model()
        .predict_refined(&img, rect, LANDMARK_PASSES);
    let mut lm = [[0.0; 2]; 5];
    for (o, p) in lm.iter_mut().zip(&pts) {
        *o = *p;
    }
    let details = chip::face_chip_details(&lm, CHIP_SIZE, CHIP_PADDING);
    let the_chip = chip::extract_chip(&img, &details, CHIP_SIZE);

    let wide: Vec<u16> = gray.iter().map(|&v| u16::from(v) << 2).collect();
    let frame16 = Frame::gray16(frame.width(), frame.height(), 10, wide)?;

    let mut rows = Vec::new();
    rows.push((
        "16→8-bit conversion (Y16 input)",
        time(n, || frame16.to_gray8().len()),
    ));
    rows.push((
        "detect: letterbox to 128x128 only",
        time(n, || aloha_face::detect::letterbox(&img, 0.0).0.len()),
    ));
    rows.push((
        "detect (BlazeFace 128, letterbox)",
        time(n, || engine.detector().detect(&img).map(|v| v.len())),
    ));
    rows.push((
        "landmarks, one cascade pass",
        time(n, || engine.landmark_model().predict(&img, rect)),
    ));
    rows.push((
        "landmarks, refined (1 + 5 passes)",
        time(n, || {
            engine
                .landmark_model()
                .predict_refined(&img, rect, LANDMARK_PASSES)
        }),
    ));
    rows.push((
        "head pose (keypoint fit)",
        time(n, || pose::estimate_from_keypoints(&face.keypoints)),
    ));
    rows.push((
        "align: 150x150 chip",
        time(n, || chip::extract_chip(&img, &details, CHIP_SIZE)),
    ));
    rows.push(("quality gates", time(n, || quality::measure(&the_chip))));
    let net = engine.resnet().net();
    let descriptor = time(n, || engine.resnet().describe_gray(&the_chip).map(|d| d[0]));
    let gflops = 2.0 * net.macs() as f64 / (descriptor.0 * 1e-3) / 1e9;
    println!(
        "descriptor network: {:.3} G multiply-adds per chip, {gflops:.1} GFLOP/s at the median ({} kernel)",
        net.macs() as f64 / 1e9,
        net.isa().name()
    );
    rows.push(("descriptor (dlib ResNet, own executor)", descriptor));
    rows.push((
        "whole pipeline, 8-bit frame",
        time(n, || engine.analyze(&frame).is_ok()),
    ));
    rows.push((
        "whole pipeline, 16-bit frame",
        time(n, || engine.analyze(&frame16).is_ok()),
    ));
    // Liveness on top of the pipeline: each good frame of an attempt is observed once (its
    // summed-area table, chip and ring) and compared with the previous good frame.
    let analysis = engine
        .analyze(&frame)
        .map_err(|r| anyhow::anyhow!("{}: {r}", path.display()))?;
    let mut liveness = Liveness::new(LivenessConfig::default());
    liveness.observe(&frame, &analysis);
    rows.push((
        "liveness: observe a frame and compare it with the previous one",
        time(n, || {
            liveness.observe(&frame, &analysis).map(|c| c.nonrigid)
        }),
    ));
    println!("| stage | median ms | p95 ms |\n|---|---|---|");
    for (name, (m, p)) in rows {
        println!("| {name} | {m:.2} | {p:.2} |");
    }
    let hwm = status_kb("VmHWM:").unwrap_or(0);
    println!("peak resident memory (VmHWM): {} MB", hwm / 1024);
    println!(
        "threads in this process: {}",
        status_kb("Threads:").unwrap_or(0)
    );
    Ok(())
}
