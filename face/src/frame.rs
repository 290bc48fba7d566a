//! Frames (8- or 16-bit grayscale, borrowed or owned) and where they come from.

use crate::error::{FaceError, Result};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Pixel data of a grayscale frame, row-major, no padding between rows.
#[derive(Debug, Clone)]
pub enum Pixels<'a> {
    /// 8 bits per pixel (V4L2 `GREY`/`Y8`).
    Gray8(Cow<'a, [u8]>),
    /// 16 bits per pixel (V4L2 `Y16`; often 10 or 12 significant bits).
    Gray16 {
        /// The samples.
        data: Cow<'a, [u16]>,
        /// Significant bits per sample (8–16), a property of the camera format: white is
        /// `2^bits − 1`.
        bits: u8,
    },
}

/// Why image bytes cannot become a [`Frame`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The decoder refused the bytes.
    #[error("{0}")]
    Image(#[from] image::ImageError),
    /// The image's size is not accepted as a frame.
    #[error("{0}")]
    Frame(String),
}

/// A grayscale camera frame.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    width: usize,
    height: usize,
    pixels: Pixels<'a>,
}

/// Largest accepted side, to bound memory on hostile input (16k × 16k).
pub const MAX_SIDE: usize = 16384;

fn check_size(width: usize, height: usize, len: usize) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(FaceError::InvalidFrame(format!(
            "{width}x{height} frame has no pixels"
        )));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(FaceError::InvalidFrame(format!(
            "{width}x{height} frame exceeds the {MAX_SIDE}-pixel limit per side"
        )));
    }
    if len != width * height {
        return Err(FaceError::InvalidFrame(format!(
            "{width}x{height} frame needs {} pixels but the buffer has {len}",
            width * height
        )));
    }
    Ok(())
}

impl<'a> Frame<'a> {
    /// An 8-bit frame over `data` (`width × height` bytes).
    pub fn gray8(width: usize, height: usize, data: impl Into<Cow<'a, [u8]>>) -> Result<Self> {
        let data = data.into();
        check_size(width, height, data.len())?;
        Ok(Self {
            width,
            height,
            pixels: Pixels::Gray8(data),
        })
    }

    /// A 16-bit frame over `data` (`width × height` samples) with `bits` significant bits
    /// per sample (8–16; e.g. 10 for a 10-bit sensor delivering V4L2 `Y10` or `Y16`). The
    /// bit depth comes from the format, never from the pixels, so a dark frame stays dark.
    pub fn gray16(
        width: usize,
        height: usize,
        bits: u8,
        data: impl Into<Cow<'a, [u16]>>,
    ) -> Result<Self> {
        let data = data.into();
        check_size(width, height, data.len())?;
        if !(8..=16).contains(&bits) {
            return Err(FaceError::InvalidFrame(format!(
                "a 16-bit frame must have 8 to 16 significant bits per sample, got {bits}"
            )));
        }
        Ok(Self {
            width,
            height,
            pixels: Pixels::Gray16 { data, bits },
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixel data.
    pub fn pixels(&self) -> &Pixels<'a> {
        &self.pixels
    }

    /// An owned copy that does not borrow the camera's buffer.
    pub fn into_owned(self) -> Frame<'static> {
        let pixels = match self.pixels {
            Pixels::Gray8(d) => Pixels::Gray8(Cow::Owned(d.into_owned())),
            Pixels::Gray16 { data, bits } => Pixels::Gray16 {
                data: Cow::Owned(data.into_owned()),
                bits,
            },
        };
        Frame {
            width: self.width,
            height: self.height,
            pixels,
        }
    }

    /// The frame as 8-bit gray. 16-bit frames are shifted down by their format's significant
    /// bits, so a 10-bit sensor's brightness keeps its meaning for the exposure gates; samples
    /// above the declared white saturate at 255.
    pub fn to_gray8(&self) -> Cow<'_, [u8]> {
        match &self.pixels {
            Pixels::Gray8(d) => Cow::Borrowed(d.as_ref()),
            Pixels::Gray16 { data, bits } => {
                let shift = u32::from(*bits).saturating_sub(8);
                Cow::Owned(data.iter().map(|&v| (v >> shift).min(255) as u8).collect())
            }
        }
    }

