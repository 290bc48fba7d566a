//! A syslog sink for tests: a Unix datagram socket bound where glibc's syslog(3) — and so
//! pam_syslog(3) — sends (`/dev/log`, inside a private namespace whose /dev is an overlay; see
//! [`crate::namespace`]). A process's datagrams are queued by the time it has exited, so
//! [`Syslog::drain`] after a command returns exactly that command's lines.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

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
    socket: UnixDatagram,
    path: PathBuf,
}

impl Syslog {
    /// Bind at `path` (which must not exist yet), writable by every user.
    pub fn bind(path: &Path) -> io::Result<Syslog> {
        let socket = UnixDatagram::bind(path)?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every message queued so far.
    pub fn drain(&self) -> Vec<Line> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(parse(&buf[..n]));
        }
        out
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
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
