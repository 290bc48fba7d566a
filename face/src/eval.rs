//! Evaluation: the seed's verification protocol, ROC figures with pair counts, and the fitted
//! impostor tail that the decision thresholds come from. Used by `aloha-eval`.

use crate::decide::probit;
use crate::profile::{Descriptor, Profile};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// Where the labelled sets are: `given`, else `$ALOHA_FACE_DATASETS`, else
/// `/work/shared/face/datasets` (never part of the repository: their terms forbid it).
pub fn datasets_dir(given: Option<std::path::PathBuf>) -> std::path::PathBuf {
    given
        .or_else(|| std::env::var_os("ALOHA_FACE_DATASETS").map(Into::into))
        .unwrap_or_else(|| "/work/shared/face/datasets".into())
}

/// The NUAA live-recording and photo-attack folders under `root`, when both are there.
pub fn nuaa_dirs(root: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (live, attacks) = (
        root.join("nuaa_live_webcam"),
        root.join("nuaa_photo_attacks"),
    );
    (live.is_dir() && attacks.is_dir()).then_some((live, attacks))
}

/// One image's result.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Identity (folder name).
    pub identity: String,
    /// File path (as given).
    pub path: String,
    /// Descriptor, when the engine accepted the image.
    pub descriptor: Option<Descriptor>,
}

/// A small, seedable PRNG (SplitMix64), so runs are reproducible everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Scores of one protocol run.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Distances of genuine comparisons.
    pub genuine: Vec<f64>,
    /// Distances of impostor comparisons.
    pub impostor: Vec<f64>,
    /// Distinct impostor (enrolment, probe) pairs behind `impostor`.
    pub unique_impostor: usize,
    /// Distinct genuine pairs.
    pub unique_genuine: usize,
    /// Identities that had enough good images to enrol and verify.
    pub identities_used: usize,
}

/// The seed's protocol: per identity with at least `enrol + verify` good images, `enrol`
/// random images are enrolled (scored like a profile: the smallest distance to any of
/// them), `verify` other images are genuine
/// attempts, and every good image of every other identity is an impostor attempt; repeated
/// for each seed.
pub fn protocol(samples: &[Sample], enrol: usize, verify: usize, seeds: &[u64]) -> Scores {
    if enrol == 0 {
        // Nothing enrolled: no profile to score against.
        return Scores::default();
    }
    let mut by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        if s.descriptor.is_some() {
            by_id.entry(&s.identity).or_default().push(i);
        }
    }
    let mut out = Scores::default();
    let mut uniq_imp: HashSet<(Vec<usize>, usize)> = HashSet::new();
    let mut uniq_gen: HashSet<(Vec<usize>, usize)> = HashSet::new();
    let mut used = HashSet::new();
    for &seed in seeds {
        let mut rng = Rng::new(seed);
        for (id, imgs) in &by_id {
            if imgs.len() < enrol + verify {
                continue;
            }
            used.insert(*id);
            let mut order = imgs.clone();
            rng.shuffle(&mut order);
            let mut refs: Vec<usize> = order[..enrol].to_vec();
            refs.sort_unstable();
            // Scored as a profile compares (Profile::distance: the nearest enrolled descriptor).
            // `by_id` holds only images with a descriptor, so every ref has one.
            let profile = Profile {
                label: String::new(),
                descriptors: refs
                    .iter()
                    .filter_map(|&i| samples[i].descriptor.clone())
                    .collect(),
            };
            let score = |d: &Descriptor| profile.distance(d).map(f64::from);
            for &p in &order[enrol..enrol + verify] {
                if let Some(score) = samples[p].descriptor.as_ref().and_then(score) {
                    out.genuine.push(score);
                    uniq_gen.insert((refs.clone(), p));
                }
            }
            for (other, oimgs) in &by_id {
                if other == id {
                    continue;
                }
                for &p in oimgs {
                    if let Some(score) = samples[p].descriptor.as_ref().and_then(score) {
                        out.impostor.push(score);
                        if enrol == 1 {
                            // Symmetric: (a, b) and (b, a) are the same image pair.
                            let (a, b) = (refs[0].min(p), refs[0].max(p));
                            uniq_imp.insert((vec![a], b));
                        } else {
                            uniq_imp.insert((refs.clone(), p));
                        }
                    }
                }
            }
        }
    }
    out.unique_impostor = uniq_imp.len();
    out.unique_genuine = uniq_gen.len();
    out.identities_used = used.len();
    out.genuine.sort_by(f64::total_cmp);
    out.impostor.sort_by(f64::total_cmp);
    out
}

/// Fraction of the sorted `v` at or below `t`.
pub fn frac_le(v: &[f64], t: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.partition_point(|&x| x <= t) as f64 / v.len() as f64
}

/// Equal error rate and its threshold.
pub fn eer(s: &Scores) -> Option<(f64, f64)> {
    if s.genuine.is_empty() || s.impostor.is_empty() {
        return None;
    }
    let mut cands: Vec<f64> = s.genuine.iter().chain(&s.impostor).copied().collect();
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    let mut best = (f64::INFINITY, 0.0, 0.0);
    for t in cands {
        let far = frac_le(&s.impostor, t);
        let frr = 1.0 - frac_le(&s.genuine, t);
        let gap = (far - frr).abs();
        if gap < best.0 {
            best = (gap, (far + frr) / 2.0, t);
        }
    }
    Some((best.1, best.2))
}

