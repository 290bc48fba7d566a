//! An expect-like driver for interactive programs (su, sudo): start a command on a fresh pty
//! (as its controlling terminal) or on pipes, wait for a prompt before typing, keep the whole
//! transcript, and never wait forever: every wait has a deadline, and a command that overstays
//! is killed by its process group (it runs in a session of its own).
//!
//! Typing on a pty right after a prompt appears is racy: Linux-PAM's misc_conv (su) prints the
//! prompt and *then* switches echo off with `tcsetattr(TCSAFLUSH)`, which discards input typed
//! in between (this is why `script` was flaky). [`Session::send_secret`] therefore waits until
//! the terminal's ECHO flag is off — the kernel flushes before it applies the new modes — and
//! only then types.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::signal::{Signal, killpg};
use nix::sys::termios::{LocalFlags, tcgetattr};
use nix::unistd::{Pid, pipe2};

/// How a command's terminal is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A new pty is stdin, stdout, stderr and the controlling terminal (su, login).
    Pty,
    /// stdin is a pipe; stdout and stderr share one pipe, in order (sudo -S).
    Pipes,
}

/// Why waiting for output stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// The output ended (the command closed its terminal or exited).
    Eof,
    /// Nothing matched before the deadline.
    Timeout,
}

/// A running command and everything it printed so far.
#[derive(Debug)]
pub struct Session {
    child: Child,
    channel: Channel,
    output: File,
    input: Option<File>,
    /// The pty master, to read the terminal modes (same fd as `output` for a pty).
    master: Option<OwnedFd>,
    transcript: Vec<u8>,
    /// How much of the transcript `expect_any` has consumed.
    consumed: usize,
    eof: bool,
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub transcript: String,
    /// Set when the driver had to kill the command.
    pub killed: bool,
}

impl Session {
    /// Start `cmd` on a pty or on pipes, in a new session (setsid), so that it never touches
    /// the caller's terminal and can be killed as a group.
    pub fn spawn(mut cmd: Command, channel: Channel) -> io::Result<Session> {
        let (output, input, master) = match channel {
            Channel::Pty => {
                let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
                // openpty's fds are inheritable: keep the master out of the child (and of
                // everything the child starts), and the slave's original number too.
                cloexec(&pty.master)?;
                cloexec(&pty.slave)?;
                cmd.stdin(Stdio::from(pty.slave.try_clone()?))
                    .stdout(Stdio::from(pty.slave.try_clone()?))
                    .stderr(Stdio::from(pty.slave));
                // SAFETY: setsid and ioctl are async-signal-safe; fd 0 is the pty slave here.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let master = pty.master;
                let output = File::from(master.try_clone()?);
                let input = File::from(master.try_clone()?);
                (output, input, Some(master))
            }
            Channel::Pipes => {
                // O_CLOEXEC: a child that inherited the write end of its own stdin would
                // never see end-of-input.
                let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
                let (in_r, in_w) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
                cmd.stdin(Stdio::from(in_r))
                    .stdout(Stdio::from(out_w.try_clone()?))
                    .stderr(Stdio::from(out_w));
                // SAFETY: setsid is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::setsid() < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                (File::from(out_r), File::from(in_w), None)
            }
        };
        let child = cmd.spawn()?;
        // Drop our copies of the child's ends (held by `cmd`), or EOF never comes.
        drop(cmd);
        Ok(Session {
            child,
            channel,
            output,
            input: Some(input),
            master,
            transcript: Vec::new(),
            consumed: 0,
            eof: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed so far.
    pub fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.transcript).into_owned()
    }

    /// Read whatever arrives within `timeout` (at most one read). Returns false at EOF.
    fn read_some(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut pfd = libc::pollfd {
            fd: self.output.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(true)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(true);
        }
        let mut buf = [0u8; 4096];
        match self.output.read(&mut buf) {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(k) => {
                self.transcript.extend_from_slice(&buf[..k]);
                Ok(true)
            }
            // A pty master reads EIO once every slave fd is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                self.eof = true;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Wait until one of `needles` appears in output not yet consumed; consume through the
    /// earliest match and return its index.
    pub fn expect_any(
        &mut self,
        needles: &[&str],
        timeout: Duration,
    ) -> io::Result<Result<usize, Wait>> {
        let deadline = Instant::now() + timeout;
        loop {
            let rest = &self.transcript[self.consumed..];
            let best = needles
                .iter()
                .enumerate()
                .filter_map(|(i, n)| find(rest, n.as_bytes()).map(|at| (at, i, n.len())))
                .min();
            if let Some((at, i, len)) = best {
                self.consumed += at + len;
                return Ok(Ok(i));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Err(Wait::Timeout));
            }
            if !self.read_some(deadline - now)? {
                return Ok(Err(Wait::Eof));
            }
        }
    }

    /// Whether the terminal echoes what is typed (`None` on pipes).
    pub fn echo(&self) -> io::Result<Option<bool>> {
        let Some(master) = &self.master else {
            return Ok(None);
        };
        let modes = tcgetattr(master.as_fd()).map_err(io::Error::from)?;
        Ok(Some(modes.local_flags.contains(LocalFlags::ECHO)))
    }

    /// Type a line. On a pty, first wait (up to 5 s) for the terminal to switch echo off, as
    /// every password/PIN prompt does, so that the program's input flush cannot eat the line.
    pub fn send_secret(&mut self, text: &str) -> io::Result<()> {
        if let Some(master) = &self.master {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let modes = tcgetattr(master.as_fd()).map_err(io::Error::from)?;
                if !modes.local_flags.contains(LocalFlags::ECHO) || Instant::now() > deadline {
                    break;
                }
                sleep(Duration::from_millis(2));
            }
        }
        let input = self
            .input
            .as_mut()
            .ok_or_else(|| io::Error::other("input already closed"))?;
        let eol = if self.channel == Channel::Pty {
            "\r"
        } else {
            "\n"
        };
        input.write_all(format!("{text}{eol}").as_bytes())?;
        input.flush()
    }

    /// Type raw bytes, with no line ending and no wait (a pty's ^C is `b"\x03"`: the line
    /// discipline turns it into SIGINT for the foreground process group).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let input = self
            .input
            .as_mut()
            .ok_or_else(|| io::Error::other("input already closed"))?;
        input.write_all(bytes)?;
        input.flush()
    }

