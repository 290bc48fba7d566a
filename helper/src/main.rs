//! alohad: the Aloha daemon. See `alohad --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aloha::config::{BackendChoice, Config};
use aloha_helper::backend::KeyBackend;
use aloha_helper::backend::software::{DEFAULT_KDF, SoftwareVault};
use aloha_helper::backend::tpm::{PrimaryPin, TpmBackend};
use aloha_helper::camera::SystemCameras;
use aloha_helper::password::PamPasswordChecker;
use aloha_helper::recognition::{EngineRecognition, Recognition, face_config};
use aloha_helper::server::{self, Limits};
use aloha_helper::service::{Components, Service, SystemClock, check_tpm_limits};
use aloha_helper::store::Store;
use aloha_helper::users::SystemUsers;
use anyhow::{Context, Result, bail};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use tracing::{error, info, warn};

const USAGE: &str = "\
alohad — the Aloha daemon: holds each user's sign-in key (TPM or software vault), checks PINs,
enforces PIN policy and lockout, and answers pam_aloha and the `aloha` CLI on a Unix socket.

Usage:
  alohad [--config FILE]                  run the daemon (as root)
  alohad --check-config [--config FILE]   validate the configuration and print what is in effect
  alohad --version | --help

The default configuration file is /etc/aloha/aloha.toml; every key is optional.
";

static SHUTDOWN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SHUTDOWN.store(true, Ordering::SeqCst);
}

struct Args {
    config: Option<PathBuf>,
    check: bool,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        config: None,
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => args.config = Some(it.next().context("--config needs a file")?.into()),
            "--check-config" => args.check = true,
            "--version" => {
                println!("alohad {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--help" | "-h" => {
                print!("{USAGE}");
                return Ok(None);
            }
            other => match other.strip_prefix("--config=") {
                Some(path) => args.config = Some(path.into()),
                None => bail!("unknown argument {other:?}; see alohad --help"),
            },
        }
    }
    Ok(Some(args))
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALOHAD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Under systemd, log natively to the journal; elsewhere, to stderr.
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter)
            .with(journald)
            .init();
        return;
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .init();
}

fn open_tpm(config: &Config, store: &Store) -> Result<Option<Box<dyn KeyBackend>>> {
    let open =
        || TpmBackend::open_pinned(&config.tpm.tcti, PrimaryPin::new(&store.tpm_primary_path()));
    match config.tpm.backend {
        BackendChoice::Software => Ok(None),
        BackendChoice::Tpm => {
            let tpm = open().with_context(|| {
                format!(
                    "backend = \"tpm\" but the TPM at {:?} cannot be used",
                    config.tpm.tcti
                )
            })?;
            Ok(Some(Box::new(tpm)))
        }
        BackendChoice::Auto => match open() {
            Ok(tpm) => Ok(Some(Box::new(tpm))),
            Err(e) => {
                info!(tcti = config.tpm.tcti, error = %e, "no usable TPM; new PINs go to the software vault");
                Ok(None)
            }
        },
    }
}

/// Account passwords are checked through `daemon.password_service`.
fn password_checker(config: &Config) -> PamPasswordChecker {
    let confdir = config.daemon.password_service_dir.clone();
    PamPasswordChecker {
        service: config.daemon.password_service.clone(),
        confdir: (!confdir.as_os_str().is_empty()).then_some(confdir),
    }
}

fn run(args: Args) -> Result<()> {
    let config = Config::load(args.config.as_deref())?;
    // The face engine's keys in [face] are alohad's to check.
    let face_config = face_config(&config.face)
        .map_err(anyhow::Error::msg)
        .context("the configuration is not valid")?;
    let passwords = password_checker(&config);
    if args.check {
        let shown = args
            .config
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| {
                format!(
                    "{} (or built-in defaults where it does not exist)",
                    aloha::config::DEFAULT_CONFIG_PATH
                )
            });
        println!("# configuration OK: {shown}\n# in effect:");
        print!(
            "{}",
            toml::to_string(&config).context("cannot print the configuration")?
        );
        if let Some(problem) = passwords.stack_problem() {
            bail!("{problem}");
        }
        return Ok(());
    }
    init_logging();
    if !nix::unistd::geteuid().is_root() {
        warn!("alohad is not running as root: it cannot check passwords or protect its state");
    }
    let store = Store::open(&config.daemon.state_dir)?;
    let mut tpm = open_tpm(&config, &store)?;
    if let Some(backend) = tpm.as_mut() {
        match backend.dictionary_attack_state() {
            Ok(Some(da)) => {
                info!(
                    max_tries = da.max_tries,
                    counter = da.counter,
                    recovery_s = da.recovery_seconds,
                    "TPM ready"
                );
                check_tpm_limits(config.lockout.max_attempts, config.tpm.da_headroom, &da)
                    .context("alohad refuses to start")?;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the TPM's dictionary-attack state"),
        }
    }
    if let Some(problem) = passwords.stack_problem() {
        error!("{problem}");
    }
    let limits = Limits {
        io_timeout: config.daemon.io_timeout(),
        max_connections: config.daemon.max_connections,
        max_connections_per_uid: config.daemon.max_connections_per_uid,
        connection_lifetime: config.daemon.connection_lifetime(),
    };
    let socket = config.daemon.socket.clone();
    let cameras = SystemCameras {
        settings: config.face.clone(),
        state_dir: config.daemon.state_dir.clone(),
    };
    let recognition = Arc::new(EngineRecognition::new(face_config));
    let service = Arc::new(Service::new(Components {
        config,
        store,
        software: Box::new(|| Box::new(SoftwareVault::default())),
        argon2_runs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        history_kdf: DEFAULT_KDF,
        tpm,
        users: Box::new(SystemUsers),
        passwords: Box::new(passwords),
        clock: Box::new(SystemClock),
        recognition: recognition.clone(),
        cameras: Box::new(cameras),
    }));
    if service.face_enrolled() {
        // Load the models now, not at the first face sign-in.
        std::thread::spawn(move || {
            if let Err(why) = recognition.ready() {
                warn!(
                    why,
                    "face recognition cannot run; face sign-in falls through to the PIN"
                );
            }
        });
    }
    info!(default_backend = ?service.default_backend(), "key store ready");

    let handler = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &handler) }.context("cannot install signal handlers")?;
    }
    let listener = server::bind(&socket)?;
    info!(socket = %socket.display(), "listening");
    let served = server::serve(listener, service, limits, &SHUTDOWN);
    let _ = std::fs::remove_file(&socket);
    served.context("the socket failed")
}

fn main() -> ExitCode {
    if std::env::var_os("TSS2_LOG").is_none() {
        // libtss2 prints an ERROR line for every wrong PIN (an expected TPM_RC_AUTH_FAIL);
        // alohad reports TPM errors itself. TSS2_LOG=... in the environment overrides this.
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::set_var("TSS2_LOG", "all+NONE") };
    }
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alohad: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alohad: {e:#}");
            ExitCode::FAILURE
        }
    }
}
