//! A private copy of the machine's system directories, for tests that need real users, real
//! sudo and real su: a private mount namespace in which `/etc`, `/var/log`, `/var/lib/sudo`,
//! `/run/sudo` and `/dev` are overlays whose upper layers live in a tmpfs. useradd, chpasswd,
//! a sudoers.d entry, edited /etc/pam.d files, su's btmp records, sudo's lecture and timestamp
//! files and a `/dev/log` socket all land in that tmpfs and vanish with the namespace; the
//! machine's own directories are never written.
//!
//! `unshare(CLONE_NEWNS)` is refused to a multi-threaded process, so [`PrivateSystem::enter`]
//! must be the first thing a binary's `main` does (see `src/bin/sudo-su-scenario.rs` and
//! `src/bin/bench-pam.rs`); a `#[test]` runs such a binary as a child process. Everything the
//! binary starts afterwards (alohad, swtpm, sudo, su) inherits the namespace, so alohad's
//! getpwnam, sudo and su all see the test users.
//!
//! The module also holds the checks the tests run from the outside: a digest of a directory
//! tree ([`tree_digest`]) to prove /etc is byte-identical afterwards, and a scan for processes
//! still living in a mount namespace ([`processes_in_mount_namespace`]).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Directories overlaid in the namespace, when they exist. /dev is handled separately.
pub const OVERLAID: &[&str] = &["/etc", "/var/log", "/var/lib/sudo", "/run/sudo"];

/// statfs(2) magic of overlayfs.
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// The private system of the current process (see the module docs). Dropping it detaches the
/// tmpfs that holds the upper layers and removes its (empty) mount point; the overlays
/// themselves disappear with the namespace when its last process exits.
#[derive(Debug)]
pub struct PrivateSystem {
    base: PathBuf,
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = cstr(source.as_bytes())?;
    let target_c = cstr(target.as_os_str().as_bytes())?;
    let fstype = fstype.map(|f| cstr(f.as_bytes())).transpose()?;
    let data = data.map(|d| cstr(d.as_bytes())).transpose()?;
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "mount {} on {}: {e}",
                source.to_string_lossy(),
                target.display()
            ),
        ));
    }
    Ok(())
}

