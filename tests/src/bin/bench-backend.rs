//! How long one sign-in signature takes in each key store.
//!
//! `cargo run --release -p aloha-tests --bin bench-backend [-- RUNS [tpm|software]]` (default
//! 300 runs, both stores). The load average is printed with the figures: on a shared machine
//! other work inflates them.
//! TPM: a private swtpm; each `sign` is TPM2_StartAuthSession (salted to the storage primary) +
//! TPM2_Load + TPM2_Sign with parameter encryption + two TPM2_FlushContext. Software: Argon2id
//! at the default 64 MiB / 3 passes + XChaCha20-Poly1305 + P-256 ECDSA.

use std::time::{Duration, Instant};

use aloha::Secret;
use aloha::challenge::{self, Nonce};
use aloha_helper::backend::software::SoftwareVault;
use aloha_helper::backend::tpm::TpmBackend;
use aloha_helper::backend::{AuthValue, KeyBackend, SALT_LEN};
use aloha_tests::swtpm::{self, Swtpm};

const WARMUP: usize = 10;

struct Stats {
    runs: usize,
    median: Duration,
    p95: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        runs: samples.len(),
        median: at(0.5),
        p95: at(0.95),
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1000.0)
}

fn report(what: &str, s: &Stats) {
    println!(
        "{what:<48} runs {:>4}  median {}  p95 {}  min {}  max {}",
        s.runs,
        ms(s.median),
        ms(s.p95),
        ms(s.min),
        ms(s.max)
    );
}

fn time(runs: usize, mut op: impl FnMut()) -> Stats {
    for _ in 0..WARMUP.min(runs) {
        op();
    }
    let samples = (0..runs)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed()
        })
        .collect();
    stats(samples)
}

fn bench_sign(what: &str, backend: &mut dyn KeyBackend, runs: usize) {
    let auth = AuthValue::from_pin(&Secret::new("123456"), &[9u8; SALT_LEN]);
    let key = backend
        .create(&auth)
        .unwrap_or_else(|e| panic!("{what}: create failed: {e}"));
    let nonce = Nonce::random().expect("randomness");
    let digest = challenge::signin_digest("bench", &nonce);
    let mut last = None;
    let s = time(runs, || {
        last = Some(
            backend
                .sign(&key.blob, &auth, &digest)
                .unwrap_or_else(|e| panic!("{what}: sign failed: {e}")),
        );
    });
    // Checked outside the timed loop: the figure is the backend's alone.
    let sig = last.expect("at least one signature");
    assert!(
        challenge::verify(&key.public_key, "bench", &nonce, &sig).is_ok(),
        "{what}: the signature does not verify"
    );
    report(&format!("{what}: sign"), &s);
    // alohad serves each connection on its own thread: the same sign, each on a new thread,
    // shows what a thread's first use of the crypto library costs.
    let s = time(runs, || {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                backend
                    .sign(&key.blob, &auth, &digest)
                    .unwrap_or_else(|e| panic!("{what}: sign failed: {e}"))
            });
        });
    });
    report(&format!("{what}: sign, each on a new thread"), &s);
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = match args.next() {
        Some(n) => n.parse().expect("RUNS must be a number"),
        None => 300,
    };
    let which = args.next().unwrap_or_else(|| "all".into());
    assert!(runs >= 1, "RUNS must be positive");
    assert!(
        matches!(which.as_str(), "all" | "tpm" | "software"),
        "the second argument is tpm, software or all"
    );
    if cfg!(debug_assertions) {
        eprintln!("note: a debug build; run with --release for meaningful figures");
    }
    println!("load average before: {}", loadavg());
    swtpm::quiet_tss_logs();

    if which != "software" {
        let tpm = Swtpm::start();
        let mut backend = TpmBackend::open(&tpm.tcti()).expect("open the TPM backend on swtpm");
        bench_sign("TPM (swtpm)", &mut backend, runs);
        let auth = AuthValue::from_pin(&Secret::new("123456"), &[9u8; SALT_LEN]);
        let create = time(runs.min(100), || {
            backend.create(&auth).expect("create");
        });
        report("TPM (swtpm): create", &create);
        let key = backend.create(&auth).expect("create");
        let change = time(runs.min(100), || {
            backend
                .change_auth(&key.blob, &auth, &auth)
                .expect("change_auth");
        });
        report("TPM (swtpm): change_auth", &change);
        let da = time(runs, || {
            backend.dictionary_attack_state().expect("DA state");
        });
        report("TPM (swtpm): dictionary_attack_state", &da);
        // One backend per TPM without a resource manager: each open flushes what others hold.
        drop(backend);
        let open = time(runs.min(50), || {
            drop(TpmBackend::open(&tpm.tcti()).expect("open"));
        });
        report("TPM (swtpm): open (context + ECC primary)", &open);
    }
    if which != "tpm" {
        let mut vault = SoftwareVault::default();
        bench_sign(
            "software vault (Argon2id 64 MiB, 3 passes)",
            &mut vault,
            runs,
        );
    }
    println!("load average after: {}", loadavg());
}
