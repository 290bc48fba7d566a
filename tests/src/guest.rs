//! A real Debian 12 machine for the end-to-end tests that need a kernel and systemd of their
//! own: a .deb's maintainer scripts, a systemd socket unit, `/dev/tpmrm0`, a real `/dev/videoN`.
//!
//! [`Guest::boot`] starts qemu (TCG: this host's KVM cannot run a stock kernel) on the image
//! that `tests/vm/build-image.sh` builds and caches, through a copy-on-write overlay in a temp
//! dir, so the cached image stays pristine while [`Guest::reboot`] keeps the guest's state.
//! With [`GuestOptions::tpm`], a private swtpm backs the guest's `/dev/tpm0` and `/dev/tpmrm0`.
//! Scripts run as root in the guest through a 9p share ([`Guest::run`]), host-built binaries
//! are dropped into it ([`Guest::install`]; same Debian 12 glibc), and programs that need a
//! terminal are driven on a pty by `guest-pty` ([`Guest::converse`]).
//!
//! Dropping a guest powers it off (forced: its disk is thrown away next), waits for qemu with
//! a deadline (then kills it), makes sure swtpm is gone, and removes the temp dir — also when
//! the test panics. qemu and swtpm are children of the booting thread and die with it
//! (`PR_SET_PDEATHSIG`): boot, use and drop a guest in one thread (one `#[test]`), never from
//! a `static`.
//!
//! Needs root, `qemu-system-x86_64`, `qemu-img`, `swtpm` and what `build-image.sh` needs
//! (scripts/deps). A boot takes ~15-25 s, a command round trip well under a second: boot once
//! per test binary.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::build::{profile_dir, workspace_root};

/// Where the share is mounted in the guest.
pub const GUEST_SHARE: &str = "/mnt/host";
/// Extra time the host waits past a job's own limit (the agent kills it at the limit, then
/// 5 s later with SIGKILL, and polls its queue every 0.5 s when idle).
const JOB_GRACE: Duration = Duration::from_secs(30);
/// How long a powered-off guest may take to stop before qemu is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);
/// How long swtpm may take to go once qemu is gone, or to create its socket.
const SWTPM_TIMEOUT: Duration = Duration::from_secs(10);
/// What [`Guest::reboot`] and [`Drop`] ask the agent to run.
const CLEAN_POWEROFF: &str = "systemctl --no-block poweroff\n";
const QUICK_POWEROFF: &str = "sync; systemctl --force --force poweroff\n";
/// Console lines shown when a boot fails.
const CONSOLE_TAIL: usize = 60;

/// The cached guest image: `build-image.sh`'s output.
#[derive(Debug)]
pub struct Image {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub root: PathBuf,
    /// How long `build-image.sh` took in this process (a cached image: well under a second).
    pub build_time: Duration,
}

/// The guest image, built by `tests/vm/build-image.sh` if its recipe changed (minutes) and
/// reused otherwise; once per process. The script's progress goes to this process's stderr.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let script = workspace_root().join("tests/vm/build-image.sh");
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let build_time = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}); its output is above, the whole log is build.log in the image \
             cache (target/vm or $ALOHA_VM_CACHE)",
            script.display(),
            out.status
        );
        let dir = PathBuf::from(
            stdout
                .lines()
                .last()
                .unwrap_or_else(|| panic!("{} printed no image dir", script.display())),
        );
        let image = Image {
            kernel: dir.join("kernel"),
            initrd: dir.join("initrd"),
            root: dir.join("root.ext4"),
            dir,
            build_time,
        };
        for f in [&image.kernel, &image.initrd, &image.root] {
            assert!(f.is_file(), "the guest image lacks {}", f.display());
        }
        image
    })
}

#[derive(Debug, Clone)]
pub struct GuestOptions {
    /// A private swtpm behind the guest's `/dev/tpm0` and `/dev/tpmrm0`.
    pub tpm: bool,
    pub memory_mib: u32,
    pub cpus: u32,
    /// From starting qemu to the agent answering (also for each reboot). ~15 s on an idle
    /// machine, more beside a compiler.
    pub boot_timeout: Duration,
}

impl Default for GuestOptions {
    fn default() -> GuestOptions {
        GuestOptions {
            tpm: true,
            memory_mib: 2048,
            cpus: 2,
            boot_timeout: Duration::from_secs(300),
        }
    }
}