fn threads() -> io::Result<u32> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// Mount points directly below `/dev` (`/dev/pts`, `/dev/shm`, ...), outermost first.
fn dev_submounts() -> io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with("/dev/"))
        .map(PathBuf::from)
        .collect();
    points.sort();
    points.dedup();
    let mut top: Vec<PathBuf> = Vec::new();
    for p in points {
        if !top.iter().any(|t| p.starts_with(t)) {
            top.push(p);
        }
    }
    Ok(top)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(digits) = std::str::from_utf8(&bytes[i + 1..i + 4])
            && let Ok(v) = u8::from_str_radix(digits, 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl PrivateSystem {
    /// Unshare the mount namespace, make every mount private (nothing propagates back to the
    /// machine) and overlay the system directories. Must run while the process has one thread.
    pub fn enter() -> io::Result<PrivateSystem> {
        let n = threads()?;
        if n != 1 {
            return Err(io::Error::other(format!(
                "unshare(CLONE_NEWNS) needs a single-threaded process, this one has {n} threads"
            )));
        }
        // SAFETY: plain syscall; the process is single-threaded (checked above).
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("unshare(CLONE_NEWNS): {e} (needs root)"),
            ));
        }
        // Before anything else: no mount made below may propagate to the machine.
        mount(
            "none",
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        )?;
        let base = tempfile::Builder::new()
            .prefix("aloha-ns-")
            .tempdir()?
            .keep();
        let system = PrivateSystem { base };
        mount(
            "aloha-ns",
            &system.base,
            Some("tmpfs"),
            libc::MS_NOSUID,
            Some("mode=0755"),
        )?;
        for dir in OVERLAID {
            let dir = Path::new(dir);
            if dir.is_dir() {
                system.overlay(dir)?;
            }
        }
        system.overlay_dev()?;
        system.check()?;
        Ok(system)
    }

    fn overlay(&self, dir: &Path) -> io::Result<()> {
        let name = dir
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "_");
        let upper = self.base.join(format!("{name}.upper"));
        let work = self.base.join(format!("{name}.work"));
        fs::create_dir(&upper)?;
        fs::create_dir(&work)?;
        // The upper dir's root takes the lower dir's owner and mode, as the real dir has.
        let meta = fs::metadata(dir)?;
        fs::set_permissions(&upper, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid()))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            dir.display(),
            upper.display(),
            work.display()
        );
        mount("overlay", dir, Some("overlay"), 0, Some(&data))
    }

    /// /dev as an overlay too, so that a syslog socket can be bound at /dev/log. Its submounts
    /// (/dev/pts for the ptys, /dev/shm) are moved aside first and put back on top.
    fn overlay_dev(&self) -> io::Result<()> {
        let subs = dev_submounts()?;
        let mut stashed = Vec::new();
        for (i, sub) in subs.iter().enumerate() {
            let stash = self.base.join(format!("dev-sub-{i}"));
            if sub.is_dir() {
                fs::create_dir(&stash)?;
            } else {
                fs::File::create(&stash)?;
            }
            mount(
                &sub.to_string_lossy(),
                &stash,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            stashed.push((stash, sub));
        }
        self.overlay(Path::new("/dev"))?;
        for (stash, sub) in stashed {
            mount(&stash.to_string_lossy(), sub, None, libc::MS_MOVE, None)?;
        }
        Ok(())
    }

    /// Refuse to go on unless /etc really is our overlay: nothing below may write to the
    /// machine's /etc.
    pub fn check(&self) -> io::Result<()> {
        for dir in ["/etc", "/dev"] {
            let path = cstr(dir.as_bytes())?;
            // SAFETY: statfs writes into a zeroed struct we own; path is NUL-terminated.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
                return Err(io::Error::last_os_error());
            }
            if st.f_type as i64 != OVERLAYFS_MAGIC {
                return Err(io::Error::other(format!(
                    "{dir} is not the private overlay; refusing to touch it"
                )));
            }
        }
        Ok(())
    }

    /// Make room for a syslog sink at /dev/log: the machine's own (journald's socket or
    /// symlink), if there is one, is hidden by a whiteout in the overlay, never removed from
    /// the machine.
    pub fn free_dev_log(&self) -> io::Result<PathBuf> {
        self.check()?;
        let path = Path::new("/dev/log");
        match fs::symlink_metadata(path) {
            Ok(_) => fs::remove_file(path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(path.to_path_buf())
    }

    /// The tmpfs that holds the upper layers (and is a fine place for other private files).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `useradd` (no home, /bin/sh, own group) and, with a password, `chpasswd`. Returns the uid.
    pub fn add_user(&self, name: &str, password: Option<&str>) -> io::Result<u32> {
        self.check()?;
        run(
            Command::new("useradd").args([
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/bin/sh",
                "--user-group",
                name,
            ]),
            None,
        )?;
        if let Some(password) = password {
            run(
                &mut Command::new("chpasswd"),
                Some(&format!("{name}:{password}\n")),
            )?;
        }
        nix::unistd::User::from_name(name)
            .map_err(io::Error::other)?
            .map(|u| u.uid.as_raw())
            .ok_or_else(|| io::Error::other(format!("useradd {name}: no such user afterwards")))
    }

    /// `/etc/sudoers.d/NAME` (root, 0440), checked with `visudo -c`.
    pub fn sudoers(&self, name: &str, text: &str) -> io::Result<()> {
        self.check()?;
        let path = Path::new("/etc/sudoers.d").join(name);
        fs::write(&path, text)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o440))?;
        run(
            Command::new("visudo")
                .arg("-c")
                .arg("-q")
                .arg("-f")
                .arg(&path),
            None,
        )
        .map(|_| ())
    }

    /// Insert `line` into `/etc/pam.d/SERVICE` before the first line that reads `anchor`.
    pub fn pam_insert_before(&self, service: &str, anchor: &str, line: &str) -> io::Result<()> {
        self.check()?;
        let path = Path::new("/etc/pam.d").join(service);
        let text = fs::read_to_string(&path)?;
        let mut out = String::new();
        let mut done = false;
        for l in text.lines() {
            if !done && l.trim() == anchor {
                out.push_str(line);
                out.push('\n');
                done = true;
            }
            out.push_str(l);
            out.push('\n');
        }
        if !done {
            return Err(io::Error::other(format!(
                "{} has no line {anchor:?}",
                path.display()
            )));
        }
        fs::write(&path, out)
    }
}

