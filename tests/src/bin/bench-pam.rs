//! End-to-end `pam_authenticate` latency: the Aloha PIN against pam_unix with a password, for
//! the same user, in the same run, on the software vault and on swtpm.
//!
//! `cargo run --release -p aloha-tests --bin bench-pam [-- --runs N] [--kind software|tpm]`
//! (root). Like the sudo/su tests it first enters a private mount namespace whose /etc is an
//! overlay (see `aloha_tests::namespace`), creates the user there with useradd + chpasswd (so
//! pam_unix checks a real /etc/shadow hash, Debian's default yescrypt) and starts a private
//! alohad that resolves the user with getpwnam. Two PAM services in a temp confdir, each with
//! only one auth module:
//!   bench-aloha: `auth required <pam_aloha.so> config=<aloha.toml>`   answered with the PIN
//!   bench-unix:  `auth required pam_unix.so`                            answered with the password
//! Each iteration times one `pam_authenticate` of each (order alternating, so drift hits both
//! alike), after pam_start_confdir and before pam_end, with a syslog sink at /dev/log as on a
//! real system. Every call must return PAM_SUCCESS, or the bench stops.
//!
//! The figures, and what they mean, are in docs/performance.md.

use std::time::{Duration, Instant};

use aloha_helper::pam_app::{Conversation, MessageStyle, PAM_SUCCESS, Transaction};
use aloha_tests::bench;
use aloha_tests::fixture::{Fixture, Kind};
use aloha_tests::namespace::PrivateSystem;
use aloha_tests::pam::PamDir;
use aloha_tests::syslog::Syslog;
use zeroize::Zeroizing;

const USER: &str = "aloha-bench";
const PIN: &str = "48291573";
const PASSWORD: &str = "Correct-Horse-7351";
const WARMUP: usize = 5;
const MIN_RUNS: usize = 200;

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("bench-pam: {what}: {e}");
    std::process::exit(2);
}

/// A failure once alohad runs: a panic unwinds through the fixture's Drop, which stops alohad
/// and swtpm and removes their temp dirs (process::exit would leave them behind).
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    panic!("bench-pam: {what}: {e}");
}

/// Answers every prompt with the same secret; counts the prompts.
struct Answer {
    secret: &'static str,
    prompts: std::rc::Rc<std::cell::Cell<u32>>,
}

impl Conversation for Answer {
    fn respond(&mut self, style: MessageStyle, _: &str) -> Result<Option<Zeroizing<String>>, ()> {
        match style {
            MessageStyle::PromptEchoOff | MessageStyle::PromptEchoOn => {
                self.prompts.set(self.prompts.get() + 1);
                Ok(Some(Zeroizing::new(self.secret.to_string())))
            }
            _ => Ok(None),
        }
    }
}

/// One pam_authenticate of `service`: its duration, and the whole transaction's.
fn once(pam: &PamDir, service: &str, secret: &'static str) -> (Duration, Duration) {
    let prompts = std::rc::Rc::new(std::cell::Cell::new(0));
    let conv = Box::new(Answer {
        secret,
        prompts: prompts.clone(),
    });
    let t0 = Instant::now();
    let mut tx = Transaction::start(service, USER, Some(pam.path()), conv)
        .unwrap_or_else(|rc| fail("pam_start_confdir", rc));
    let t1 = Instant::now();
    let rc = tx.authenticate(0);
    let auth = t1.elapsed();
    if rc != PAM_SUCCESS {
        let why = tx.strerror(rc);
        fail(service, format!("pam_authenticate returned {rc} ({why})"));
    }
    drop(tx);
    let whole = t0.elapsed();
    if prompts.get() != 1 {
        fail(service, format!("{} prompts, expected 1", prompts.get()));
    }
    (auth, whole)
}

#[derive(Debug)]
struct Stats {
    median: f64,
    p95: f64,
    mean: f64,
    min: f64,
    max: f64,
}

/// Milliseconds; median of the sorted sample, p95 by nearest rank.
fn stats(sample: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = sample.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    let rank = (0.95 * n as f64).ceil() as usize;
    Stats {
        median,
        p95: ms[rank.clamp(1, n) - 1],
        mean: ms.iter().sum::<f64>() / n as f64,
        min: ms[0],
        max: ms[n - 1],
    }
}

fn row(backend: &str, what: &str, s: &Stats) {
    println!(
        "{backend:<16} {what:<34} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
        s.median, s.p95, s.mean, s.min, s.max
    );
}

