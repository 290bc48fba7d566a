//! A private swtpm per test: fresh state in a temp dir, its own TCP port pair, Windows-like
//! dictionary-attack parameters, and a clean stop (TPM2_Shutdown, then the process) when the
//! handle is dropped, also when the test panics.
//!
//! Needs `swtpm` and `swtpm_ioctl` (swtpm, swtpm-tools) and `tpm2_dictionarylockout`,
//! `tpm2_shutdown` (tpm2-tools) on PATH.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Windows' dictionary-attack setting: 32 failures, one forgotten every 2 hours, and the
/// lockout hierarchy's own lockout cleared after a day. swtpm's default maxTries is 3.
pub const WINDOWS_MAX_TRIES: u32 = 32;
pub const WINDOWS_RECOVERY_SECONDS: u32 = 7200;
pub const WINDOWS_LOCKOUT_RECOVERY_SECONDS: u32 = 86400;

/// How long swtpm may take to listen, and a tpm2-tools command or swtpm to finish.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at finding a free port pair before giving up.
const PORT_ATTEMPTS: u32 = 20;

/// Silence libtss2's own logging in this process (it prints an ERROR line for every expected
/// failure, such as a wrong PIN), unless the caller set TSS2_LOG. Call it before the first TPM
/// operation of a test binary; child processes started by this module get it anyway.
pub fn quiet_tss_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TSS2_LOG").is_none() {
            // SAFETY: every test that touches libtss2 in this binary calls this before its
            // first TPM operation, and `Once` blocks those callers until it returns, so no
            // thread reads the environment through libc while it is changed. Rust-side readers
            // are serialised with `set_var` by std's own lock.
            unsafe { std::env::set_var("TSS2_LOG", "all+NONE") };
        }
    });
}

/// A running swtpm (or, after [`Swtpm::stop`], its saved state waiting for [`Swtpm::restart`]).
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    /// The temp dir that holds `state/` and `swtpm.log`; removed on drop.
    root: PathBuf,
    state: PathBuf,
}

impl Swtpm {
    /// A fresh swtpm with Windows-like DA parameters (32 tries, 2 h recovery, 24 h lockout
    /// recovery). Panics with a clear message if swtpm cannot be started.
    pub fn start() -> Swtpm {
        Swtpm::start_with_da(
            WINDOWS_MAX_TRIES,
            WINDOWS_RECOVERY_SECONDS,
            WINDOWS_LOCKOUT_RECOVERY_SECONDS,
        )
    }