impl Drop for PrivateSystem {
    fn drop(&mut self) {
        let Ok(base) = cstr(self.base.as_os_str().as_bytes()) else {
            return;
        };
        // SAFETY: NUL-terminated path; a lazy detach of our own tmpfs in our own namespace.
        unsafe { libc::umount2(base.as_ptr(), libc::MNT_DETACH) };
        let _ = fs::remove_dir(&self.base);
    }
}

/// Run a command to completion; stdout on success, its stderr in the error otherwise.
fn run(cmd: &mut Command, stdin: Option<&str>) -> io::Result<String> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{cmd:?}: {e}")))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The inode of a process's mount namespace (`self` or a pid).
pub fn mount_namespace(pid: Option<u32>) -> io::Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/ns/mnt"),
        None => "/proc/self/ns/mnt".into(),
    };
    Ok(fs::metadata(path)?.ino())
}

/// A scenario binary's `main`: enter a private system first (while the process still has one
/// thread), run `run` in it, and on failure drop the private system before exiting 2 with
/// `name: setup: …` on stderr, so nothing it set up outlives it.
pub fn scenario_main(name: &str, run: impl FnOnce(&PrivateSystem) -> Result<(), String>) {
    let system = match PrivateSystem::enter() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: private namespace: {e}");
            std::process::exit(2);
        }
    };
    let result = run(&system);
    drop(system);
    if let Err(e) = result {
        eprintln!("{name}: setup: {e}");
        std::process::exit(2);
    }
}

/// A failed scenario step, for `?`: what it was and why.
pub fn step<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e}")
}

/// End, by pid, every process in mount namespace `ns` but `except`, and describe each one: what
/// a scenario left behind.
pub fn end_strays(ns: u64, except: Option<u32>) -> Vec<String> {
    let mut stray = Vec::new();
    for p in processes_in_mount_namespace(ns) {
        if Some(p) == except {
            continue;
        }
        stray.push(describe_process(p));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    stray
}

/// Every process (by pid) whose mount namespace is `ns`.
pub fn processes_in_mount_namespace(ns: u64) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return vec![];
    };
    let mut pids: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&pid| mount_namespace(Some(pid)).is_ok_and(|n| n == ns))
        .collect();
    pids.sort_unstable();
    pids
}

/// `pid (comm) cmdline` for a report.
pub fn describe_process(pid: u32) -> String {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    format!("{pid}: {}", cmdline.trim())
}

/// One line per entry below `root` (not following symlinks): type, mode, owner, size, mtime
/// and a content digest for regular files, the target for symlinks. Two equal maps mean the
/// tree is byte-identical, modes and owners included.
pub fn tree_digest(root: &Path) -> io::Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        let common = format!(
            "mode={:o} uid={} gid={} mtime={}.{:09}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let entry = if ft.is_symlink() {
            format!("symlink -> {} {common}", fs::read_link(&path)?.display())
        } else if ft.is_dir() {
            for e in fs::read_dir(&path)? {
                stack.push(e?.path());
            }
            format!("dir {common}")
        } else if ft.is_file() {
            let mut hasher = DefaultHasher::new();
            let mut file = fs::File::open(&path)?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut len = 0u64;
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.write(&buf[..n]);
                len += n as u64;
            }
            format!("file len={len} digest={:016x} {common}", hasher.finish())
        } else {
            format!("special {common}")
        };
        out.insert(path, entry);
    }
    Ok(out)
}

/// The differences between two digests, for an assertion message.
pub fn digest_diff(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut diff = Vec::new();
    for (path, b) in before {
        match after.get(path) {
            None => diff.push(format!("removed {}: {b}", path.display())),
            Some(a) if a != b => diff.push(format!("changed {}: {b} => {a}", path.display())),
            Some(_) => {}
        }
    }
    for (path, a) in after {
        if !before.contains_key(path) {
            diff.push(format!("added {}: {a}", path.display()));
        }
    }
    diff
}