    /// Loads an image file (PNG, JPEG, PGM/PPM, BMP; 8- or 16-bit; colour is converted to
    /// luma).
    pub fn load(path: &Path) -> Result<Frame<'static>> {
        let bytes = std::fs::read(path).map_err(|source| FaceError::Io {
            path: path.into(),
            source,
        })?;
        Self::decode(&bytes).map_err(|e| FaceError::Image {
            path: path.into(),
            why: e.to_string(),
        })
    }

    /// Decodes an image file's bytes (see [`Frame::load`]). 16-bit files use the full 16
    /// bits (PNG and PGM scale their samples to 16 bits).
    pub fn decode(bytes: &[u8]) -> std::result::Result<Frame<'static>, DecodeError> {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DecodeError::Image(e.into()))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE as u32);
        limits.max_image_height = Some(MAX_SIDE as u32);
        limits.max_alloc = Some(1 << 30);
        reader.limits(limits);
        let img = reader.decode()?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let frame = match img {
            image::DynamicImage::ImageLuma8(g) => Frame::gray8(w, h, g.into_raw()),
            image::DynamicImage::ImageLuma16(g) => Frame::gray16(w, h, 16, g.into_raw()),
            image::DynamicImage::ImageLumaA16(_)
            | image::DynamicImage::ImageRgb16(_)
            | image::DynamicImage::ImageRgba16(_) => {
                Frame::gray16(w, h, 16, img.into_luma16().into_raw())
            }
            other => Frame::gray8(w, h, other.into_luma8().into_raw()),
        };
        frame.map_err(|e| DecodeError::Frame(e.to_string()))
    }
}

/// Why a [`FrameSource`] gave no frame. The kinds matter to alohad: no frame before the
/// deadline is not a failed sign-in, a camera that is gone or busy means "use the PIN".
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// No frame arrived before the deadline.
    #[error("no frame arrived in time")]
    Timeout,
    /// A recording that does not loop has no more frames.
    #[error("the recording has ended")]
    Ended,
    /// Another program holds the camera.
    #[error("the camera is busy: {0}")]
    Busy(String),
    /// The camera went away (unplugged) or cannot be used at all.
    #[error("the camera is unavailable: {0}")]
    Unavailable(String),
    /// A frame arrived but cannot be turned into an image (a recorded file that does not
    /// decode, a buffer of the wrong size).
    #[error("a frame could not be read: {0}")]
    Bad(String),
}

/// Something that yields frames: a V4L2 camera, or recorded frames played back as one.
pub trait FrameSource {
    /// The next frame, waiting at most until `deadline`.
    fn next_frame(&mut self, deadline: Instant)
    -> std::result::Result<Frame<'static>, SourceError>;
}

/// Image files played back as a camera, optionally looped.
#[derive(Debug, Clone)]
pub struct RecordedFrames {
    files: Vec<PathBuf>,
    next: usize,
    looped: bool,
}

/// File name extensions [`RecordedFrames::from_dir`] picks up.
pub const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "pgm", "ppm", "pnm", "bmp"];

/// True when the path has one of [`IMAGE_EXTENSIONS`].
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl RecordedFrames {
    /// Plays the given files in order.
    pub fn from_files(files: Vec<PathBuf>, looped: bool) -> Result<Self> {
        if files.is_empty() {
            return Err(FaceError::Source("no recorded frames given".into()));
        }
        Ok(Self {
            files,
            next: 0,
            looped,
        })
    }

    /// Plays every image file of a directory in name order.
    pub fn from_dir(dir: &Path, looped: bool) -> Result<Self> {
        let rd = std::fs::read_dir(dir).map_err(|source| FaceError::Io {
            path: dir.into(),
            source,
        })?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(FaceError::Source(format!(
                "{} holds no image files ({})",
                dir.display(),
                IMAGE_EXTENSIONS.join(", ")
            )));
        }
        Self::from_files(files, looped)
    }
}

