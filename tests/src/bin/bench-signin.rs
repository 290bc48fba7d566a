//! Sign-in latency on the `aloha verify` path — a fresh nonce, alohad signs with the key the
//! PIN releases, the caller verifies against the registered public key — on the software
//! vault and on swtpm, and on swtpm once more with the password vault opened in the same
//! sign-in (one more TPM command, TPM2_ECDH_ZGen). Prints median and p95.
//!
//!   cargo run --release -p aloha-tests --bin bench-signin [RUNS]

use std::time::{Duration, Instant};

use aloha::Secret;
use aloha::challenge::{self, Nonce};
use aloha::client::Client;
use aloha::protocol::{Request, Response};
use aloha_tests::fixture::{Fixture, Kind};

const PIN: &str = "482915";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    println!(
        "sign-in latency over {runs} runs (connect + hello + sign_in + verify), release build"
    );
    for kind in [Kind::Software, Kind::Tpm] {
        let f = Fixture::start(kind, |o| {
            o.passwords.push(("nobody".into(), "bench password".into()));
        });
        f.daemon
            .aloha(
                &["pin", "set", "--user", "nobody", "--pin-stdin"],
                &format!("{PIN}\n"),
            )
            .ok();
        let state = f.daemon.state_dir();
        let key = aloha::registry::load(&state, "nobody", Some(65534)).expect("registered key");
        let socket = f.daemon.socket();
        let once = |vault: bool| {
            let t = Instant::now();
            let nonce = Nonce::random().unwrap();
            let mut c = Client::connect(&socket, Duration::from_secs(30), "bench").unwrap();
            let reply = c
                .call(&Request::SignIn {
                    user: "nobody".into(),
                    service: "bench".into(),
                    nonce,
                    pin: Secret::new(PIN),
                    vault,
                })
                .unwrap();
            let Response::Signed {
                signature,
                password,
                ..
            } = reply
            else {
                panic!("{reply:?}")
            };
            assert_eq!(
                password.is_some(),
                vault,
                "the vault opens exactly when asked"
            );
            challenge::verify(&key.public_key, "nobody", &nonce, &signature).unwrap();
            t.elapsed()
        };
        let measure = |name: &str, vault: bool| {
            for _ in 0..5 {
                once(vault);
            }
            let mut times: Vec<Duration> = (0..runs).map(|_| once(vault)).collect();
            times.sort();
            println!(
                "  {name:<44} median {}  p95 {}  min {}  max {}",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.95)),
                ms(times[0]),
                ms(times[times.len() - 1])
            );
        };
        match kind {
            Kind::Software => measure("software vault (Argon2id 64 MiB, t=3)", false),
            Kind::Tpm => {
                measure("swtpm (load + salted-session sign + flush)", false);
                f.daemon
                    .aloha(
                        &["vault", "enable", "--user", "nobody", "--pin-stdin"],
                        "bench password\n",
                    )
                    .ok();
                measure("swtpm, the password vault opened too", true);
            }
        }
        // The whole CLI process, for a feel of what a script sees.
        let mut cli: Vec<Duration> = (0..20)
            .map(|_| {
                let t = Instant::now();
                f.daemon
                    .aloha_as(65534, &["verify", "--pin-stdin"], &format!("{PIN}\n"))
                    .ok();
                t.elapsed()
            })
            .collect();
        cli.sort();
        println!(
            "  {:<44} median {} (20 runs of `aloha verify` as a process)",
            "",
            ms(percentile(&cli, 0.5))
        );
    }
}