/// What a script did in the guest.
#[derive(Debug, Clone)]
pub struct GuestOutput {
    pub stdout: String,
    pub stderr: String,
    /// The exit status; 124 when the agent stopped it at its time limit.
    pub status: i32,
    /// Host-side time from submitting to reading the result.
    pub elapsed: Duration,
}

impl GuestOutput {
    #[track_caller]
    pub fn ok(&self) -> &GuestOutput {
        assert_eq!(self.status, 0, "the guest script failed:\n{self:#?}");
        self
    }
}

/// What [`Guest::converse`] saw (the JSON that `guest-pty` prints).
#[derive(Debug, Clone)]
pub struct GuestConversation {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub transcript: String,
    pub killed: bool,
    /// The prompts seen, in order.
    pub prompts: Vec<String>,
    /// Why the driver gave up early, if it did.
    pub error: Option<String>,
}

/// A running guest. See the module docs.
#[derive(Debug)]
pub struct Guest {
    dir: TempDir,
    opts: GuestOptions,
    qemu: Option<Child>,
    swtpm: Option<Child>,
    /// Boot ids the agent has announced, in order.
    boots: Vec<String>,
    /// The agent of the running qemu has announced itself.
    agent_up: bool,
    next_job: u64,
    boot_time: Duration,
}

impl Guest {
    /// Boot a guest and wait for its agent. Panics with the tail of the console if it does not
    /// come up within `opts.boot_timeout`.
    pub fn boot(opts: GuestOptions) -> Guest {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the guest tests need root (qemu, swtpm, and build-image.sh's debootstrap)"
        );
        let image = image();
        let dir = tempfile::Builder::new()
            .prefix("aloha-guest-")
            .tempdir()
            .expect("a temp dir for the guest");
        let mut guest = Guest {
            dir,
            opts,
            qemu: None,
            swtpm: None,
            boots: Vec::new(),
            agent_up: false,
            next_job: 0,
            boot_time: Duration::ZERO,
        };
        for sub in ["q", "run", "boot", "bin", "pty"] {
            let d = guest.share_dir().join(sub);
            fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let overlay = guest.overlay();
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image.root)
            .arg(&overlay)
            .status()
            .unwrap_or_else(|e| panic!("cannot run qemu-img (apt-get install qemu-utils): {e}"));
        assert!(
            status.success(),
            "qemu-img create {} failed: {status}",
            overlay.display()
        );
        if guest.opts.tpm {
            guest.start_swtpm();
        }
        let started = Instant::now();
        guest.start_qemu(image);
        guest.wait_for_boot(started);
        guest.boot_time = started.elapsed();
        guest
    }

