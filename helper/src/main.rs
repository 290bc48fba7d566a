//! alohad: the Aloha daemon. See `alohad --help`.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

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
use nix::sys::socket::{SockType, UnixAddr, getsockopt, sockopt};
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
/// The write end of the pipe that wakes the accept loop (-1 until it exists).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    SHUTDOWN.store(true, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid static byte. A full
        // pipe already wakes the loop, so the result does not matter.
        let _ = unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
}

/// The listening socket systemd passed (socket activation: LISTEN_PID is this process and
/// LISTEN_FDS is 1, the socket at fd 3), or `None` when alohad should bind its own.
fn activated_socket() -> Result<Option<UnixListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS").ok();
    if !for_us {
        return Ok(None);
    }
    if fds.as_deref() != Some("1") {
        bail!(
            "systemd passed LISTEN_FDS={} sockets; alohad takes exactly one (alohad.socket with \
             a single ListenStream=)",
            fds.unwrap_or_default()
        );
    }
    const FIRST: RawFd = 3;
    // SAFETY: under socket activation fd 3 is ours (sd_listen_fds(3)): nothing else in this
    // process opened or owns it, and it is wrapped exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(FIRST) };
    let is_unix_stream = getsockopt(&fd, sockopt::SockType).is_ok_and(|t| t == SockType::Stream)
        && nix::sys::socket::getsockname::<UnixAddr>(fd.as_raw_fd()).is_ok();
    if !is_unix_stream || !getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
        bail!(
            "the socket systemd passed is not a listening Unix stream socket; check alohad.socket"
        );
    }
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Ok(Some(UnixListener::from(fd)))
}

/// `alohad --check-config`: the configuration in effect, and whether the password service
/// is safe to use.
fn check_config(
    path: Option<&std::path::Path>,
    config: &Config,
    passwords: &PamPasswordChecker,
) -> Result<()> {
    let shown = path.map(|p| p.display().to_string()).unwrap_or_else(|| {
        format!(
            "{} (or built-in defaults where it does not exist)",
            aloha::config::DEFAULT_CONFIG_PATH
        )
    });
    println!("# configuration OK: {shown}\n# in effect:");
    print!(
        "{}",
        toml::to_string(config).context("cannot print the configuration")?
    );
    if let Some(problem) = passwords.stack_problem() {
        bail!("{problem}");
    }
    Ok(())
}

/// The listening socket: systemd's under socket activation (it stays when alohad exits, and
/// a request arriving then starts alohad again: only then does alohad exit when idle), else
/// one alohad binds itself. With the idle exit that applies, and whether it was systemd's.
fn listen(
    socket: &std::path::Path,
    idle_exit: Option<std::time::Duration>,
) -> Result<(UnixListener, Option<std::time::Duration>, bool)> {
    if let Some(listener) = activated_socket()? {
        info!(
            idle_exit_s = idle_exit.map_or(0, |d| d.as_secs()),
            "listening on the socket systemd passed"
        );
        return Ok((listener, idle_exit, true));
    }
    let listener = server::bind(socket)?;
    info!(socket = %socket.display(), "listening");
    Ok((listener, None, false))
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
        return check_config(args.config.as_deref(), &config, &passwords);
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
    let idle_exit = config.daemon.idle_exit();
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

    let (wake_read, wake_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .context("cannot create the shutdown pipe")?;
    WAKE_FD.store(wake_write.as_raw_fd(), Ordering::SeqCst);
    let handler = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to atomics and calls write(2), all
        // async-signal-safe.
        unsafe { sigaction(signal, &handler) }.context("cannot install signal handlers")?;
    }
    let (listener, idle_exit, is_activated) = listen(&socket, idle_exit)?;
    let life = server::Lifecycle {
        shutdown: &SHUTDOWN,
        wake: wake_read.as_fd(),
        idle_exit,
    };
    let served = server::serve(listener, service, limits, &life);
    WAKE_FD.store(-1, Ordering::SeqCst);
    drop(wake_write);
    if !is_activated {
        let _ = std::fs::remove_file(&socket);
    }
    served.map(|_| ()).context("the socket failed")
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