/// A TPR at a FAR target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AtFar {
    /// Measured: threshold, TPR, observed FAR.
    Measured {
        /// Accept distances strictly below this: the observed FAR is then ≤ the target.
        threshold: f64,
        /// Genuine acceptance at that threshold.
        tpr: f64,
        /// Observed FAR at that threshold.
        far: f64,
    },
    /// Fewer than 3/FAR distinct impostor pairs: zero observed false accepts would not show
    /// the rate (rule of three, 95 %).
    NotMeasurable {
        /// Distinct pairs available.
        pairs: usize,
        /// Distinct pairs needed.
        needed: usize,
    },
}

/// TPR at FAR `f` (see [`AtFar`]).
pub fn tpr_at_far(s: &Scores, f: f64) -> AtFar {
    let needed = (3.0 / f).ceil() as usize;
    if s.unique_impostor < needed || s.impostor.is_empty() {
        return AtFar::NotMeasurable {
            pairs: s.unique_impostor,
            needed,
        };
    }
    // Accept distances strictly below the (k+1)-th smallest impostor distance, k = ⌊f·n⌋:
    // then at most k impostor comparisons are accepted.
    let k = (f * s.impostor.len() as f64).floor() as usize;
    let threshold = s.impostor.get(k).copied().unwrap_or(f64::INFINITY);
    let below = |v: &[f64]| v.partition_point(|&x| x < threshold) as f64 / v.len().max(1) as f64;
    AtFar::Measured {
        threshold,
        tpr: below(&s.genuine),
        far: below(&s.impostor),
    }
}

/// The lower tail of the impostor distances fitted as a normal quantile line (see
/// [`crate::config::ThresholdModel`]): least squares of distance on Φ⁻¹(rank) over the lowest
/// `tail` fraction. Returns `(intercept, slope, points used)`.
pub fn fit_tail(impostor_sorted: &[f64], tail: f64) -> Option<(f64, f64, usize)> {
    let n = impostor_sorted.len();
    let m = ((n as f64) * tail).round() as usize;
    if m < 20 {
        return None;
    }
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for (i, &d) in impostor_sorted[..m].iter().enumerate() {
        let z = probit((i as f64 + 0.5) / n as f64);
        sx += z;
        sy += d;
        sxx += z * z;
        sxy += z * d;
    }
    let mf = m as f64;
    let slope = (mf * sxy - sx * sy) / (mf * sxx - sx * sx);
    let intercept = (sy - slope * sx) / mf;
    (slope.is_finite() && slope > 0.0).then_some((intercept, slope, m))
}

/// ROC as CSV: `threshold,far,tpr`, at most ~`rows` rows.
pub fn roc_csv(s: &Scores, rows: usize) -> String {
    let mut out = String::from("threshold,far,tpr\n");
    let mut cands: Vec<f64> = s.genuine.iter().chain(&s.impostor).copied().collect();
    cands.sort_by(f64::total_cmp);
    cands.dedup();
    let step = (cands.len() / rows.max(1)).max(1);
    for (i, t) in cands.iter().enumerate() {
        if i % step == 0 || i + 1 == cands.len() {
            let _ = writeln!(
                out,
                "{t:.5},{:.8},{:.6}",
                frac_le(&s.impostor, *t),
                frac_le(&s.genuine, *t)
            );
        }
    }
    out
}

