//! `aloha-liveness-eval`: plays the NUAA streams as sign-in attempts through
//! [`aloha_face::Attempt`] and counts what is accepted.
//!
//! `aloha-liveness-eval [DATASETS] [--enrol K] [--cues]` where DATASETS (default
//! `$ALOHA_FACE_DATASETS`, else `/work/shared/face/datasets`) holds `nuaa_live_webcam` and
//! `nuaa_photo_attacks`, one folder per person, file names in time order. For each person:
//! enrol from the first K frames of the live recording; genuine attempts are the rest of that
//! recording cut into windows of T frames (T = `max_attempt_frames`); attack attempts are the
//! person's photo-attack stream cut the same way; impostor attempts are the other people's
//! live windows against this person's profile. Then the cross-day case (person 0007, sessions
//! 00 and 01) with and without adaptation after a confirmed PIN.

use aloha_face::attempt::{ADAPTED_LABEL, Attempt, Progress, Refusal};
use aloha_face::frame::is_image;
use aloha_face::liveness::{Liveness, NotLive, PairCues};
use aloha_face::profile::{EnrolSettings, Profile, ProfileSet};
use aloha_face::{Analysis, Engine, FaceConfig, Frame, Reject};
use anyhow::{Context, Result, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Play the NUAA live and photo-attack streams as face sign-in attempts")]
struct Cli {
    /// Directory holding nuaa_live_webcam and nuaa_photo_attacks (default:
    /// $ALOHA_FACE_DATASETS or /work/shared/face/datasets).
    datasets: Option<PathBuf>,
    /// Model directory (default: $ALOHA_MODELS or <workspace>/target/models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Live frames each person enrols from (the first K of the recording).
    #[arg(long, default_value_t = 8)]
    enrol: usize,
    /// Print every pair's cues (motion, surroundings, non-rigid, parallax) per stream.
    #[arg(long)]
    cues: bool,
}

/// One stream: its frames' paths and the engine's results.
struct Stream {
    files: Vec<PathBuf>,
    results: Vec<Result<Analysis, Reject>>,
}

impl Stream {
    fn load(engine: &Engine, dir: &Path) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        files.sort();
        let mut results = Vec::with_capacity(files.len());
        for f in &files {
            results.push(engine.analyze(&Frame::load(f)?));
        }
        Ok(Self { files, results })
    }

    fn frame(&self, i: usize) -> Result<Frame<'static>> {
        Ok(Frame::load(&self.files[i])?)
    }

    fn session(&self, i: usize) -> String {
        self.files[i]
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('_').next())
            .unwrap_or("")
            .to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Matched,
    NoMatch,
    Sheet,
    NoLife,
    Unfinished,
}

fn outcome(p: &Progress) -> Outcome {
    match p {
        Progress::Matched(_) => Outcome::Matched,
        Progress::Refused(Refusal::NotLive(NotLive::Sheet { .. })) => Outcome::Sheet,
        Progress::Refused(Refusal::NotLive(NotLive::NoSignOfLife { .. })) => Outcome::NoLife,
        Progress::Refused(_) => Outcome::NoMatch,
        Progress::Continue { .. } => Outcome::Unfinished,
    }
}

/// Plays frames `range` of `stream` as one attempt against `set`, until the attempt ends
/// (or the frames do); also returns the frames used.
fn play<'p>(
    cfg: &FaceConfig,
    set: &'p ProfileSet,
    stream: &Stream,
    range: std::ops::Range<usize>,
) -> Result<(Progress, Attempt<'p>, std::ops::Range<usize>)> {
    let mut attempt = Attempt::new(cfg, set, 1);
    let mut last = Progress::Continue { hint: None };
    let mut end = range.start;
    for i in range {
        end = i + 1;
        last = attempt.push(&stream.frame(i)?, &stream.results[i]);
        if !matches!(last, Progress::Continue { .. }) {
            break;
        }
    }
    Ok((last, attempt, 0..end))
}

/// Consecutive attempts over frames `from..` of `stream`: each starts where the previous
/// one ended (matched, refused, or out of frames), as the daemon would start the next.
fn attempts<'p>(
    cfg: &FaceConfig,
    set: &'p ProfileSet,
    stream: &Stream,
    from: usize,
) -> Result<Vec<(Progress, Attempt<'p>, std::ops::Range<usize>)>> {
    let mut out = Vec::new();
    let mut s = from;
    while s < stream.files.len() {
        let (p, a, used) = play(cfg, set, stream, s..stream.files.len())?;
        let range = s..used.end;
        s = used.end;
        // A tail the stream cut short (fewer than T good frames, undecided) is not an attempt.
        if matches!(p, Progress::Continue { .. }) {
            break;
        }
        out.push((p, a, range));
    }
    Ok(out)
}

