//! Length-prefixed frames with a hard size cap and a deadline on every read and write.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. The length is
//! checked against the cap before anything is allocated, and every blocking call is bounded by
//! the time left until the caller's deadline, so a slow or silent peer costs one deadline.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use thiserror::Error;
use zeroize::Zeroizing;

/// Largest frame either side accepts (requests and replies are small JSON objects).
pub const MAX_FRAME_LEN: usize = 64 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("the peer did not answer in time")]
    Timeout,
    #[error("the peer closed the connection")]
    Closed,
    #[error("the connection ended in the middle of a message")]
    Truncated,
    #[error("a message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("an empty message")]
    Empty,
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
}

/// A stream whose blocking calls can be bounded; implemented for `UnixStream`.
pub trait Deadlined: Read + Write {
    fn set_read_deadline_in(&self, left: Duration) -> io::Result<()>;
    fn set_write_deadline_in(&self, left: Duration) -> io::Result<()>;
}

impl Deadlined for UnixStream {
    fn set_read_deadline_in(&self, left: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(left))
    }
    fn set_write_deadline_in(&self, left: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(left))
    }
}

fn time_left(deadline: Instant) -> Result<Duration, FrameError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(FrameError::Timeout)
    } else {
        Ok(left)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Fill `buf` completely before `deadline`. `Ok(false)` means a clean end of stream before the
/// first byte.
fn read_full<S: Deadlined>(
    stream: &mut S,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<bool, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        stream.set_read_deadline_in(time_left(deadline)?)?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(FrameError::Timeout),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Read one frame. The buffer is zeroized on drop: requests carry PINs and passwords.
pub fn read_frame<S: Deadlined>(
    stream: &mut S,
    deadline: Instant,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut header = [0u8; 4];
    if !read_full(stream, &mut header, deadline)? {
        return Err(FrameError::Closed);
    }
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    if !read_full(stream, &mut body, deadline)? {
        return Err(FrameError::Truncated);
    }
    Ok(body)
}

/// Write one frame before `deadline`.
pub fn write_frame<S: Deadlined>(
    stream: &mut S,
    payload: &[u8],
    deadline: Instant,
) -> Result<(), FrameError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: payload.len(),
        max: MAX_FRAME_LEN,
    })?;
    let mut framed = Zeroizing::new(Vec::with_capacity(payload.len() + 4));
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(payload);
    let mut sent = 0;
    while sent < framed.len() {
        stream.set_write_deadline_in(time_left(deadline)?)?;
        match stream.write(&framed[sent..]) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(FrameError::Timeout),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn round_trip() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(&mut a, b"{\"type\":\"hello\"}", soon()).unwrap();
        let got = read_frame(&mut b, soon(), MAX_FRAME_LEN).unwrap();
        assert_eq!(&got[..], b"{\"type\":\"hello\"}");
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        // Claim 4 GiB and send nothing else: the reader must refuse without waiting or allocating.
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let err = read_frame(&mut b, soon(), MAX_FRAME_LEN).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len, .. } if len == u32::MAX as usize),
            "{err}"
        );
        assert!(write_frame(&mut a, &vec![b'x'; MAX_FRAME_LEN + 1], soon()).is_err());
    }

    #[test]
    fn truncated_frame_is_detected() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&10u32.to_be_bytes()).unwrap();
        a.write_all(b"abc").unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, soon(), MAX_FRAME_LEN),
            Err(FrameError::Truncated)
        ));
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0]).unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, soon(), MAX_FRAME_LEN),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn clean_close_and_empty_frames() {
        let (a, mut b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, soon(), MAX_FRAME_LEN),
            Err(FrameError::Closed)
        ));
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&0u32.to_be_bytes()).unwrap();
        assert!(matches!(
            read_frame(&mut b, soon(), MAX_FRAME_LEN),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn a_silent_peer_costs_one_deadline() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&5u32.to_be_bytes()).unwrap();
        a.write_all(b"ab").unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        assert!(matches!(
            read_frame(&mut b, deadline, MAX_FRAME_LEN),
            Err(FrameError::Timeout)
        ));
        assert!(Instant::now() >= deadline);
        // A deadline already past fails at once.
        assert!(matches!(
            read_frame(&mut b, Instant::now(), MAX_FRAME_LEN),
            Err(FrameError::Timeout)
        ));
    }

    #[test]
    fn a_peer_that_never_reads_cannot_block_a_writer_forever() {
        let (mut a, _b) = UnixStream::pair().unwrap();
        let big = vec![0u8; MAX_FRAME_LEN];
        let deadline = Instant::now() + Duration::from_millis(200);
        let mut result = Ok(());
        for _ in 0..100 {
            result = write_frame(&mut a, &big, deadline);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(FrameError::Timeout)));
    }
}