    /// End of input: close the pipe, or type the terminal's EOF character (^D) on the pty.
    pub fn close_input(&mut self) -> io::Result<()> {
        match self.channel {
            Channel::Pipes => {
                self.input = None;
                Ok(())
            }
            Channel::Pty => match self.input.as_mut() {
                Some(input) => input.write_all(&[4]),
                None => Ok(()),
            },
        }
    }

    /// Read to the end and reap the command; kill its process group if it is not done within
    /// `timeout`.
    pub fn finish(mut self, timeout: Duration) -> io::Result<Finished> {
        let deadline = Instant::now() + timeout;
        let mut killed = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if !self.read_some((deadline - now).min(Duration::from_millis(50)))? {
                break;
            }
            // The command may be gone while a grandchild still holds the terminal open.
            if self.child.try_wait()?.is_some() {
                // Collect what is already buffered, then stop.
                while self.read_some(Duration::from_millis(20))? {
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                break;
            }
        }
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                killed = true;
                let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
                break self.child.wait()?;
            }
            sleep(Duration::from_millis(5));
        };
        Ok(Finished {
            code: status.code(),
            signal: status.signal(),
            transcript: self.transcript(),
            killed,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

fn cloexec(fd: &OwnedFd) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(|_| ())
        .map_err(io::Error::from)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The result of [`converse`].
#[derive(Debug, Clone)]
pub struct Conversation {
    pub finished: Finished,
    /// The prompts seen, in order (each an entry of the `prompts` given to [`converse`]).
    pub prompts: Vec<String>,
    /// Why the driver gave up before the command ended on its own, if it did.
    pub error: Option<String>,
}

/// Run `cmd`, answering each prompt (any of `prompts`) with the next of `answers`; once the
/// answers are used up, the next prompt gets end-of-input. `timeout` bounds the whole run.
pub fn converse(
    cmd: Command,
    channel: Channel,
    prompts: &[&str],
    answers: &[&str],
    timeout: Duration,
) -> io::Result<Conversation> {
    let deadline = Instant::now() + timeout;
    let mut session = Session::spawn(cmd, channel)?;
    let mut seen = Vec::new();
    let mut answers = answers.iter();
    let mut error = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match session.expect_any(prompts, left)? {
            Ok(i) => {
                seen.push(prompts[i].to_string());
                match answers.next() {
                    Some(a) => session.send_secret(a)?,
                    None => session.close_input()?,
                }
            }
            Err(Wait::Eof) => break,
            Err(Wait::Timeout) => {
                error = Some(format!(
                    "no prompt and no exit within {timeout:?}; output so far: {:?}",
                    session.transcript()
                ));
                break;
            }
        }
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let finished = session.finish(left)?;
    if finished.killed && error.is_none() {
        error = Some(format!("killed after {timeout:?}"));
    }
    Ok(Conversation {
        finished,
        prompts: seen,
        error,
    })
}
