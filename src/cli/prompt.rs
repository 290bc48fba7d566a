//! Asking for PINs and passwords: on the terminal with echo off, or one per line on stdin.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use aloha::Secret;
use anyhow::{Context, Result, bail};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Where secrets come from.
pub enum Source {
    /// The controlling terminal, echo off; new secrets are asked twice.
    Terminal,
    /// Standard input, one secret per line, each asked once (scripts and tests).
    Stdin(io::StdinLock<'static>),
}

impl Source {
    pub fn new(from_stdin: bool) -> Source {
        if from_stdin {
            Source::Stdin(io::stdin().lock())
        } else {
            Source::Terminal
        }
    }

    /// A secret the user already has (a password, the current PIN).
    pub fn existing(&mut self, prompt: &str) -> Result<Secret> {
        match self {
            Source::Terminal => ask_terminal(prompt),
            Source::Stdin(lock) => read_line(lock, prompt),
        }
    }

    /// A secret being chosen now: asked twice on a terminal, and both answers must match.
    pub fn new_secret(&mut self, prompt: &str, repeat: &str) -> Result<Secret> {
        match self {
            Source::Stdin(lock) => read_line(lock, prompt),
            Source::Terminal => {
                let first = ask_terminal(prompt)?;
                let second = ask_terminal(repeat)?;
                if first != second {
                    bail!("the two entries differ; nothing was changed");
                }
                Ok(first)
            }
        }
    }
}

fn read_line(lock: &mut io::StdinLock<'static>, what: &str) -> Result<Secret> {
    let mut line = Zeroizing::new(String::new());
    let n = lock
        .read_line(&mut line)
        .context("cannot read standard input")?;
    if n == 0 {
        bail!(
            "standard input ended before the {} was given",
            what.trim_end_matches(':').to_lowercase()
        );
    }
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(Secret::new(trimmed))
}

/// Restores the terminal's echo even on early return.
struct EchoGuard<'a> {
    tty: &'a File,
    saved: nix::sys::termios::Termios,
}

impl Drop for EchoGuard<'_> {
    fn drop(&mut self) {
        let _ = tcsetattr(self.tty.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn ask_terminal(prompt: &str) -> Result<Secret> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("no terminal to ask on; pass --pin-stdin to read from standard input")?;
    let saved = tcgetattr(tty.as_fd()).context("cannot read the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    // Ctrl-C must restore echo before we exit: catch it while the prompt is up.
    let handler = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let previous = unsafe { sigaction(Signal::SIGINT, &handler) }.ok();
    let result = (|| {
        let _guard = EchoGuard {
            tty: &tty,
            saved: saved.clone(),
        };
        tcsetattr(tty.as_fd(), SetArg::TCSAFLUSH, &quiet).context("cannot turn off echo")?;
        let mut io: &File = &tty;
        io.write_all(prompt.as_bytes())?;
        io.write_all(b" ")?;
        io.flush()?;
        let mut line = Zeroizing::new(Vec::new());
        let mut byte = [0u8; 1];
        loop {
            match io.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if INTERRUPTED.load(Ordering::SeqCst) {
                        bail!("cancelled");
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let text = String::from_utf8(line.to_vec()).context("the entry is not valid UTF-8")?;
        Ok(Secret::from(text))
    })();
    if let Some(previous) = previous {
        // SAFETY: restoring the handler that was installed before.
        let _ = unsafe { sigaction(Signal::SIGINT, &previous) };
    }
    if INTERRUPTED.load(Ordering::SeqCst) {
        let _ = writeln!(&tty);
        std::process::exit(130);
    }
    result
}