impl FrameSource for RecordedFrames {
    fn next_frame(
        &mut self,
        deadline: Instant,
    ) -> std::result::Result<Frame<'static>, SourceError> {
        if Instant::now() > deadline {
            return Err(SourceError::Timeout);
        }
        if self.next >= self.files.len() {
            if !self.looped {
                return Err(SourceError::Ended);
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        Frame::load(path).map_err(|e| SourceError::Bad(e.to_string()))
    }
}

/// A borrowed 8-bit gray image with helpers the pipeline uses.
#[derive(Debug, Clone, Copy)]
pub struct Gray<'a> {
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    /// Row-major pixels, `w × h`.
    pub data: &'a [u8],
}

impl Gray<'_> {
    /// Pixel at integer coordinates, `None` outside.
    #[inline]
    pub fn get(&self, x: i64, y: i64) -> Option<u8> {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return None;
        }
        self.data.get(y as usize * self.w + x as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(Frame::gray8(0, 0, vec![]).is_err());
        assert!(Frame::gray8(4, 4, vec![0u8; 15]).is_err());
        assert!(Frame::gray16(2, 2, 10, vec![0u16; 5]).is_err());
        assert!(Frame::gray16(2, 2, 7, vec![0u16; 4]).is_err());
        assert!(Frame::gray16(2, 2, 17, vec![0u16; 4]).is_err());
        assert!(Frame::gray8(MAX_SIDE + 1, 1, vec![0u8; MAX_SIDE + 1]).is_err());
        let f = Frame::gray8(2, 2, &[1u8, 2, 3, 4][..]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[1, 2, 3, 4]);
    }

    #[test]
    fn sixteen_bit_keeps_brightness_meaning() {
        // A 10-bit sensor: 1023 is white, 512 mid-gray.
        let f = Frame::gray16(3, 1, 10, vec![0u16, 512, 1023]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[0, 128, 255]);
        // A dark 10-bit frame stays dark: the depth comes from the format, not the pixels
        // (its brightest sample 200 must not become white).
        let f = Frame::gray16(2, 1, 10, vec![7u16, 200]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[1, 50]);
        // 16 significant bits; samples above a 12-bit white saturate.
        let f = Frame::gray16(2, 1, 16, vec![0x1234u16, 0xffff]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[0x12, 0xff]);
        let f = Frame::gray16(1, 1, 12, vec![0xffffu16]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[255]);
    }

    #[test]
    fn truncated_and_garbage_images_are_errors() {
        assert!(Frame::decode(b"").is_err());
        assert!(Frame::decode(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").is_err());
        assert!(Frame::decode(&[0x42; 100]).is_err());
    }

    #[test]
    fn pgm_8_and_16_bit_decode() {
        let f = Frame::decode(b"P5 2 1 255 \x10\x20").unwrap();
        assert!(matches!(f.pixels(), Pixels::Gray8(_)));
        assert_eq!(f.to_gray8().as_ref(), &[0x10, 0x20]);
        let f = Frame::decode(b"P5 1 1 65535 \x12\x34").unwrap();
        match f.pixels() {
            Pixels::Gray16 { data, bits } => {
                assert_eq!(data.as_ref(), &[0x1234]);
                assert_eq!(*bits, 16);
            }
            Pixels::Gray8(_) => panic!("16-bit PGM decoded as 8-bit"),
        }
    }

    #[test]
    fn recorded_frames_end_loop_and_deadline() {
        let dir = std::env::temp_dir().join(format!("aloha-face-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.pgm"), b"P5 1 1 255 \x01").unwrap();
        std::fs::write(dir.join("b.pgm"), b"P5 1 1 255 \x02").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let later = Instant::now() + Duration::from_secs(60);
        let mut once = RecordedFrames::from_dir(&dir, false).unwrap();
        assert_eq!(once.next_frame(later).unwrap().to_gray8()[0], 1);
        assert_eq!(once.next_frame(later).unwrap().to_gray8()[0], 2);
        assert!(once.next_frame(later).is_err());
        let mut looped = RecordedFrames::from_dir(&dir, true).unwrap();
        for want in [1, 2, 1] {
            assert_eq!(looped.next_frame(later).unwrap().to_gray8()[0], want);
        }
        let past = Instant::now() - Duration::from_millis(1);
        assert!(looped.next_frame(past).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(RecordedFrames::from_files(vec![], false).is_err());
    }
}
