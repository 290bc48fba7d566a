//! Plays a frame into a v4l2loopback device and captures it back, for the guest test
//! (`tests/tests/guest.rs`): built on the host, run in the guest.
//!
//! `v4l2-frame produce DEV WIDTH HEIGHT FOURCC SECONDS SENT` sets the device's OUTPUT format
//! (VIDIOC_S_FMT, `V4L2_FIELD_NONE`, `bytesperline = width * bytes per pixel`), saves the frame
//! it plays to SENT, then `write()`s it whole at 30 fps for SECONDS.
//!
//! `v4l2-frame capture DEV GOT TIMEOUT_S` waits until the device offers a CAPTURE format
//! (v4l2loopback with `exclusive_caps=1` does so once a producer has set one), `read()`s one
//! frame of `sizeimage` bytes, saves it to GOT and prints the format.
//!
//! Fourccs: GREY (8 bits), Y10 and Y16 (16 bits a pixel, little-endian).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const V4L2_BUF_TYPE_VIDEO_OUTPUT: u32 = 2;
const V4L2_FIELD_NONE: u32 = 1;

/// `struct v4l2_pix_format`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct PixFormat {
    width: u32,
    height: u32,
    pixelformat: u32,
    field: u32,
    bytesperline: u32,
    sizeimage: u32,
    colorspace: u32,
    priv_: u32,
    flags: u32,
    ycbcr_enc: u32,
    quantization: u32,
    xfer_func: u32,
}

/// `struct v4l2_format` on 64-bit: the type, 4 bytes of padding (the union holds pointers),
/// then a 200-byte union whose `pix` member is all this program uses.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Format {
    type_: u32,
    _pad: u32,
    pix: PixFormat,
    _rest: [u8; 200 - std::mem::size_of::<PixFormat>()],
}
const _: () = assert!(std::mem::size_of::<Format>() == 208);

impl Format {
    fn new(type_: u32) -> Format {
        Format {
            type_,
            _pad: 0,
            pix: PixFormat::default(),
            _rest: [0; 200 - std::mem::size_of::<PixFormat>()],
        }
    }
}

/// `_IOWR('V', nr, struct v4l2_format)`.
const fn iowr_format(nr: u64) -> u64 {
    (3 << 30) | ((std::mem::size_of::<Format>() as u64) << 16) | ((b'V' as u64) << 8) | nr
}
const VIDIOC_G_FMT: u64 = iowr_format(4);
const VIDIOC_S_FMT: u64 = iowr_format(5);

fn ioctl_format(dev: &File, request: u64, fmt: &mut Format) -> std::io::Result<()> {
    // SAFETY: `fmt` is a valid, writable `struct v4l2_format` of the size encoded in
    // `request`, alive for the whole call; the kernel reads and writes only within it.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), request as libc::Ioctl, fmt as *mut Format) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn fourcc(name: &str) -> Result<(u32, u32), String> {
    let bytes_per_pixel = match name.trim_end() {
        "GREY" => 1,
        "Y10" | "Y16" => 2,
        other => return Err(format!("unsupported fourcc {other:?} (GREY, Y10, Y16)")),
    };
    let mut code = [b' '; 4];
    code[..name.len().min(4)].copy_from_slice(&name.as_bytes()[..name.len().min(4)]);
    Ok((u32::from_le_bytes(code), bytes_per_pixel))
}

fn fourcc_name(code: u32) -> String {
    String::from_utf8_lossy(&code.to_le_bytes()).into_owned()
}

fn open(dev: &str) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| format!("open {dev}: {e}"))
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what}: not a number: {s:?}"))
}

fn produce(args: &[String]) -> Result<(), String> {
    let [dev, width, height, code, seconds, sent] = args else {
        return Err("usage: produce DEV WIDTH HEIGHT FOURCC SECONDS SENT".into());
    };
    let (width, height): (u32, u32) = (num(width, "width")?, num(height, "height")?);
    let (pixelformat, bpp) = fourcc(code)?;
    let seconds: f64 = num(seconds, "seconds")?;
    let device = open(dev)?;
    let mut fmt = Format::new(V4L2_BUF_TYPE_VIDEO_OUTPUT);
    fmt.pix.width = width;
    fmt.pix.height = height;
    fmt.pix.pixelformat = pixelformat;
    fmt.pix.field = V4L2_FIELD_NONE;
    fmt.pix.bytesperline = width * bpp;
    fmt.pix.sizeimage = width * bpp * height;
    ioctl_format(&device, VIDIOC_S_FMT, &mut fmt).map_err(|e| format!("VIDIOC_S_FMT: {e}"))?;
    // A pattern in which every byte depends on its position: a shifted, cut or padded frame
    // does not compare equal.
    let frame: Vec<u8> = (0..(width * bpp * height) as usize)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9).wrapping_mul(7)) as u8)
        .collect();
    std::fs::write(sent, &frame).map_err(|e| format!("write {sent}: {e}"))?;
    let mut device = device;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        device
            .write_all(&frame)
            .map_err(|e| format!("write a frame to {dev}: {e}"))?;
        sleep(Duration::from_millis(33));
    }
    Ok(())
}

fn capture(args: &[String]) -> Result<(), String> {
    let [dev, got, timeout] = args else {
        return Err("usage: capture DEV GOT TIMEOUT_S".into());
    };
    let deadline = Instant::now() + Duration::from_secs(num(timeout, "timeout")?);
    let mut device = open(dev)?;
    let mut fmt = Format::new(V4L2_BUF_TYPE_VIDEO_CAPTURE);
    while let Err(e) = ioctl_format(&device, VIDIOC_G_FMT, &mut fmt) {
        if Instant::now() > deadline {
            return Err(format!(
                "{dev} offered no capture format: VIDIOC_G_FMT: {e}"
            ));
        }
        sleep(Duration::from_millis(50));
        // With exclusive_caps=1 the capture side appears for openers after the producer's.
        device = open(dev)?;
        fmt = Format::new(V4L2_BUF_TYPE_VIDEO_CAPTURE);
    }
    let size = fmt.pix.sizeimage as usize;
    let mut frame = vec![0u8; size];
    let n = device
        .read(&mut frame)
        .map_err(|e| format!("read a frame from {dev}: {e}"))?;
    frame.truncate(n);
    std::fs::write(got, &frame).map_err(|e| format!("write {got}: {e}"))?;
    println!(
        "{}x{} {} bytesperline={} sizeimage={} read={n}",
        fmt.pix.width,
        fmt.pix.height,
        fourcc_name(fmt.pix.pixelformat),
        fmt.pix.bytesperline,
        fmt.pix.sizeimage
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("produce") => produce(&args[1..]),
        Some("capture") => capture(&args[1..]),
        _ => Err("usage: v4l2-frame produce|capture ...".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("v4l2-frame: {e}");
            ExitCode::FAILURE
        }
    }
}
