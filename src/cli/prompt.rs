//! Asking for PINs and passwords: on the terminal with echo off, or one per line on stdin.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aloha::Secret;
use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The longest entry accepted (PINs are at most 127 characters). Secrets are read into a buffer
/// of exactly this capacity, so it never grows and leaves no stray copies behind.
const MAX_ENTRY: usize = 1024;

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Where secrets come from.
pub enum Source {
    /// The controlling terminal, echo off; new secrets are asked twice.
    Terminal,
    /// Standard input, one secret per line, each asked once (scripts and tests). Read straight
    /// from fd 0, a byte at a time: std's stdin buffer would keep copies we cannot zeroize.
    Stdin,
}

impl Source {
    pub fn new(from_stdin: bool) -> Source {
        if from_stdin {
            Source::Stdin
        } else {
            Source::Terminal
        }
    }

    /// A secret the user already has (a password, the current PIN).
    pub fn existing(&mut self, prompt: &str) -> Result<Secret> {
        self.ask(prompt, None)
    }

    /// A secret the user already has, typed `within` this time: `Ok(None)` once it has passed
    /// (the question it answered is gone; a prompt left on screen would take the next answer).
    pub fn existing_within(&mut self, prompt: &str, within: Duration) -> Result<Option<Secret>> {
        match self.ask(prompt, Some(Instant::now() + within)) {
            Ok(secret) => Ok(Some(secret)),
            Err(e) if e.is::<Expired>() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn ask(&mut self, prompt: &str, deadline: Option<Instant>) -> Result<Secret> {
        match self {
            Source::Terminal => ask_terminal(prompt, deadline),
            Source::Stdin => read_line(prompt, deadline),
        }
    }

    /// A secret being chosen now: asked twice on a terminal, and both answers must match.
    pub fn new_secret(&mut self, prompt: &str, repeat: &str) -> Result<Secret> {
        match self {
            Source::Stdin => read_line(prompt, None),
            Source::Terminal => {
                let first = ask_terminal(prompt, None)?;
                let second = ask_terminal(repeat, None)?;
                if first != second {
                    bail!("the two entries differ; nothing was changed");
                }
                Ok(first)
            }
        }
    }
}

/// A deadline passed before the entry was finished.
#[derive(Debug, thiserror::Error)]
#[error("nothing was typed in time")]
struct Expired;

/// Why a line could not be read.
#[derive(Debug)]
enum LineError {
    /// The input ended before any byte of the line.
    Ended,
    TooLong,
    Interrupted,
    /// The deadline passed before the line was finished.
    TimedOut,
    Io(io::Error),
}

/// One line from `fd` into a buffer that never reallocates (no stray copies), without the
/// newline. `interrupted()` is asked before every read (a Ctrl-C while the prompt was being set
/// up left no read to interrupt) and on EINTR; otherwise EINTR is retried. With a `deadline`,
/// each read waits only until then.
fn read_secret_line(
    fd: BorrowedFd<'_>,
    interrupted: &dyn Fn() -> bool,
    deadline: Option<Instant>,
) -> Result<Zeroizing<Vec<u8>>, LineError> {
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_ENTRY));
    let mut byte = Zeroizing::new([0u8; 1]);
    let mut any = false;
    loop {
        if interrupted() {
            return Err(LineError::Interrupted);
        }
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut ready = [PollFd::new(fd, PollFlags::POLLIN)];
            match poll(
                &mut ready,
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
            ) {
                Ok(0) => return Err(LineError::TimedOut),
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(LineError::Io(e.into())),
            }
        }
        match nix::unistd::read(fd, &mut byte[..]) {
            Ok(0) if !any => return Err(LineError::Ended),
            Ok(0) => break,
            Ok(_) => {
                any = true;
                if byte[0] == b'\n' {
                    break;
                }
                if line.len() == MAX_ENTRY {
                    return Err(LineError::TooLong);
                }
                line.push(byte[0]);
            }
            // Checked at the top of the loop.
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(LineError::Io(e.into())),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// The line as a Secret: validated in place, then copied once into an exactly sized String.
fn to_secret(line: &[u8]) -> Result<Secret> {
    let text = std::str::from_utf8(line).context("the entry is not valid UTF-8")?;
    Ok(Secret::new(text))
}

/// [`Expired`] when `deadline` passed first.
fn read_line(what: &str, deadline: Option<Instant>) -> Result<Secret> {
    let what = what.trim_end_matches(':').to_lowercase();
    match read_secret_line(io::stdin().as_fd(), &|| false, deadline) {
        Ok(line) => to_secret(&line),
        Err(LineError::Ended) => bail!("standard input ended before the {what} was given"),
        Err(LineError::TooLong) => bail!("the {what} is longer than {MAX_ENTRY} bytes"),
        Err(LineError::Interrupted) => bail!("cancelled"),
        Err(LineError::TimedOut) => Err(Expired.into()),
        Err(LineError::Io(e)) => Err(anyhow::Error::new(e).context("cannot read standard input")),
    }
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

/// [`Expired`] when `deadline` passed first.
fn ask_terminal(prompt: &str, deadline: Option<Instant>) -> Result<Secret> {
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
        let interrupted = || INTERRUPTED.load(Ordering::SeqCst);
        match read_secret_line(tty.as_fd(), &interrupted, deadline) {
            Ok(line) => to_secret(&line),
            Err(LineError::Ended) => Ok(Secret::default()),
            Err(LineError::TooLong) => bail!("the entry is longer than {MAX_ENTRY} bytes"),
            Err(LineError::Interrupted) => bail!("cancelled"),
            Err(LineError::TimedOut) => {
                let mut io: &File = &tty;
                let _ = writeln!(io);
                Err(Expired.into())
            }
            Err(LineError::Io(e)) => Err(e.into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn lines(input: &[u8]) -> (UnixStream, UnixStream) {
        let (mut w, r) = UnixStream::pair().unwrap();
        w.write_all(input).unwrap();
        (w, r)
    }

    #[test]
    fn lines_are_read_into_a_buffer_that_never_grows() {
        let (w, r) = lines(b"482915\r\npassword\nlast");
        drop(w);
        let never = || false;
        let first = read_secret_line(r.as_fd(), &never, None).unwrap();
        assert_eq!(&first[..], b"482915");
        assert_eq!(first.capacity(), MAX_ENTRY);
        assert_eq!(
            &read_secret_line(r.as_fd(), &never, None).unwrap()[..],
            b"password"
        );
        assert_eq!(
            &read_secret_line(r.as_fd(), &never, None).unwrap()[..],
            b"last"
        );
        assert!(matches!(
            read_secret_line(r.as_fd(), &never, None),
            Err(LineError::Ended)
        ));
    }

    #[test]
    fn a_ctrl_c_before_the_read_cancels_it() {
        let (_w, r) = lines(b"482915\n");
        // The flag was set while echo was being turned off: the waiting input is not read.
        assert!(matches!(
            read_secret_line(r.as_fd(), &|| true, None),
            Err(LineError::Interrupted)
        ));
        // A Ctrl-C in the middle of the line stops it there.
        let (_w, r) = lines(b"482915\n");
        let reads = std::cell::Cell::new(0);
        let after_two = || {
            reads.set(reads.get() + 1);
            reads.get() > 2
        };
        assert!(matches!(
            read_secret_line(r.as_fd(), &after_two, None),
            Err(LineError::Interrupted)
        ));
    }

    #[test]
    fn a_deadline_ends_a_line_nobody_finishes_but_not_one_already_typed() {
        // Half a PIN, then nothing: the read gives up at the deadline instead of waiting on.
        let (_w, r) = lines(b"4829");
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            read_secret_line(r.as_fd(), &|| false, Some(soon)),
            Err(LineError::TimedOut)
        ));
        // A whole line waiting is read even at a deadline already passed.
        let (_w, r) = lines(b"482915\n");
        assert_eq!(
            &read_secret_line(r.as_fd(), &|| false, Some(Instant::now())).unwrap()[..],
            b"482915"
        );
    }

    #[test]
    fn an_overlong_entry_is_refused() {
        let mut long = vec![b'7'; MAX_ENTRY + 1];
        long.push(b'\n');
        let (w, r) = lines(&long);
        drop(w);
        assert!(matches!(
            read_secret_line(r.as_fd(), &|| false, None),
            Err(LineError::TooLong)
        ));
        assert!(to_secret(b"\xff\xfe").is_err());
        assert_eq!(to_secret(b"1234").unwrap().expose(), "1234");
    }
}