fn main() {
    // First, while the process still has one thread.
    let system = PrivateSystem::enter().unwrap_or_else(|e| die("private namespace", e));
    let runs: usize = bench::flag("--runs")
        .map(|v| v.parse().unwrap_or_else(|e| die("--runs", e)))
        .unwrap_or(MIN_RUNS);
    let kinds = bench::kinds().unwrap_or_else(|e| die("--kind", e));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let syslog = system
        .free_dev_log()
        .and_then(|p| Syslog::bind(&p))
        .unwrap_or_else(|e| die("bind /dev/log", e));
    system
        .add_user(USER, Some(PASSWORD))
        .unwrap_or_else(|e| die("add user", e));
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_else(|e| die("shadow", e));
    let scheme = shadow
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{USER}:")))
        .and_then(|rest| rest.split('$').nth(1))
        .map(|id| match id {
            "y" => "yescrypt",
            "6" => "sha512crypt",
            "5" => "sha256crypt",
            "gy" => "gost-yescrypt",
            "2b" | "2y" => "bcrypt",
            other => other,
        })
        .unwrap_or("?")
        .to_string();

    println!(
        "bench-pam: end-to-end pam_authenticate latency, {runs} runs per service and backend \
         (+{WARMUP} warm-up), {profile} build,"
    );
    println!(
        "user {USER} on a private /etc; services interleaved; pam_unix hash: {scheme}; times in ms"
    );
    println!(
        "{:<16} {:<34} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "backend", "measure", "median", "p95", "mean", "min", "max"
    );
    let mut summary = Vec::new();
    for kind in kinds {
        let fixture = Fixture::start(kind, |_| {});
        let set = fixture.daemon.aloha(
            &["pin", "set", "--user", USER, "--pin-stdin"],
            &format!("{PIN}\n"),
        );
        if set.code != 0 {
            fail("aloha pin set", format!("{set:?}"));
        }
        let pam = PamDir::new();
        let config = fixture.daemon.config_path();
        pam.service(
            "bench-aloha",
            &[&format!("auth required MODULE config={}", config.display())],
        );
        pam.service("bench-unix", &["auth required pam_unix.so"]);
        let backend = match kind {
            Kind::Software => "software vault",
            Kind::Tpm => "TPM (swtpm)",
        };
        let mut aloha = (Vec::new(), Vec::new());
        let mut unix = (Vec::new(), Vec::new());
        let mut module_lines = 0;
        for i in 0..WARMUP + runs {
            let one = |service: &str| match service {
                "bench-aloha" => once(&pam, service, PIN),
                _ => once(&pam, service, PASSWORD),
            };
            let (a, u) = if i % 2 == 0 {
                let a = one("bench-aloha");
                (a, one("bench-unix"))
            } else {
                let u = one("bench-unix");
                (one("bench-aloha"), u)
            };
            for line in syslog.drain() {
                if line.text.contains("pam_aloha(bench-aloha:auth): ") {
                    if !line.text.contains(&format!(
                        "user=\"{USER}\" service=\"bench-aloha\" result=success"
                    )) {
                        die("pam_aloha said", &line.text);
                    }
                    module_lines += 1;
                }
            }
            if i >= WARMUP {
                aloha.0.push(a.0);
                aloha.1.push(a.1);
                unix.0.push(u.0);
                unix.1.push(u.1);
            }
        }
        if module_lines != WARMUP + runs {
            die(
                "syslog",
                format!(
                    "{module_lines} pam_aloha lines for {} sign-ins",
                    WARMUP + runs
                ),
            );
        }
        let (a, u) = (stats(&aloha.0), stats(&unix.0));
        row(backend, "pam_aloha, PIN: pam_authenticate", &a);
        row(backend, &format!("pam_unix, password ({scheme})"), &u);
        println!(
            "{backend:<16} {:<34} {:>9.2} {:>9.2}",
            "ratio aloha / unix",
            a.median / u.median,
            a.p95 / u.p95
        );
        let (aw, uw) = (stats(&aloha.1), stats(&unix.1));
        row(backend, "pam_aloha: pam_start..pam_end", &aw);
        row(backend, "pam_unix: pam_start..pam_end", &uw);
        summary.push(format!(
            "{backend}: aloha median {:.2} ms p95 {:.2} ms; unix median {:.2} ms p95 {:.2} ms; \
             ratio {:.2} (median) {:.2} (p95)",
            a.median,
            a.p95,
            u.median,
            u.p95,
            a.median / u.median,
            a.p95 / u.p95
        ));
        drop(fixture);
    }
    if runs < MIN_RUNS {
        println!("note: {runs} runs is below the {MIN_RUNS} the figures are meant to rest on");
    }
    for s in summary {
        println!("summary: {s}");
    }
    drop(syslog);
    drop(system);
}
