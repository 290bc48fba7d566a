//! A private alohad: temp config, state dir and socket; stopped by pid when dropped.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::build::artifact;

pub const PAM_MATRIX: &str = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so";

/// Which key store the daemon uses.
#[derive(Debug, Clone)]
pub enum Backend {
    Software,
    /// A TPM reachable with this TCTI string (a test swtpm).
    Tpm(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    /// More TOML appended to the config (sections other than [daemon] and [tpm]).
    pub extra: String,
    /// More keys for the [daemon] section (e.g. `io_timeout_ms = 1000`).
    pub daemon_extra: String,
    /// `user:password` pairs accepted by the password service (pam_matrix).
    pub passwords: Vec<(String, String)>,
    /// Check account passwords with the system's own `aloha` service in /etc/pam.d (only
    /// inside a private mount namespace, where /etc is an overlay) instead of pam_matrix.
    pub system_password_service: bool,
}

impl Options {
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            extra: String::new(),
            daemon_extra: String::new(),
            passwords: Vec::new(),
            system_password_service: false,
        }
    }
}

#[derive(Debug)]
pub struct Daemon {
    dir: TempDir,
    opts: Options,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(opts: Options) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("aloha-e2e-")
            .tempdir()
            .expect("temp dir");
        // Unprivileged clients (setpriv) must reach the socket and the public keys inside.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let mut d = Daemon {
            dir,
            opts,
            child: None,
        };
        d.write_config();
        d.spawn();
        d
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("aloha.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir().join("run/alohad.sock")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("alohad.log")
    }
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn write_config(&self) {
        let pam_dir = self.dir().join("pam.d");
        fs::create_dir_all(&pam_dir).unwrap();
        let passdb = self.dir().join("passdb");
        let db: String = self
            .opts
            .passwords
            .iter()
            .map(|(u, p)| format!("{u}:{p}:aloha-test\n"))
            .collect();
        fs::write(&passdb, db).unwrap();
        fs::write(
            pam_dir.join("aloha-test"),
            format!(
                "auth required {PAM_MATRIX} passdb={}\naccount required pam_permit.so\n",
                passdb.display()
            ),
        )
        .unwrap();
        let (backend, tcti) = match &self.opts.backend {
            Backend::Software => ("software", "device:/dev/null".to_string()),
            Backend::Tpm(tcti) => ("tpm", tcti.clone()),
        };
        // The system service is the default: `aloha` in /etc/pam.d.
        let password_service = if self.opts.system_password_service {
            String::new()
        } else {
            format!(
                "password_service = \"aloha-test\"\npassword_service_dir = \"{}\"\n",
                pam_dir.display()
            )
        };
        let config = format!(
            "version = 1\n[daemon]\nsocket = \"{}\"\nstate_dir = \"{}\"\n{password_service}{}\n\
             [tpm]\nbackend = \"{backend}\"\ntcti = \"{tcti}\"\n{}\n",
            self.socket().display(),
            self.state_dir().display(),
            self.opts.daemon_extra,
            self.opts.extra
        );
        fs::write(self.config_path(), config).unwrap();
    }

    /// Start alohad and wait until it accepts connections.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(artifact("alohad"))
            .arg("--config")
            .arg(self.config_path())
            .env("TSS2_LOG", "all+NONE")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn alohad");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("alohad exited with {status} during start:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "alohad did not start listening within 20 s:\n{}",
            self.log()
        );
    }

    /// SIGTERM, then SIGKILL if it does not exit within 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `kill -9`: no chance to clean up anything.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// `aloha --config <ours> ARGS`, as root.
    pub fn aloha(&self, args: &[&str], stdin: &str) -> Run {
        self.run(None, args, stdin)
    }

    /// `aloha` as another uid (setpriv), as an unprivileged user would run it.
    pub fn aloha_as(&self, uid: u32, args: &[&str], stdin: &str) -> Run {
        self.run(Some(uid), args, stdin)
    }

    fn run(&self, uid: Option<u32>, args: &[&str], stdin: &str) -> Run {
        let aloha = artifact("aloha");
        let mut cmd = match uid {
            None => Command::new(&aloha),
            Some(uid) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(&aloha);
                c
            }
        };
        cmd.arg("--config").arg(self.config_path()).args(args);
        run_with_stdin(cmd, stdin)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(self.code, 0, "expected success:\n{self:#?}");
        self
    }

    #[track_caller]
    pub fn refused(&self, needle: &str) -> &Run {
        assert_eq!(self.code, 1, "expected a refusal:\n{self:#?}");
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in:\n{self:#?}"
        );
        self
    }
}

/// How long [`run_with_stdin`] lets a command run: far beyond any real run, so only a hang
/// (a child blocked on a full pipe or socket) reaches it.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(300);

/// Run `cmd` with `stdin`; a command still running after [`HANG_TIMEOUT`] is killed and the
/// test fails with what it printed.
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let read_all = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = read_all(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read_all(child.stderr.take().map(|p| Box::new(p) as _));
    // A child that fails before reading its input (`aloha verify` for a user without a key)
    // may exit before this write: that is its answer, not a harness failure.
    let mut input = child.stdin.take().unwrap();
    match input.write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    drop(input);
    let deadline = Instant::now() + HANG_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} hung for {HANG_TIMEOUT:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap_or_default(),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