fn enrol(stream: &Stream, frames: std::ops::Range<usize>) -> Option<ProfileSet> {
    let good: Vec<Analysis> = stream.results[frames]
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let profile = Profile::enrol("default", &good, &EnrolSettings::default()).ok()?;
    let mut set = ProfileSet::new("user");
    set.upsert(profile);
    Some(set)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    n: usize,
    by: [usize; 5],
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        self.n += 1;
        self.by[o as usize] += 1;
    }
    fn accepted(&self) -> usize {
        self.by[Outcome::Matched as usize]
    }
    fn merge(&mut self, o: &Tally) {
        self.n += o.n;
        for (a, b) in self.by.iter_mut().zip(o.by) {
            *a += b;
        }
    }
    /// "accepted/attempts (no match a, sheet b, no sign of life c, unfinished d)".
    fn show(&self) -> String {
        format!(
            "{}/{} (refused: no match {}, sheet {}, no life {}; unfinished {})",
            self.accepted(),
            self.n,
            self.by[1],
            self.by[2],
            self.by[3],
            self.by[4]
        )
    }
}

fn quantiles(v: &mut Vec<f64>) -> String {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return "n 0".into();
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "n {:3} min {:.3} p10 {:.3} p50 {:.3} p90 {:.3} max {:.3}",
        v.len(),
        q(0.0),
        q(0.1),
        q(0.5),
        q(0.9),
        q(1.0)
    )
}

