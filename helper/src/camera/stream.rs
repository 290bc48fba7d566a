//! The capture stream: memory-mapped V4L2 buffers, our own ioctls.
//!
//! The `v4l` crate's `MmapStream` is not used: its Drop (and its buffer arena's) panics on any
//! STREAMOFF/REQBUFS error but ENODEV, `set_timeout` unwraps, and after any error from
//! `next()` the stream double-queues a buffer (notes in docs/camera.md). This stream uses the
//! crate's ioctl wrapper and its generated kernel structs, so the layouts are the kernel's, and
//! adds what alohad needs: a poll deadline on every frame, errno kept for Busy/Unavailable,
//! and a Drop that never panics.

use std::io;
use std::os::raw::c_void;
use std::sync::Arc;
use std::time::Duration;

use v4l::device::Handle;
use v4l::v4l_sys::{v4l2_buffer, v4l2_requestbuffers};
use v4l::v4l2::{self, vidioc};

const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const MEMORY_MMAP: u32 = 1;
/// `V4L2_BUF_FLAG_ERROR`: the driver filled the buffer badly (a USB hiccup); skip it.
const BUF_FLAG_ERROR: u32 = 0x40;

/// One driver buffer mapped into alohad.
#[derive(Debug)]
struct Mapping {
    ptr: *mut c_void,
    len: usize,
}

/// A streaming capture; STREAMOFF, munmap and freeing the buffers on drop.
pub struct MmapStream {
    /// Keeps the device open for as long as buffers are mapped from it.
    handle: Arc<Handle>,
    buffers: Vec<Mapping>,
    streaming: bool,
}

impl std::fmt::Debug for MmapStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapStream")
            .field("fd", &self.handle.fd())
            .field("buffers", &self.buffers.len())
            .field("streaming", &self.streaming)
            .finish()
    }
}

// SAFETY: the mappings are plain memory owned by this stream alone (no aliasing references
// outlive a `next` call), so moving the stream to another thread is sound.
unsafe impl Send for MmapStream {}

fn ioctl<T>(handle: &Handle, request: vidioc::_IOC_TYPE, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed kernel struct of the type `request`
    // encodes (callers pass the matching v4l_sys struct); the kernel reads and writes only
    // within it for the duration of the call.
    unsafe { v4l2::ioctl(handle.fd(), request, (arg as *mut T).cast::<c_void>()) }
}

fn zeroed_buffer(index: u32) -> v4l2_buffer {
    // SAFETY: v4l2_buffer is a plain C struct of integers, a timeval and a union of an
    // integer and pointers; all-zero is a valid value of each (null pointers are never read).
    let mut buf: v4l2_buffer = unsafe { std::mem::zeroed() };
    buf.index = index;
    buf.type_ = BUF_TYPE_VIDEO_CAPTURE;
    buf.memory = MEMORY_MMAP;
    buf
}

impl MmapStream {
    /// Ask for `count` buffers, map them, queue them all and start streaming. EBUSY here
    /// means another program owns the device's buffers.
    pub fn start(handle: Arc<Handle>, count: u32) -> io::Result<MmapStream> {
        // SAFETY: plain integers; all-zero is valid.
        let mut req: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
        req.count = count;
        req.type_ = BUF_TYPE_VIDEO_CAPTURE;
        req.memory = MEMORY_MMAP;
        ioctl(&handle, vidioc::VIDIOC_REQBUFS, &mut req)?;
        if req.count == 0 {
            return Err(io::Error::other("the driver gave no capture buffers"));
        }
        // From here on, Drop frees whatever was set up.
        let mut stream = MmapStream {
            handle,
            buffers: Vec::new(),
            streaming: false,
        };
        for index in 0..req.count {
            let mut buf = zeroed_buffer(index);
            ioctl(&stream.handle, vidioc::VIDIOC_QUERYBUF, &mut buf)?;
            let len = buf.length as usize;
            // SAFETY: reading the `offset` member of the union, which QUERYBUF filled for
            // V4L2_MEMORY_MMAP buffers.
            let offset = unsafe { buf.m.offset };
            // SAFETY: a fresh shared mapping of the driver's buffer at the offset it gave;
            // no existing memory is affected; the result is checked for MAP_FAILED.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    stream.handle.fd(),
                    libc::off_t::from(offset),
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            stream.buffers.push(Mapping { ptr, len });
        }
        for index in 0..req.count {
            stream.queue(index)?;
        }
        let mut typ = BUF_TYPE_VIDEO_CAPTURE;
        ioctl(&stream.handle, vidioc::VIDIOC_STREAMON, &mut typ)?;
        stream.streaming = true;
        Ok(stream)
    }

    fn queue(&self, index: u32) -> io::Result<()> {
        let mut buf = zeroed_buffer(index);
        ioctl(&self.handle, vidioc::VIDIOC_QBUF, &mut buf)
    }

    /// Wait up to `timeout` for a filled buffer, hand its bytes to `read`, and queue the
    /// buffer again. `Ok(None)`: nothing in time, or a buffer the driver marked bad. After an
    /// error the stream may be unusable: drop it.
    pub fn next<R>(
        &mut self,
        timeout: Duration,
        read: impl FnOnce(&[u8]) -> R,
    ) -> io::Result<Option<R>> {
        let millis = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        match self.handle.poll(libc::POLLIN, millis) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            // A signal cut the wait short; the caller's deadline decides whether to wait on.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut buf = zeroed_buffer(0);
        match ioctl(&self.handle, vidioc::VIDIOC_DQBUF, &mut buf) {
            Ok(()) => {}
            // Woken without a buffer (poll's POLLIN raced another reader, or a spurious
            // wake-up): nothing yet.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
        let index = buf.index;
        let result = match self.buffers.get(index as usize) {
            Some(m) if buf.flags & BUF_FLAG_ERROR == 0 && buf.bytesused > 0 => {
                let len = (buf.bytesused as usize).min(m.len);
                // SAFETY: the mapping is `m.len` bytes long and stays mapped while `self`
                // lives; the buffer is dequeued, so the driver does not write it until it
                // is queued again below, after `read` has returned and the slice is gone.
                let bytes = unsafe { std::slice::from_raw_parts(m.ptr.cast::<u8>(), len) };
                Some(read(bytes))
            }
            _ => None,
        };
        self.queue(index)?;
        Ok(result)
    }
}

impl Drop for MmapStream {
    fn drop(&mut self) {
        // Errors are ignored: after an unplug every ioctl fails with ENODEV, and there is
        // nothing better to do than to let go of the memory and the fd.
        if self.streaming {
            let mut typ = BUF_TYPE_VIDEO_CAPTURE;
            let _ = ioctl(&self.handle, vidioc::VIDIOC_STREAMOFF, &mut typ);
        }
        for m in self.buffers.drain(..) {
            // SAFETY: `m` was returned by a successful mmap of `m.len` bytes and no slice
            // into it outlives `next`.
            unsafe { libc::munmap(m.ptr, m.len) };
        }
        // SAFETY: plain integers; all-zero is valid.
        let mut req: v4l2_requestbuffers = unsafe { std::mem::zeroed() };
        req.type_ = BUF_TYPE_VIDEO_CAPTURE;
        req.memory = MEMORY_MMAP;
        let _ = ioctl(&self.handle, vidioc::VIDIOC_REQBUFS, &mut req);
    }
}
