//! A syslog sink for tests: a Unix datagram socket bound where glibc's syslog(3) — and so
//! pam_syslog(3) — sends (`/dev/log`, inside a private namespace whose /dev is an overlay; see
//! [`crate::namespace`]). A process's datagrams are queued by the time it has exited, so
//! [`Syslog::drain`] after a command returns exactly that command's lines.
//!
//! A thread empties the socket as lines come: its queue is short (net.unix.max_dgram_qlen,
//! 10 by default) and glibc's syslog(3) blocks when it is full, so a sink read only after the
//! command would freeze a command that logs more than that. Bind only after
//! [`crate::namespace::PrivateSystem::enter`], which needs a single-threaded process.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The `<PRI>` number: facility * 8 + severity.
    pub priority: u32,
    /// The rest, as sent: `Mmm dd hh:mm:ss ident[pid]: text`.
    pub text: String,
}

/// syslog(3)'s facility number for LOG_AUTHPRIV, as [`Line::facility`] returns it.
pub const AUTHPRIV: u32 = (libc::LOG_AUTHPRIV >> 3) as u32;
/// The severity of LOG_DEBUG, as [`Line::severity`] returns it.
pub const DEBUG: u32 = libc::LOG_DEBUG as u32;

impl Line {
    pub fn facility(&self) -> u32 {
        self.priority / 8
    }
    pub fn severity(&self) -> u32 {
        self.priority % 8
    }
}

#[derive(Debug)]
pub struct Syslog {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    path: PathBuf,
}

/// The socket and what was read from it. Every `recv` happens with `lines` locked, so a line
/// is either still queued in the socket or already in `lines`, never in between.
#[derive(Debug)]
struct Shared {
    socket: UnixDatagram,
    lines: Mutex<Vec<Line>>,
}

impl Shared {
    /// Move every queued datagram into `lines` (the socket is non-blocking).
    fn take_queued(&self, lines: &mut Vec<Line>) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            lines.push(parse(&buf[..n]));
        }
    }
}

impl Syslog {
    /// Bind at `path` (which must not exist yet), writable by every user, and start reading.
    pub fn bind(path: &Path) -> io::Result<Syslog> {
        let socket = UnixDatagram::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
        socket.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            socket,
            lines: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut pollfd = libc::pollfd {
                        fd: shared.socket.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for a socket `shared` keeps open; 50 ms so a
                    // stop request is seen soon.
                    let ready = unsafe { libc::poll(&mut pollfd, 1, 50) };
                    if ready > 0 {
                        let mut lines = shared.lines.lock().unwrap();
                        shared.take_queued(&mut lines);
                    }
                }
            })
        };
        Ok(Syslog {
            shared,
            stop,
            reader: Some(reader),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message received so far (and not returned by an earlier drain).
    pub fn drain(&self) -> Vec<Line> {
        let mut lines = self.shared.lines.lock().unwrap();
        self.shared.take_queued(&mut lines);
        std::mem::take(&mut *lines)
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

fn parse(datagram: &[u8]) -> Line {
    let text = String::from_utf8_lossy(datagram);
    let text = text.trim_end_matches(['\0', '\n']);
    if let Some(rest) = text.strip_prefix('<')
        && let Some((pri, body)) = rest.split_once('>')
        && let Ok(priority) = pri.parse()
    {
        return Line {
            priority,
            text: body.to_string(),
        };
    }
    Line {
        priority: 0,
        text: text.to_string(),
    }
}