/// Mount points of the calling process's namespace (to show none were left behind).
pub fn mount_points() -> io::Result<Vec<String>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .collect();
    points.sort();
    Ok(points)
}

/// What a scenario binary run by [`run_scenario`] printed, and what it left behind.
#[derive(Debug)]
pub struct ScenarioRun {
    /// The last line of its stdout, as JSON.
    pub report: serde_json::Value,
    pub stderr: String,
    /// Processes found in its namespace after it exited (killed by pid).
    pub stray: Vec<String>,
}

/// A scenario child: whatever way [`run_scenario`] leaves (a failed assert included), the child
/// is killed and reaped, and anything left in its namespace is ended by pid, while the handle
/// still holds that namespace (so its id is not reused meanwhile).
struct ScenarioChild {
    child: Child,
    /// The child's namespace, once known, and a handle that keeps it alive.
    ns: Option<(u64, fs::File)>,
    /// What was ended in it, once [`ScenarioChild::finish`] ran.
    stray: Option<Vec<String>>,
}

impl ScenarioChild {
    fn finish(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stray = self.stray.get_or_insert_with(|| {
            self.ns
                .as_ref()
                .map(|(ns, _)| end_strays(*ns, None))
                .unwrap_or_default()
        });
        stray.clone()
    }
}

impl Drop for ScenarioChild {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Run a scenario binary that enters a [`PrivateSystem`], prints `{"mnt_ns": N}`, waits for
/// `go` on stdin (and exits 2 without it) and ends by printing one JSON report line (see
/// `src/bin/shipped-pam-scenario.rs`). The namespace is held open until the child has exited,
/// so that its id cannot be reused while we look for processes left in it. Panics with the
/// child's stderr if it fails or hangs.
pub fn run_scenario(exe: &Path, args: &[&str], timeout: std::time::Duration) -> ScenarioRun {
    use std::io::BufRead;
    use std::time::Instant;
    let child = Command::new(exe)
        .args(args)
        .env("ALOHA_TESTS_NO_BUILD", "1")
        .env(crate::build::PROFILE_DIR_ENV, crate::build::profile_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
    let mut child = ScenarioChild {
        child,
        ns: None,
        stray: None,
    };
    let pid = child.child.id();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.child.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let Ok(first) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
        child.finish();
        panic!(
            "the scenario printed no namespace:\n{}",
            stderr_reader.join().unwrap_or_default()
        );
    };
    let v: serde_json::Value = serde_json::from_str(&first).expect("first line is {\"mnt_ns\": N}");
    let ns = v["mnt_ns"].as_u64().expect("mnt_ns");
    let handle = fs::File::open(format!("/proc/{pid}/ns/mnt")).expect("open the child's namespace");
    let held = handle.metadata().expect("ns").ino();
    child.ns = Some((held, handle));
    assert_eq!(held, ns, "the child reported another namespace");
    assert_ne!(
        Some(ns),
        mount_namespace(None).ok(),
        "the scenario did not leave the test's mount namespace"
    );
    child
        .child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell the scenario to go on");
    let status = loop {
        if let Some(status) = child.child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stray = child.finish();
    drop(child);
    let stderr = stderr_reader.join().unwrap_or_default();
    let lines: Vec<String> = rx.try_iter().collect();
    let _ = reader.join();
    let Some(status) = status else {
        panic!("the scenario did not finish within {timeout:?}:\n{stderr}");
    };
    assert!(
        status.success(),
        "the scenario failed ({status}):\n{stderr}"
    );
    let last = lines
        .last()
        .unwrap_or_else(|| panic!("no report:\n{stderr}"));
    let report = serde_json::from_str(last).unwrap_or_else(|e| panic!("bad report {e}: {last}"));
    ScenarioRun {
        report,
        stderr,
        stray,
    }
}

/// For a scenario binary: read the caller's `go` (see [`run_scenario`]). Anything else —
/// EOF because the caller gave up, or another line — is an error: the scenario must not go on.
pub fn wait_for_go() -> io::Result<()> {
    use std::io::BufRead;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim_end() == "go" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "expected \"go\" from the caller, got {line:?}"
        )))
    }
}