    /// A fresh swtpm whose TPM locks DA-protected keys after `max_tries` failures, forgets one
    /// failure every `recovery_seconds` and lets the lockout hierarchy retry after
    /// `lockout_recovery_seconds`.
    pub fn start_with_da(
        max_tries: u32,
        recovery_seconds: u32,
        lockout_recovery_seconds: u32,
    ) -> Swtpm {
        let root = make_temp_dir();
        let state = root.join("state");
        if let Err(e) = fs::create_dir(&state) {
            let _ = fs::remove_dir_all(&root);
            panic!("cannot create the swtpm state dir {}: {e}", state.display());
        }
        // Built before launching so that a panic below still cleans up through Drop.
        let mut tpm = Swtpm {
            child: None,
            port: 0,
            root,
            state,
        };
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port_pair();
            match tpm.launch(port) {
                Ok(()) => break,
                Err(Launch::PortBusy(why)) => last = why,
                Err(Launch::Failed(why)) => panic!("{why}"),
            }
        }
        if tpm.child.is_none() {
            panic!("swtpm found no free TCP port pair in {PORT_ATTEMPTS} attempts; last: {last}");
        }
        let args = [
            "-s".to_owned(),
            "-n".to_owned(),
            max_tries.to_string(),
            "-t".to_owned(),
            recovery_seconds.to_string(),
            "-l".to_owned(),
            lockout_recovery_seconds.to_string(),
        ];
        if let Err(e) = tpm.tpm2_tool("tpm2_dictionarylockout", &args) {
            panic!(
                "cannot set the DA parameters of swtpm at {}: {e}",
                tpm.tcti()
            );
        }
        tpm
    }

    /// The TCTI string for tss-esapi and tpm2-tools: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port P (the control port is P+1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The swtpm process id, or `None` while it is stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The TPM's persistent state (owner seed, NV, DA counter).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stop the TPM the way a machine does at power-off: TPM2_Shutdown(CLEAR) first, so the
    /// stop does not count as a dictionary-attack failure, then end the process and reap it.
    /// The state dir is kept for [`Swtpm::restart`]. Does nothing if already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // Best effort: a TPM that does not answer is stopped anyway.
            let _ = self.tpm2_tool("tpm2_shutdown", &["-c".to_owned()]);
            let ctrl = format!("127.0.0.1:{}", u32::from(self.port) + 1);
            let _ = run(
                Command::new("swtpm_ioctl").args(["--tcp", &ctrl, "-s"]),
                COMMAND_TIMEOUT,
            );
            if wait_exit(&mut child, EXIT_TIMEOUT).is_none() {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    /// Stop (if running) and start again on the same state dir and port, as after a reboot:
    /// transient objects and sessions are gone, keys made under the same seed still load, and
    /// the DA counter and parameters are kept.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch(self.port) {
                Ok(()) => return,
                Err(Launch::PortBusy(why)) if Instant::now() < deadline => {
                    let _ = why;
                    sleep(Duration::from_millis(100));
                }
                Err(Launch::PortBusy(why) | Launch::Failed(why)) => {
                    panic!("cannot restart swtpm on port {}: {why}", self.port)
                }
            }
        }
    }

    fn launch(&mut self, port: u16) -> Result<(), Launch> {
        let log_path = self.root.join("swtpm.log");
        let log = File::create(&log_path)
            .map_err(|e| Launch::Failed(format!("cannot create {}: {e}", log_path.display())))?;
        let ctrl = u32::from(port) + 1;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", self.state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                Launch::Failed(format!(
                    "cannot run swtpm (apt-get install swtpm swtpm-tools): {e}"
                ))
            })?;
        self.port = port;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Err(Launch::Failed("swtpm vanished".into()));
            };
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let mut text = String::new();
                let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
                let why = format!("swtpm exited at start ({status}): {}", text.trim());
                return Err(if text.contains("Address already in use") {
                    Launch::PortBusy(why)
                } else {
                    Launch::Failed(why)
                });
            }
            let listening = |p: u32| {
                u16::try_from(p).is_ok_and(|p| TcpStream::connect((Ipv4Addr::LOCALHOST, p)).is_ok())
            };
            // The control port first: connecting to the command port takes swtpm's one client
            // slot for a moment, which is harmless once it is up.
            if listening(ctrl) && listening(u32::from(port)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(Launch::Failed(format!(
                    "swtpm did not listen on port {port} within {START_TIMEOUT:?}"
                )));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Run a tpm2-tools command against this TPM. swtpm serves one client at a time: stop the
    /// alohad that uses this TPM first.
    pub fn tpm2_tool(&self, tool: &str, args: &[String]) -> Result<(), String> {
        let mut cmd = Command::new(tool);
        cmd.args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+NONE");
        match run(&mut cmd, COMMAND_TIMEOUT) {
            Ok((status, _)) if status.success() => Ok(()),
            Ok((status, stderr)) => Err(format!("{tool} failed ({status}): {}", stderr.trim())),
            Err(e) => Err(format!("{tool}: {e} (apt-get install tpm2-tools)")),
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.root);
    }
}

enum Launch {
    /// Another process took the port between the probe and swtpm's bind: try another one.
    PortBusy(String),
    Failed(String),
}

/// Run `cmd` to completion, killing it after `timeout`. Returns its status and stderr.
fn run(cmd: &mut Command, timeout: Duration) -> Result<(ExitStatus, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let Some(status) = wait_exit(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("no answer within {timeout:?}; killed"));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Ok((status, stderr))
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// An even port P in 20000..60000 with P and P+1 free right now (a caller may still lose the
/// race to bind them, as [`Swtpm::start_with_da`] knows and retries).
pub fn free_port_pair() -> u16 {
    loop {
        let port = 20000 + (random_u64() % 20000) as u16 * 2;
        let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if free(port) && free(port + 1) {
            return port;
        }
    }
}

fn make_temp_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "aloha-swtpm-{}-{n}-{:08x}",
            std::process::id(),
            random_u64() as u32
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!(
                "cannot create a temp dir for swtpm under {}: {e}",
                base.display()
            ),
        }
    }
    panic!(
        "cannot find a free temp dir name for swtpm under {}",
        base.display()
    )
}