/// Every pair's cues of a whole stream (one track, the way an attempt sees it).
fn stream_cues(cfg: &FaceConfig, s: &Stream) -> Result<Vec<PairCues>> {
    let mut l = Liveness::new(cfg.liveness);
    let mut out = Vec::new();
    for i in 0..s.files.len() {
        if let Ok(a) = &s.results[i]
            && let Some(c) = l.observe(&s.frame(i)?, a)
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// The four cues of one window of T good frames, each as the decision counts pairs (two
/// pairs needed, `live_pairs` = `attack_pairs` = 2): the 2nd most live-looking or
/// sheet-looking pair value. Index: 0 still surroundings (2nd smallest score), 1 non-rigid
/// at moderate motion (2nd largest), 2 carried surroundings (2nd largest score), 3 rigid
/// (2nd smallest non-rigid change among pairs that moved `rigid_motion`).
type Cues4 = [f64; 4];

/// A window of T good frames: person, live (true) or attack, its cues.
type Window = (String, bool, Cues4);

fn window_cues(cfg: &FaceConfig, s: &Stream, w: &[usize]) -> Result<Cues4> {
    let l = &cfg.liveness;
    let mut tracker = Liveness::new(*l);
    let mut cues = Vec::new();
    for &i in w {
        if let Ok(a) = &s.results[i]
            && let Some(c) = tracker.observe(&s.frame(i)?, a)
        {
            cues.push(c);
        }
    }
    let second = |mut v: Vec<f64>, largest: bool| {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        if largest {
            v.reverse();
        }
        v.get(1).copied().unwrap_or(f64::NAN)
    };
    let measured: Vec<f64> = cues
        .iter()
        .filter(|c| c.motion >= l.min_motion)
        .map(|c| c.context)
        .collect();
    Ok([
        second(measured.clone(), false),
        second(
            cues.iter()
                .filter(|c| c.motion <= l.max_live_motion)
                .map(|c| c.nonrigid)
                .collect(),
            true,
        ),
        second(measured, true),
        second(
            cues.iter()
                .filter(|c| c.motion >= l.rigid_motion)
                .map(|c| c.nonrigid)
                .collect(),
            false,
        ),
    ])
}

/// Windows of T consecutive good frames from frame `from` on.
fn good_windows(s: &Stream, from: usize, t: usize) -> Vec<Vec<usize>> {
    let good: Vec<usize> = (from..s.files.len())
        .filter(|&i| s.results[i].is_ok())
        .collect();
    good.chunks_exact(t).map(<[usize]>::to_vec).collect()
}

/// Does cue `c` fire at threshold `t` (live cues 0–1 say "live", sheet cues 2–3 "sheet")?
fn fires(c: usize, v: f64, t: f64) -> bool {
    match c {
        0 => v <= t,
        1 => v >= t,
        2 => v >= t,
        _ => v < t,
    }
}

/// How each cue alone separates live from attack windows, at the configured thresholds and
/// leave-one-person-out: for each person, a live cue's threshold is the loosest at which none
/// of the other people's attack windows fires it, a sheet cue's the strictest at which none of
/// their live windows fires it.
fn separation(cfg: &FaceConfig, w: &[Window]) {
    let l = &cfg.liveness;
    let names = [
        "still surroundings (live sign)",
        "non-rigid change at moderate motion (live sign)",
        "surroundings carried with the face (sheet sign)",
        "rigid motion: moved, chip unchanged (sheet sign)",
    ];
    let fixed = [
        l.context_live,
        l.nonrigid_live,
        l.context_attack,
        l.rigid_nonrigid,
    ];
    let (ng, na) = (
        w.iter().filter(|x| x.1).count(),
        w.iter().filter(|x| !x.1).count(),
    );
    println!(
        "\n## each cue alone, windows of T good frames ({ng} live windows after enrolment, {na} attack windows)\n| cue | threshold | live windows it fires on | attack windows it fires on | leave-one-person-out: live | attack |\n|---|---|---|---|---|---|"
    );
    let people: std::collections::BTreeSet<&String> = w.iter().map(|x| &x.0).collect();
    let mut lopo = vec![[false; 4]; w.len()];
    for c in 0..4 {
        let count = |live: bool, f: &dyn Fn(usize, &Window) -> bool| {
            w.iter()
                .enumerate()
                .filter(|(i, x)| x.1 == live && f(*i, x))
                .count()
        };
        let g = count(true, &|_, x| fires(c, x.2[c], fixed[c]));
        let a = count(false, &|_, x| fires(c, x.2[c], fixed[c]));
        for p in &people {
            // Training values of the windows the cue must not fire on.
            let avoid = w
                .iter()
                .filter(|x| x.0 != **p && x.1 == (c >= 2))
                .map(|x| x.2[c])
                .filter(|v| v.is_finite());
            let t = match c {
                0 => avoid.fold(f64::INFINITY, f64::min) - 1e-9,
                1 => avoid.fold(f64::NEG_INFINITY, f64::max) + 1e-9,
                2 => avoid.fold(f64::NEG_INFINITY, f64::max) + 1e-9,
                _ => avoid.fold(f64::INFINITY, f64::min),
            };
            for (i, x) in w.iter().enumerate().filter(|(_, x)| x.0 == **p) {
                lopo[i][c] = fires(c, x.2[c], t);
            }
        }
        let lg = count(true, &|i, _| lopo[i][c]);
        let la = count(false, &|i, _| lopo[i][c]);
        println!(
            "| {} | {:.3} | {g}/{ng} | {a}/{na} | {lg}/{ng} | {la}/{na} |",
            names[c], fixed[c]
        );
    }
    let live = |f: &[bool; 4]| (f[0] || f[1]) && !(f[2] || f[3]);
    let fixed_fire = |x: &Cues4| {
        let mut f = [false; 4];
        for (c, v) in f.iter_mut().enumerate() {
            *v = fires(c, x[c], fixed[c]);
        }
        f
    };
    let judged = |live_windows: bool, lo: bool| {
        w.iter()
            .enumerate()
            .filter(|(i, x)| {
                x.1 == live_windows && live(&if lo { lopo[*i] } else { fixed_fire(&x.2) })
            })
            .count()
    };
    println!(
        "combined (a live sign and no sheet sign): live windows judged live {}/{ng}, attack windows judged live {}/{na}; leave-one-person-out: {}/{ng} and {}/{na}",
        judged(true, false),
        judged(false, false),
        judged(true, true),
        judged(false, true)
    );
}

fn print_cues(label: &str, cues: &[PairCues], cfg: &FaceConfig) {
    let mut ctx: Vec<f64> = cues
        .iter()
        .filter(|c| c.motion >= cfg.liveness.min_motion)
        .map(|c| c.context)
        .collect();
    let mut motion: Vec<f64> = cues.iter().map(|c| c.motion).collect();
    let mut nr: Vec<f64> = cues.iter().map(|c| c.nonrigid).collect();
    let mut px: Vec<f64> = cues.iter().map(|c| c.parallax).collect();
    println!("  {label} motion       {}", quantiles(&mut motion));
    println!("  {label} surroundings {}", quantiles(&mut ctx));
    println!("  {label} non-rigid    {}", quantiles(&mut nr));
    for (lo, hi) in [(0.0, 0.1), (0.1, 0.3), (0.3, 1.0), (1.0, 99.0)] {
        let mut v: Vec<f64> = cues
            .iter()
            .filter(|c| c.motion >= lo && c.motion < hi)
            .map(|c| c.nonrigid)
            .collect();
        println!(
            "  {label}   non-rigid at motion {lo}..{hi}: {}",
            quantiles(&mut v)
        );
    }
    println!("  {label} parallax     {}", quantiles(&mut px));
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = aloha_face::eval::datasets_dir(cli.datasets.clone());
    let Some((live_dir, attack_dir)) = aloha_face::eval::nuaa_dirs(&root) else {
        bail!(
            "{} needs nuaa_live_webcam/ and nuaa_photo_attacks/: give the datasets directory as the argument or in ALOHA_FACE_DATASETS",
            root.display()
        );
    };
    let cfg = FaceConfig {
        model_dir: cli
            .models
            .clone()
            .unwrap_or_else(aloha_face::models::dev_dir),
        ..FaceConfig::default()
    };
    let engine = Engine::with_config(&cfg)?;
    let t = cfg.max_attempt_frames;
    let mut people: Vec<String> = std::fs::read_dir(&live_dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    people.sort();

    let start = Instant::now();
    let mut live = BTreeMap::new();
    let mut attack = BTreeMap::new();
    for p in &people {
        live.insert(p.clone(), Stream::load(&engine, &live_dir.join(p))?);
        attack.insert(p.clone(), Stream::load(&engine, &attack_dir.join(p))?);
    }
    println!(
        "# aloha-liveness-eval: {} people, {} s to analyse the frames; enrol from the first {} live frames; attempts of T = {} frames (M = {} of K = {}), N = 1 enrolled user",
        people.len(),
        start.elapsed().as_secs(),
        cli.enrol,
        t,
        cfg.match_frames,
        cfg.window_frames
    );
    println!("liveness settings: {:?}", cfg.liveness);

    if cli.cues {
        println!("\n## cues of every pair of consecutive good frames, whole streams");
        for p in &people {
            println!("person {p}");
            print_cues("live  ", &stream_cues(&cfg, &live[p])?, &cfg);
            print_cues("attack", &stream_cues(&cfg, &attack[p])?, &cfg);
        }
    }

    println!(
        "\n## attempts per person (accepted/attempts; refusals by reason)\n| person | good frames live/attack | enrolled from | R | threshold | genuine accepted | attacks accepted | impostors accepted |\n|---|---|---|---|---|---|---|---|"
    );
    let mut scores: Vec<Window> = Vec::new();
    let mut imp_comparisons = 0usize;
    let (mut gen_all, mut att_all, mut imp_all) =
        (Tally::default(), Tally::default(), Tally::default());
    for p in &people {
        let ls = &live[p];
        // The first K frames; when the engine refuses them (too few good frames, or no pose
        // spread), the next frames too, up to 2K, as an enrolment that asks for more would.
        let Some((k, set)) = (cli.enrol..=(2 * cli.enrol).min(ls.files.len()))
            .find_map(|k| enrol(ls, 0..k).map(|s| (k, s)))
        else {
            println!(
                "| {p} | – | – | – | cannot enrol from the first {} frames | – | – |",
                2 * cli.enrol
            );
            continue;
        };
        let threshold =
            aloha_face::decide::DeciderConfig::from_face(&cfg, 1).threshold(set.references());
        let (mut g, mut a, mut imp) = (Tally::default(), Tally::default(), Tally::default());
        for (pr, _, _) in attempts(&cfg, &set, ls, k)? {
            g.add(outcome(&pr));
        }
        let at = &attack[p];
        for (pr, _, _) in attempts(&cfg, &set, at, 0)? {
            a.add(outcome(&pr));
        }
        for w in good_windows(ls, k, t) {
            scores.push((p.clone(), true, window_cues(&cfg, ls, &w)?));
        }
        for w in good_windows(at, 0, t) {
            scores.push((p.clone(), false, window_cues(&cfg, at, &w)?));
        }
        for q in people.iter().filter(|q| *q != p) {
            for (pr, at, _) in attempts(&cfg, &set, &live[q], cli.enrol)? {
                imp.add(outcome(&pr));
                imp_comparisons += at.compared() * set.references();
            }
        }
        let good = |s: &Stream| s.results.iter().filter(|r| r.is_ok()).count();
        println!(
            "| {p} | {}/{} | {k} | {} | {threshold:.3} | {} | {} | {} |",
            good(ls),
            good(at),
            set.references(),
            g.show(),
            a.show(),
            imp.show()
        );
        gen_all.merge(&g);
        att_all.merge(&a);
        imp_all.merge(&imp);
    }
    println!(
        "| total | | | | | {} | {} | {} |",
        gen_all.show(),
        att_all.show(),
        imp_all.show()
    );

    println!(
        "impostor attempts compared {imp_comparisons} frame-to-reference pairs in all (far too few to measure a per-attempt rate of 1e-5: that needs ≥ 3e5 attempts)"
    );
    separation(&cfg, &scores);
    cross_day(&cfg, &live)?;
    Ok(())
}

/// Person 0007 was recorded twice (sessions 00 and 01, another day and light): enrol from
/// session 00, sign in with session 01, without and with adaptation after a confirmed PIN.
fn cross_day(cfg: &FaceConfig, live: &BTreeMap<String, Stream>) -> Result<()> {
    let Some(s) = live.get("0007") else {
        println!("\n## cross-day: no person 0007");
        return Ok(());
    };
    let day1: Vec<usize> = (0..s.files.len())
        .filter(|&i| s.session(i) == "00")
        .collect();
    let (Some(&first2), Some(&last1)) = (
        (0..s.files.len()).find(|&i| s.session(i) != "00").as_ref(),
        day1.last(),
    ) else {
        println!("\n## cross-day: 0007 has only one session");
        return Ok(());
    };
    let Some(set) = enrol(s, 0..last1 + 1) else {
        println!("\n## cross-day: cannot enrol from 0007's first session");
        return Ok(());
    };
    let mut d: Vec<f64> = (first2..s.files.len())
        .filter_map(|i| s.results[i].as_ref().ok())
        .filter_map(|a| set.best_match(&a.descriptor).map(|(d, _)| f64::from(d)))
        .collect();
    let threshold =
        aloha_face::decide::DeciderConfig::from_face(cfg, 1).threshold(set.references());
    println!(
        "\n## cross-day (0007): enrolled from the {} frames of session 00 (R = {}, threshold {threshold:.3}); session 01 frames to the profile: {}",
        day1.len(),
        set.references(),
        quantiles(&mut d)
    );
    let mut plain = Tally::default();
    for (p, _, _) in attempts(cfg, &set, s, first2)? {
        plain.add(outcome(&p));
    }
    println!(
        "without adaptation: session 01 attempts accepted {}",
        plain.show()
    );
    let mut adapted = set.clone();
    let mut tally = Tally::default();
    let mut pins = 0;
    let mut log = Vec::new();
    let mut from = first2;
    while from < s.files.len() {
        let from_was = from;
        let (p, offer, used, evidence) = {
            let (p, attempt, used) = play(cfg, &adapted, s, from..s.files.len())?;
            (p, attempt.adaptation(cfg), used, attempt.evidence())
        };
        from = used.end;
        let o = outcome(&p);
        if o == Outcome::Unfinished {
            break;
        }
        tally.add(o);
        let best = match &p {
            Progress::Refused(Refusal::NoMatch { best, .. }) => format!(" best {best:.3}"),
            Progress::Matched(m) => format!(" score {:.3}", m.score),
            _ => String::new(),
        };
        let mut note = format!(
            "frames {from_was}..{} {o:?}{best} (live pairs {}/{})",
            used.end, evidence.live, evidence.pairs
        );
        if o != Outcome::Matched {
            // The user types the PIN right after the refused attempt.
            pins += 1;
            if let Some(a) = offer {
                let n = a.len();
                let kept = adapted.adapt(a, cfg);
                note += &format!(" → PIN, +{n} adapted ({kept} kept)");
            } else {
                note += " → PIN, nothing to adapt";
            }
        }
        log.push(note);
    }
    let r = adapted.references();
    let t2 = aloha_face::decide::DeciderConfig::from_face(cfg, 1).threshold(r);
    println!(
        "with adaptation after a confirmed PIN: accepted {}; PIN sign-ins {pins}; R at the end {r} (profile {ADAPTED_LABEL:?}), threshold {t2:.3}",
        tally.show()
    );
    println!("  attempts in time order: {}", log.join("; "));
    // The adapted profile against everyone else's live recording.
    let mut imp = Tally::default();
    let mut pairs = 0usize;
    for (_, other) in live.iter().filter(|(q, _)| q.as_str() != "0007") {
        for (p, a, _) in attempts(cfg, &adapted, other, 0)? {
            imp.add(outcome(&p));
            pairs += a.compared() * adapted.references();
        }
    }
    println!(
        "impostors against the adapted profile (the other people's whole live recordings): accepted {} ({pairs} frame-to-reference pairs)",
        imp.show()
    );
    Ok(())
}
