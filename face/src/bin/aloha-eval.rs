//! `aloha-eval`: how often does the face engine let the wrong person in, with numbers.
//!
//! `aloha-eval DATASET [--dump FILE] [--out DIR --name NAME] [--seeds N] [--enrol-k K]`
//! where DATASET is laid out `<identity>/<image>` (png, jpg, pgm, bmp; 8- or 16-bit).
//! Runs on one thread so the timings are per-core figures.

use aloha_face::eval::{self, AtFar, Sample, Scores};
use aloha_face::frame::is_image;
use aloha_face::{Engine, FaceConfig, Frame};
use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Evaluate the face engine on a labelled dataset (<identity>/<images>)")]
struct Cli {
    /// Dataset directory: one sub-directory per identity.
    dataset: PathBuf,
    /// Model directory (default: $ALOHA_MODELS or <workspace>/target/models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Write one JSON line per image here.
    #[arg(long)]
    dump: Option<PathBuf>,
    /// Directory for the ROC CSV and SVG files.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name used in file names and titles (default: the dataset's directory name).
    #[arg(long)]
    name: Option<String>,
    /// Number of seeded permutations of the protocol.
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Images per enrolment in the K-image variant.
    #[arg(long, default_value_t = 3)]
    enrol_k: usize,
    /// Override the pose gate (degrees, yaw and pitch); 90 disables it.
    #[arg(long)]
    pose_limit: Option<f32>,
    /// Override the smallest accepted eye distance (pixels).
    #[arg(long)]
    min_eye_distance: Option<f32>,
    /// Fraction of the lowest impostor distances used for the tail fit.
    #[arg(long, default_value_t = 0.05)]
    tail: f64,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn group_of(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let g = stem.split(['_', '.']).next().unwrap_or(stem);
    if g.chars().all(|c| c.is_ascii_digit()) {
        "(numbered)".into()
    } else {
        g.to_string()
    }
}

fn print_scores(label: &str, s: &Scores, tail: f64) {
    println!("\n## {label}");
    println!(
        "identities used {}; genuine comparisons {} ({} distinct pairs); impostor comparisons {} ({} distinct pairs)",
        s.identities_used,
        s.genuine.len(),
        s.unique_genuine,
        s.impostor.len(),
        s.unique_impostor
    );
    match eval::eer(s) {
        Some((e, t)) => println!("EER {:.2} % at distance {t:.3}", e * 100.0),
        None => println!("EER not measurable (no genuine or no impostor comparisons)"),
    }
    println!(
        "| FAR target | threshold (accept d <) | TPR | observed FAR | distinct impostor pairs |"
    );
    println!("|---|---|---|---|---|");
    for f in [1e-2, 1e-3, 1e-4, 1e-5] {
        match eval::tpr_at_far(s, f) {
            AtFar::Measured {
                threshold,
                tpr,
                far,
            } => println!(
                "| {f:.0e} | {threshold:.3} | {:.2} % | {:.1e} | {} |",
                tpr * 100.0,
                far,
                s.unique_impostor
            ),
            AtFar::NotMeasurable { pairs, needed } => {
                println!("| {f:.0e} | not measurable | – | – | {pairs} (need ≥ {needed}) |")
            }
        }
    }
    if let Some((a, b, m)) = eval::fit_tail(&s.impostor, tail) {
        println!(
            "impostor tail fit (lowest {:.0} %, {m} comparisons): d(f) = {a:.4} + {b:.4}·Φ⁻¹(f)",
            tail * 100.0
        );
        print!("  extrapolated thresholds:");
        for f in [1e-2, 1e-3, 1e-4, 1e-5, 1e-6] {
            let t = a + b * aloha_face::decide::probit(f);
            print!(
                " {f:.0e}→{t:.3} (TPR {:.1} %)",
                eval::frac_le(&s.genuine, t) * 100.0
            );
        }
        println!();
        let lowest = s.impostor.first().copied().unwrap_or(f64::NAN);
        println!("  lowest impostor distance observed: {lowest:.3}");
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let name = cli
        .name
        .clone()
        .or_else(|| {
            cli.dataset
                .file_name()
                .and_then(|n| n.to_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "dataset".into());
    let mut cfg = FaceConfig {
        model_dir: cli
            .models
            .clone()
            .unwrap_or_else(aloha_face::models::dev_dir),
        ..FaceConfig::default()
    };
    if let Some(p) = cli.pose_limit {
        cfg.max_yaw = p;
        cfg.max_pitch = p;
    }
    if let Some(m) = cli.min_eye_distance {
        cfg.min_eye_distance = m;
    }
    let t = Instant::now();
    let engine = Engine::with_config(&cfg)?;
    println!(
        "# aloha-eval: {name}\nmodels loaded in {:.0} ms; pose gate ±{}°/±{}°; min eye distance {} px",
        ms(t.elapsed()),
        cfg.max_yaw,
        cfg.max_pitch,
        cfg.min_eye_distance
    );

    let mut ids: Vec<PathBuf> = std::fs::read_dir(&cli.dataset)
        .with_context(|| format!("cannot read dataset {}", cli.dataset.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    ids.sort();
    if ids.is_empty() {
        bail!(
            "{} has no identity sub-directories (expected <identity>/<images>)",
            cli.dataset.display()
        );
    }
    let mut dump = match &cli.dump {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut samples = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut groups: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut group_pose: BTreeMap<String, Vec<(f32, f32)>> = BTreeMap::new();
    let mut stage: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut total = 0usize;
    for dir in &ids {
        let identity = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        files.sort();
        for path in files {
            total += 1;
            let (result, pose) = match Frame::load(&path) {
                Err(e) => (Err(("unreadable".to_string(), e.to_string())), None),
                Ok(frame) => {
                    let t0 = Instant::now();
                    let (r, t) = engine.analyze_timed(&frame);
                    match r {
                        Ok(a) => {
                            let whole = ms(t0.elapsed());
                            stage.entry("1 detect").or_default().push(ms(t.detect));
                            stage
                                .entry("2 landmarks")
                                .or_default()
                                .push(ms(t.landmarks));
                            stage
                                .entry("3 align+quality")
                                .or_default()
                                .push(ms(t.align));
                            stage
                                .entry("4 descriptor")
                                .or_default()
                                .push(ms(t.descriptor));
                            stage.entry("5 whole frame").or_default().push(whole);
                            let p = a.pose;
                            (Ok(a), Some(p))
                        }
                        Err(rej) => {
                            let kind = serde_json::to_value(rej.kind)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default();
                            (Err((kind, rej.reason)), rej.pose)
                        }
                    }
                }
            };
            let group = group_of(&path);
            let outcome = match &result {
                Ok(_) => "ok".to_string(),
                Err((k, _)) => k.clone(),
            };
            *groups
                .entry(group.clone())
                .or_default()
                .entry(outcome)
                .or_default() += 1;
            if let Some(p) = pose {
                group_pose.entry(group).or_default().push((p.yaw, p.pitch));
            }
            if let Err((k, _)) = &result {
                *reasons.entry(k.clone()).or_default() += 1;
            }
            if let Some(out) = dump.as_mut() {
                let line = json!({
                    "path": path.display().to_string(),
                    "identity": identity,
                    "descriptor": result.as_ref().ok().map(|a| a.descriptor.0.to_vec()),
                    "error": result.as_ref().err().map(|(_, why)| why.clone()),
                    "reject_kind": result.as_ref().err().map(|(k, _)| k.clone()),
                    "yaw": pose.map(|p| p.yaw),
                    "pitch": pose.map(|p| p.pitch),
                    "roll": pose.map(|p| p.roll),
                });
                writeln!(out, "{line}")?;
            }
            samples.push(Sample {
                identity: identity.clone(),
                path: path.display().to_string(),
                descriptor: result.ok().map(|a| a.descriptor),
            });
        }
    }
    if let Some(mut d) = dump {
        d.flush()?;
    }
    let failed: usize = reasons.values().sum();
    println!(
        "images {total}, identities {}; failure to acquire {failed}/{total} = {:.1} %",
        ids.len(),
        100.0 * failed as f64 / total.max(1) as f64
    );
    for (k, n) in &reasons {
        println!("  {k}: {n}");
    }
    if groups.len() > 1 && groups.len() <= 12 {
        println!(
            "by file-name group (outcome counts; median |yaw|, |pitch| where landmarks were found):"
        );
        for (g, m) in &groups {
            let mut yaw: Vec<f64> = group_pose
                .get(g)
                .map(|v| v.iter().map(|p| f64::from(p.0.abs())).collect())
                .unwrap_or_default();
            let mut pitch: Vec<f64> = group_pose
                .get(g)
                .map(|v| v.iter().map(|p| f64::from(p.1.abs())).collect())
                .unwrap_or_default();
            let (my, _) = eval::median_p95(&mut yaw);
            let (mp, _) = eval::median_p95(&mut pitch);
            let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!(
                "  {g}: {} | median |yaw| {my:.1}°, |pitch| {mp:.1}°",
                parts.join(", ")
            );
        }
    }

    let seeds: Vec<u64> = (1..=cli.seeds).collect();
    let one = eval::protocol(&samples, 1, 2, &seeds);
    let k = eval::protocol(&samples, cli.enrol_k, 2, &seeds);
    print_scores(
        &format!(
            "1-image enrolment, 2 verification images, {} seeds",
            cli.seeds
        ),
        &one,
        cli.tail,
    );
    print_scores(
        &format!(
            "{}-image enrolment (nearest of the K descriptors, as a profile compares), 2 verification images, {} seeds",
            cli.enrol_k, cli.seeds
        ),
        &k,
        cli.tail,
    );

    println!(
        "\n## operating points of the default decision (target FAR {:.0e} per attempt, M = {} of K = {}, at most T = {} frames per attempt; R = enrolled descriptors)",
        cfg.target_far, cfg.match_frames, cfg.window_frames, cfg.max_attempt_frames
    );
    println!(
        "| enrolled users N | R | per-comparison FAR | threshold | per-frame TPR | impostor comparisons under it |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [1usize, 10, 100] {
        let dc = aloha_face::decide::DeciderConfig::from_face(&cfg, n);
        for (r, s) in [(1usize, &one), (cli.enrol_k, &k)] {
            let t = dc.threshold(r);
            let under = s.impostor.partition_point(|&d| d <= t);
            println!(
                "| {n} | {r} | {:.1e} | {t:.3} | {:.1} % | {under} of {} |",
                dc.per_comparison_far(r),
                eval::frac_le(&s.genuine, t) * 100.0,
                s.impostor.len()
            );
        }
    }

    if let Some(out) = &cli.out {
        std::fs::create_dir_all(out)?;
        std::fs::write(
            out.join(format!("{name}-roc-1img.csv")),
            eval::roc_csv(&one, 500),
        )?;
        std::fs::write(
            out.join(format!("{name}-roc-{}img.csv", cli.enrol_k)),
            eval::roc_csv(&k, 500),
        )?;
        let label1 = format!(
            "1-image enrolment ({} genuine / {} impostor comparisons)",
            one.genuine.len(),
            one.impostor.len()
        );
        let labelk = format!(
            "{}-image enrolment ({} genuine / {} impostor comparisons)",
            cli.enrol_k,
            k.genuine.len(),
            k.impostor.len()
        );
        let svg = eval::roc_svg(
            &format!("{name}: ROC, {} seeds", cli.seeds),
            &[(&label1, &one), (&labelk, &k)],
        );
        std::fs::write(out.join(format!("{name}-roc.svg")), svg)?;
        println!(
            "\nROC written to {}/{name}-roc-*.csv and {name}-roc.svg",
            out.display()
        );
    }

    println!(
        "\n## per-stage time on one thread, accepted frames (ms)\n| stage | median | p95 | n |\n|---|---|---|---|"
    );
    for (s, v) in stage.iter_mut() {
        let n = v.len();
        let (m, p) = eval::median_p95(v);
        println!("| {} | {m:.2} | {p:.2} | {n} |", &s[2..]);
    }
    Ok(())
}