    /// From starting qemu to the agent's first answer.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The host side of the 9p share, `/mnt/host` in the guest. Files dropped here are seen by
    /// the guest at once (no cache), and files the guest writes here by the host.
    pub fn share_dir(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    /// The guest's path for a file under [`Guest::share_dir`].
    pub fn guest_path(&self, host: &Path) -> PathBuf {
        let rel = host
            .strip_prefix(self.share_dir())
            .unwrap_or_else(|_| panic!("{} is not under the share", host.display()));
        Path::new(GUEST_SHARE).join(rel)
    }

    /// Copy a host file (a binary built by cargo) into the share's `bin/` and return its path
    /// in the guest. The host and guest are both Debian 12, so host-built binaries run there.
    pub fn install(&self, host_file: &Path) -> String {
        let name = host_file
            .file_name()
            .unwrap_or_else(|| panic!("{} has no file name", host_file.display()));
        let dest = self.share_dir().join("bin").join(name);
        fs::copy(host_file, &dest).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} into the guest share: {e} (is it built?)",
                host_file.display()
            )
        });
        self.guest_path(&dest).display().to_string()
    }

    /// The serial console so far (kernel and systemd messages of every boot).
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.path().join("console.log")).unwrap_or_default())
            .into_owned()
    }

    /// Run `script` with bash, as root, in `/root`, stdin from /dev/null. The guest stops it
    /// after `timeout` (status 124). Panics if the guest gives no status at all (qemu died or
    /// the agent hangs), with the tail of the console.
    pub fn run(&mut self, script: &str, timeout: Duration) -> GuestOutput {
        let started = Instant::now();
        let id = self.submit(script, timeout);
        let run = self.share_dir().join("run");
        let rc_path = run.join(format!("{id}.rc"));
        let deadline = started + timeout + JOB_GRACE;
        let status = loop {
            if let Ok(text) = fs::read_to_string(&rc_path) {
                break text.trim().parse::<i32>().unwrap_or_else(|_| {
                    panic!(
                        "job {id}: unreadable status {text:?} in {}",
                        rc_path.display()
                    )
                });
            }
            if let Some(exit) = self.qemu_exited() {
                panic!(
                    "qemu exited ({exit}) during job {id}:\n{script}\n{}",
                    self.console_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "the guest gave no status for job {id} within {:?}:\n{script}\n{}",
                    timeout + JOB_GRACE,
                    self.console_tail()
                );
            }
            sleep(Duration::from_millis(10));
        };
        let read = |ext: &str| {
            let p = run.join(format!("{id}.{ext}"));
            let text = String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()).into_owned();
            let _ = fs::remove_file(&p);
            text
        };
        let out = GuestOutput {
            stdout: read("out"),
            stderr: read("err"),
            status,
            elapsed: started.elapsed(),
        };
        let _ = fs::remove_file(&rc_path);
        let _ = fs::remove_file(run.join(format!("{id}.sh")));
        out
    }

    /// Run `argv` in the guest on a fresh pty (its controlling terminal) through `guest-pty`
    /// (this crate's `src/bin/guest-pty.rs`, built on the host by cargo, around
    /// [`crate::pty::converse`]): each of `prompts` seen is answered with the next of
    /// `answers` once the terminal's echo is off; after the answers, end-of-input.
    pub fn converse(
        &mut self,
        argv: &[&str],
        prompts: &[&str],
        answers: &[&str],
        timeout: Duration,
    ) -> GuestConversation {
        let driver = profile_dir().join("guest-pty");
        assert!(
            driver.is_file(),
            "{} is not built (cargo builds it with this crate's tests)",
            driver.display()
        );
        // Copied once per guest (a debug build is ~50 MB).
        let installed = self.share_dir().join("bin/guest-pty");
        let driver = if installed.is_file() {
            self.guest_path(&installed).display().to_string()
        } else {
            self.install(&driver)
        };
        let request = json!({
            "argv": argv,
            "prompts": prompts,
            "answers": answers,
            "timeout_ms": u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        });
        self.next_job += 1;
        let req_path = self
            .share_dir()
            .join("pty")
            .join(format!("{:06}.json", self.next_job));
        fs::write(&req_path, request.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", req_path.display()));
        let script = format!("{driver} {}", self.guest_path(&req_path).display());
        let out = self.run(&script, timeout + Duration::from_secs(10));
        let _ = fs::remove_file(&req_path);
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("guest-pty printed no JSON ({e}):\n{out:#?}"));
        let string = |k: &str| v[k].as_str().map(str::to_owned);
        let int = |k: &str| v[k].as_i64().and_then(|n| i32::try_from(n).ok());
        GuestConversation {
            code: int("code"),
            signal: int("signal"),
            transcript: string("transcript").unwrap_or_default(),
            killed: v["killed"].as_bool().unwrap_or(false),
            prompts: v["prompts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            error: string("error"),
        }
    }

    /// Restart the guest as a laptop restarts: a clean shutdown (`systemctl poweroff`), then
    /// a cold start of qemu and swtpm on the same disk overlay and TPM state, and wait for the
    /// agent of the new boot. Files and TPM NV state are kept; the TPM is reset (transient
    /// objects and sessions are gone), as on a real reboot. Returns how long it took.
    ///
    /// A cold start, not `systemctl reboot` inside one qemu: under TCG the kernel of a reset
    /// machine takes twice as long to start (measured: 14.6 s against 7.5 s of kernel time,
    /// 38-57 s a reboot against 30-38 s a power cycle on a busy host).
    pub fn reboot(&mut self) -> Duration {
        let started = Instant::now();
        self.shut_down(CLEAN_POWEROFF);
        if self.opts.tpm {
            self.start_swtpm();
        }
        let image = image();
        let booting = Instant::now();
        self.start_qemu(image);
        self.wait_for_boot(booting);
        started.elapsed()
    }

    /// The boot id of the running boot.
    pub fn boot_id(&self) -> &str {
        self.boots.last().map(String::as_str).unwrap_or("")
    }

    fn overlay(&self) -> PathBuf {
        self.dir.path().join("overlay.qcow2")
    }

    fn tpm_dir(&self) -> PathBuf {
        self.dir.path().join("tpm")
    }

    /// Queue a job for the agent; returns its id.
    fn submit(&mut self, script: &str, timeout: Duration) -> String {
        self.next_job += 1;
        let id = format!("{:06}", self.next_job);
        let q = self.share_dir().join("q");
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let write = |path: PathBuf, text: &str| {
            fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        };
        write(
            q.join(format!("{id}.timeout")),
            &format!("{}\n", secs.max(1)),
        );
        // The agent picks up `*.sh` only, so it never sees a half-written job.
        let tmp = q.join(format!(".{id}.tmp"));
        write(tmp.clone(), script);
        let job = q.join(format!("{id}.sh"));
        fs::rename(&tmp, &job).unwrap_or_else(|e| panic!("rename {}: {e}", job.display()));
        id
    }

    fn start_swtpm(&mut self) {
        let dir = self.tpm_dir();
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let sock = dir.join("swtpm.sock");
        // Left by the swtpm of the previous boot, if it did not remove it.
        let _ = fs::remove_file(&sock);
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join("swtpm.log"))
            .expect("open swtpm.log");
        let mut cmd = Command::new("swtpm");
        cmd.arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            // Exit when qemu goes, also when it is killed (by itself, swtpm stays then).
            .arg("--terminate")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup swtpm.log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run swtpm (apt-get install swtpm): {e}"));
        self.swtpm = Some(child);
        let deadline = Instant::now() + SWTPM_TIMEOUT;
        while !sock.exists() {
            if let Some(Ok(Some(status))) = self.swtpm.as_mut().map(Child::try_wait) {
                self.swtpm = None;
                panic!(
                    "swtpm exited at start ({status}): {}",
                    fs::read_to_string(dir.join("swtpm.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "swtpm made no socket at {} within {SWTPM_TIMEOUT:?}",
                sock.display()
            );
            sleep(Duration::from_millis(20));
        }
    }

    fn start_qemu(&mut self, image: &Image) {
        let d = self.dir.path();
        let log = File::options()
            .create(true)
            .append(true)
            .open(d.join("qemu.log"))
            .expect("open qemu.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-accel", "tcg,thread=multi", "-cpu", "max"])
            .args(["-smp", &self.opts.cpus.to_string()])
            .args(["-m", &self.opts.memory_mib.to_string()])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args(["-append", "console=ttyS0 root=/dev/vda rw quiet"])
            .arg("-drive")
            .arg(format!(
                "file={},format=qcow2,if=virtio,cache=unsafe,discard=unmap",
                self.overlay().display()
            ))
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=host0,security_model=none,id=host0",
                self.share_dir().display()
            ))
            .args(["-device", "virtio-rng-pci"])
            .args(["-nic", "none", "-monitor", "none"])
            // Appended to, so the console of every boot is kept.
            .arg("-chardev")
            .arg(format!(
                "file,id=console,append=on,path={}",
                d.join("console.log").display()
            ))
            .args(["-serial", "chardev:console"]);
        if self.opts.tpm {
            cmd.arg("-chardev")
                .arg(format!(
                    "socket,id=chrtpm,path={}",
                    self.tpm_dir().join("swtpm.sock").display()
                ))
                .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
                .args(["-device", "tpm-crb,tpmdev=tpm0"]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup qemu.log"))
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run qemu-system-x86_64 (apt-get install qemu-system-x86): {e}")
        });
        self.qemu = Some(child);
    }

    /// Wait until the agent announces a boot id not seen before.
    fn wait_for_boot(&mut self, started: Instant) {
        let boot_dir = self.share_dir().join("boot");
        let deadline = started + self.opts.boot_timeout;
        let mut last_console_check = Instant::now();
        // Only this boot's part of the console counts for failing fast.
        let console_from = self.console().len();
        loop {
            let new = fs::read_dir(&boot_dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| !n.starts_with('.') && !self.boots.contains(n));
            if let Some(id) = new {
                self.boots.push(id);
                self.agent_up = true;
                return;
            }
            if let Some(exit) = self.qemu_exited() {
                panic!(
                    "qemu exited ({exit}) before the guest came up.\nqemu.log:\n{}\n{}",
                    fs::read_to_string(self.dir.path().join("qemu.log")).unwrap_or_default(),
                    self.console_tail()
                );
            }
            // Fail fast on a boot that cannot come up any more.
            if last_console_check.elapsed() > Duration::from_secs(2) {
                last_console_check = Instant::now();
                let console = self.console();
                let console = console.get(console_from..).unwrap_or("");
                for fatal in [
                    "Kernel panic",
                    "You are in emergency mode",
                    "Give root password",
                ] {
                    if console.contains(fatal) {
                        panic!(
                            "the guest did not boot ({fatal:?}).\n{}",
                            self.console_tail()
                        );
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "the guest's agent did not answer within {:?} of starting (boot {} in {}).\n{}",
                    self.opts.boot_timeout,
                    self.boots.len() + 1,
                    self.dir.path().display(),
                    self.console_tail()
                );
            }
            sleep(Duration::from_millis(100));
        }
    }

    fn qemu_exited(&mut self) -> Option<ExitStatus> {
        match self.qemu.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status),
            _ => None,
        }
    }

    fn console_tail(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let from = lines.len().saturating_sub(CONSOLE_TAIL);
        format!(
            "--- the last {} lines of the guest console ---\n{}\n--- end of console ---",
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// Power off with `script` (through the agent, if it is up), wait for qemu with a deadline
    /// and kill it otherwise; then the same for swtpm, which exits by itself when qemu goes.
    fn shut_down(&mut self, script: &str) {
        if let Some(mut qemu) = self.qemu.take() {
            let running = matches!(qemu.try_wait(), Ok(None));
            let mut timeout = Duration::ZERO;
            if running && self.agent_up {
                timeout = POWEROFF_TIMEOUT;
                // A panic here would abort the test process (we may be unwinding already).
                let id = self.next_job + 1;
                let q = self.share_dir().join("q");
                let tmp = q.join(".poweroff.tmp");
                if fs::write(q.join(format!("{id:06}.timeout")), "60\n").is_ok()
                    && fs::write(&tmp, script).is_ok()
                {
                    let _ = fs::rename(&tmp, q.join(format!("{id:06}.sh")));
                }
                self.next_job = id;
            }
            self.agent_up = false;
            // A guest whose agent is not up cannot be asked to power off: killed at once.
            if wait_exit(&mut qemu, timeout).is_none() {
                if running && !timeout.is_zero() {
                    note(&format!(
                        "qemu (pid {}) did not power off within {timeout:?}; killing it",
                        qemu.id()
                    ));
                }
                let _ = qemu.kill();
            }
            let _ = qemu.wait();
        }
        if let Some(mut swtpm) = self.swtpm.take() {
            if wait_exit(&mut swtpm, SWTPM_TIMEOUT).is_none() {
                note(&format!(
                    "swtpm (pid {}) was still running {SWTPM_TIMEOUT:?} after qemu; stopping it",
                    swtpm.id()
                ));
                // SIGTERM first: swtpm saves its state on a graceful stop.
                if let Ok(pid) = i32::try_from(swtpm.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
                if wait_exit(&mut swtpm, SWTPM_TIMEOUT).is_none() {
                    let _ = swtpm.kill();
                }
            }
            let _ = swtpm.wait();
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // The disk overlay and TPM state are deleted next, so the services need not stop
        // one by one: sync and power off at once (~1 s instead of ~5-8 s under TCG).
        self.shut_down(QUICK_POWEROFF);
        // The TempDir removes the overlay, the share, the console log and the TPM state.
    }
}

/// Kill the child when the thread that started it ends (a test that is killed or unwinds
/// past its guard leaves no qemu or swtpm behind).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// A line on the real stderr, past the test harness's capture: timings and cleanup notes.
pub fn note(text: &str) {
    let _ = writeln!(io::stderr(), "guest: {text}");
}

/// Run one named check of a guest test under `catch_unwind`, noting `ok` or `FAIL` with its
/// time: the guest tests boot once and run every check, then fail with all the failures
/// ([`assert_checks_passed`]). The failure as "name: message", if it failed.
pub fn check(name: &str, run: impl FnOnce()) -> Option<String> {
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    let took = started.elapsed().as_secs_f64();
    match result {
        Ok(()) => {
            note(&format!("ok   {name} ({took:.1} s)"));
            None
        }
        Err(e) => {
            note(&format!("FAIL {name} ({took:.1} s)"));
            Some(format!("{name}: {}", panic_text(&*e)))
        }
    }
}

/// The message of a caught panic.
pub fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Fail with every failed check of `what` ("guest", "camera guest"), if any failed.
#[track_caller]
pub fn assert_checks_passed(what: &str, failed: &[String]) {
    assert!(
        failed.is_empty(),
        "{} {what} check(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}