/// An SVG plot of ROC curves (log FAR from 1e-6 to 1 against TPR) for several runs.
pub fn roc_svg(title: &str, curves: &[(&str, &Scores)]) -> String {
    let (w, h, l, r, t, b) = (640.0, 420.0, 60.0, 20.0, 40.0, 50.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let x = |far: f64| l + (far.max(1e-6).log10() + 6.0) / 6.0 * pw;
    let y = |tpr: f64| t + (1.0 - tpr) * ph;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        xml(title)
    );
    for k in 0..=6 {
        let xx = l + f64::from(k) / 6.0 * pw;
        let _ = writeln!(
            s,
            "<line x1=\"{xx}\" y1=\"{t}\" x2=\"{xx}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{xx}\" y=\"{}\" text-anchor=\"middle\">1e-{}</text>",
            t + ph,
            t + ph + 16.0,
            6 - k
        );
    }
    for k in 0..=10 {
        let v = f64::from(k) / 10.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.1}</text>",
            l + pw,
            l - 6.0,
            yy + 4.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">false-accept rate (log)</text>",
        l + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">true-accept rate</text>",
        t + ph / 2.0,
        t + ph / 2.0
    );
    let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    for (i, (name, sc)) in curves.iter().enumerate() {
        let c = colours[i % colours.len()];
        let mut pts = String::new();
        let n = sc.impostor.len();
        if n == 0 {
            continue;
        }
        // Points at log-spaced impostor ranks, from the strictest threshold upwards.
        let lo = (1.0 / n as f64).log10();
        let mut last = usize::MAX;
        for step in 0..=400 {
            let far = 10f64.powf(lo * (1.0 - f64::from(step) / 400.0));
            let k = ((far * n as f64).round() as usize).clamp(1, n) - 1;
            if k == last {
                continue;
            }
            last = k;
            let thr = sc.impostor[k];
            let _ = write!(
                pts,
                "{:.1},{:.1} ",
                x((k + 1) as f64 / n as f64),
                y(frac_le(&sc.genuine, thr))
            );
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{pts}\"/>"
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{}</text>",
            l + 10.0,
            t + ph - 10.0 - 16.0 * i as f64,
            xml(name)
        );
    }
    let _ = writeln!(
        s,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"black\"/>\n</svg>"
    );
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Median and 95th percentile.
pub fn median_p95(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DESCRIPTOR_LEN;

    fn sample(id: &str, x: f32) -> Sample {
        let mut d = [0f32; DESCRIPTOR_LEN];
        d[0] = x;
        Sample {
            identity: id.into(),
            path: format!("{id}/{x}"),
            descriptor: Some(Descriptor(d)),
        }
    }

    #[test]
    fn protocol_counts_pairs_and_separates_people() {
        // Three people far apart, each with 4 images spread by 0.1.
        let mut v = Vec::new();
        for (k, id) in ["a", "b", "c"].iter().enumerate() {
            for j in 0..4 {
                v.push(sample(id, k as f32 * 10.0 + j as f32 * 0.1));
            }
        }
        v.push(Sample {
            identity: "a".into(),
            path: "a/bad".into(),
            descriptor: None,
        });
        let s = protocol(&v, 1, 2, &[1, 2, 3]);
        assert_eq!(s.identities_used, 3);
        assert_eq!(s.genuine.len(), 3 * 3 * 2);
        assert_eq!(s.impostor.len(), 3 * 3 * 8);
        assert!(s.genuine.iter().all(|&d| d <= 0.31) && s.impostor.iter().all(|&d| d >= 9.0));
        let (e, t) = eer(&s).unwrap();
        assert_eq!(e, 0.0);
        assert!(t > 0.0 && t < 9.0);
        // 12 good images: at most 48 distinct cross-identity pairs.
        assert!(s.unique_impostor <= 48);
        assert!(matches!(tpr_at_far(&s, 1e-3), AtFar::NotMeasurable { .. }));
        let k = protocol(&v, 2, 2, &[1]);
        assert_eq!(k.genuine.len(), 3 * 2);
        // K-image enrolment scores like a profile: the nearest enrolled image (images 0.1
        // apart, so a probe is within 0.2 of one of two others; their mean can be 0.25 away).
        let k = protocol(&v, 2, 2, &(1..=20).collect::<Vec<_>>());
        assert!(
            k.genuine.iter().all(|&d| d <= 0.2 + 1e-6),
            "{:?}",
            k.genuine
        );
        // Enrolling nothing scores nothing (rather than infinite distances).
        let none = protocol(&v, 0, 2, &[1]);
        assert!(none.genuine.is_empty() && none.impostor.is_empty());
        assert_eq!(none.identities_used, 0);
    }

    #[test]
    fn tpr_at_far_uses_the_impostor_quantile() {
        let s = Scores {
            genuine: vec![0.1, 0.2, 0.3, 0.6],
            impostor: (0..1000).map(|i| 0.5 + f64::from(i) / 1000.0).collect(),
            unique_impostor: 1000,
            unique_genuine: 4,
            identities_used: 2,
        };
        match tpr_at_far(&s, 1e-2) {
            AtFar::Measured {
                threshold,
                tpr,
                far,
            } => {
                assert!(
                    far <= 1e-2 && (threshold - 0.51).abs() < 1e-9,
                    "{threshold} {far}"
                );
                assert_eq!(tpr, 0.75);
            }
            AtFar::NotMeasurable { .. } => panic!("1000 pairs measure 1e-2"),
        }
        assert!(matches!(
            tpr_at_far(&s, 1e-3),
            AtFar::NotMeasurable { needed: 3000, .. }
        ));
    }

    #[test]
    fn tail_fit_recovers_a_normal() {
        // Exact normal quantiles with mean 0.9 and sd 0.08.
        let n = 20000;
        let v: Vec<f64> = (0..n)
            .map(|i| 0.9 + 0.08 * probit((f64::from(i) + 0.5) / f64::from(n)))
            .collect();
        let (a, b, m) = fit_tail(&v, 0.1).unwrap();
        assert!((a - 0.9).abs() < 1e-3 && (b - 0.08).abs() < 1e-3, "{a} {b}");
        assert_eq!(m, 2000);
        assert!(fit_tail(&v[..10], 0.1).is_none());
    }

    #[test]
    fn shuffle_is_seeded() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        Rng::new(7).shuffle(&mut a);
        Rng::new(7).shuffle(&mut b);
        assert_eq!(a, b);
        let mut c: Vec<u32> = (0..50).collect();
        Rng::new(8).shuffle(&mut c);
        assert_ne!(a, c);
    }
}
