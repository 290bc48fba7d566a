//! The V4L2 pixel formats alohad captures, and their conversion to the engine's [`Frame`]:
//! infrared formats (8-bit grey, 10/12/16-bit grey, the stereo-interleaved and bit-packed
//! variants IR cameras use) and, for `face.allow_visible_camera`, the luma of the usual colour
//! formats. Layouts: the kernel's `Documentation/userspace-api/media/v4l/pixfmt-*.rst`. Rows
//! are read with the driver's `bytesperline`, never assumed to be `width × bytes per pixel`.

use aloha_face::Frame;

/// A capture format alohad can turn into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// `GREY` (Y8): one byte a pixel.
    Grey,
    /// `Y10 `, `Y12 `, `Y16 `: one little-endian u16 a pixel, the value in the low bits.
    Y10,
    Y12,
    Y16,
    /// `Y16 ` with the big-endian flag (bit 31).
    Y16Be,
    /// `Y8I `: a stereo pair, 16 bits a pixel, the left image in the low byte (RealSense).
    Y8i,
    /// `Y12I`: a stereo pair, 3 bytes a pixel, 12 bits each side.
    Y12i,
    /// `Y10B`: 10 bits a pixel packed MSB first, 4 pixels in 5 bytes (Kinect).
    Y10b,
    /// `Y10P`: MIPI RAW10, 4 pixels in 5 bytes, the 2 low bits of each in the fifth.
    Y10p,
    /// Colour: `YUYV`, `UYVY` (luma from every other byte) and `MJPG` (decoded).
    Yuyv,
    Uyvy,
    Mjpg,
}

/// In the order alohad prefers them: plain 8-bit grey first (what IR sign-in cameras stream
/// and the engine works in), deeper grey next, packed variants, colour last.
pub const PREFERENCE: [PixelFormat; 12] = [
    PixelFormat::Grey,
    PixelFormat::Y10,
    PixelFormat::Y12,
    PixelFormat::Y16,
    PixelFormat::Y16Be,
    PixelFormat::Y8i,
    PixelFormat::Y12i,
    PixelFormat::Y10b,
    PixelFormat::Y10p,
    PixelFormat::Yuyv,
    PixelFormat::Uyvy,
    PixelFormat::Mjpg,
];

const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// Formats that only IR (and depth) cameras offer but alohad cannot use: still a sign that a
/// node is infrared, for the survey.
const OTHER_INFRARED: [u32; 2] = [fourcc(b"Z16 "), fourcc(b"INZI")];

impl PixelFormat {
    pub fn fourcc(self) -> u32 {
        match self {
            PixelFormat::Grey => fourcc(b"GREY"),
            PixelFormat::Y10 => fourcc(b"Y10 "),
            PixelFormat::Y12 => fourcc(b"Y12 "),
            PixelFormat::Y16 => fourcc(b"Y16 "),
            PixelFormat::Y16Be => fourcc(b"Y16 ") | 1 << 31,
            PixelFormat::Y8i => fourcc(b"Y8I "),
            PixelFormat::Y12i => fourcc(b"Y12I"),
            PixelFormat::Y10b => fourcc(b"Y10B"),
            PixelFormat::Y10p => fourcc(b"Y10P"),
            PixelFormat::Yuyv => fourcc(b"YUYV"),
            PixelFormat::Uyvy => fourcc(b"UYVY"),
            PixelFormat::Mjpg => fourcc(b"MJPG"),
        }
    }

    pub fn from_fourcc(code: u32) -> Option<PixelFormat> {
        PREFERENCE.into_iter().find(|f| f.fourcc() == code)
    }

    /// An infrared-style (grey) format, as opposed to a colour one.
    pub fn infrared(self) -> bool {
        !matches!(
            self,
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Mjpg
        )
    }

    /// Bytes one row of `width` pixels needs at least (`None`: compressed).
    fn min_row_bytes(self, width: usize) -> Option<usize> {
        Some(match self {
            PixelFormat::Grey => width,
            PixelFormat::Y10
            | PixelFormat::Y12
            | PixelFormat::Y16
            | PixelFormat::Y16Be
            | PixelFormat::Y8i
            | PixelFormat::Yuyv
            | PixelFormat::Uyvy => width * 2,
            PixelFormat::Y12i => width * 3,
            PixelFormat::Y10b | PixelFormat::Y10p => (width * 10).div_ceil(8),
            PixelFormat::Mjpg => return None,
        })
    }
}

/// A fourcc as V4L2 tools print it ("GREY", "Y10", "Y16-BE"), trailing spaces trimmed.
pub fn fourcc_name(code: u32) -> String {
    let bytes = (code & !(1 << 31)).to_le_bytes();
    let name: String = bytes
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' })
        .collect();
    let name = name.trim_end().to_string();
    if code & (1 << 31) != 0 {
        format!("{name}-BE")
    } else {
        name
    }
}

/// Whether a node offering this fourcc is an infrared camera.
pub fn is_infrared(code: u32) -> bool {
    PixelFormat::from_fourcc(code).is_some_and(PixelFormat::infrared)
        || OTHER_INFRARED.contains(&code)
}

/// The frame in `data` (one buffer as the driver filled it: `bytesperline` bytes a row).
pub fn to_frame(
    format: PixelFormat,
    width: usize,
    height: usize,
    bytesperline: usize,
    data: &[u8],
) -> Result<Frame<'static>, String> {
    let Some(min) = format.min_row_bytes(width) else {
        return Frame::decode(data)
            .map_err(|e| format!("an MJPG frame does not decode: {e}"))
            .map(Frame::into_owned);
    };
    let stride = bytesperline.max(min);
    if height == 0 || data.len() < stride * (height - 1) + min {
        return Err(format!(
            "a {width}x{height} {} frame needs {} bytes, the buffer has {}",
            fourcc_name(format.fourcc()),
            stride * height.saturating_sub(1) + min,
            data.len()
        ));
    }
    let rows = (0..height).map(|y| &data[y * stride..y * stride + min]);
    let frame = match format {
        PixelFormat::Grey => {
            // The common case, copied row by row (fast in a debug build too).
            let mut out = Vec::with_capacity(width * height);
            rows.for_each(|r| out.extend_from_slice(r));
            Frame::gray8(width, height, out)
        }
        PixelFormat::Y8i => Frame::gray8(
            width,
            height,
            rows.flat_map(|r| r.iter().step_by(2).copied())
                .collect::<Vec<u8>>(),
        ),
        PixelFormat::Yuyv => gray8_every_other(width, height, rows, 0),
        PixelFormat::Uyvy => gray8_every_other(width, height, rows, 1),
        PixelFormat::Y10 | PixelFormat::Y12 | PixelFormat::Y16 | PixelFormat::Y16Be => {
            let bits = match format {
                PixelFormat::Y10 => 10,
                PixelFormat::Y12 => 12,
                _ => 16,
            };
            let sample = if format == PixelFormat::Y16Be {
                u16::from_be_bytes
            } else {
                u16::from_le_bytes
            };
            let data: Vec<u16> = rows
                .flat_map(|r| r.chunks_exact(2).map(|p| sample([p[0], p[1]])))
                .collect();
            Frame::gray16(width, height, bits, data)
        }
        PixelFormat::Y12i => {
            let data: Vec<u16> = rows
                .flat_map(|r| {
                    r.chunks_exact(3)
                        .map(|p| u16::from(p[0]) | u16::from(p[1] & 0x0f) << 8)
                })
                .collect();
            Frame::gray16(width, height, 12, data)
        }
        PixelFormat::Y10b | PixelFormat::Y10p => {
            let unpack = if format == PixelFormat::Y10b {
                unpack_y10b
            } else {
                unpack_y10p
            };
            let data: Vec<u16> = rows
                .flat_map(|r| r.chunks(5).flat_map(unpack).take(width))
                .collect();
            Frame::gray16(width, height, 10, data)
        }
        PixelFormat::Mjpg => return Err("MJPG has no row layout".into()),
    };
    frame.map_err(|e| e.to_string())
}

fn gray8_every_other<'a>(
    width: usize,
    height: usize,
    rows: impl Iterator<Item = &'a [u8]>,
    first: usize,
) -> aloha_face::Result<Frame<'static>> {
    Frame::gray8(
        width,
        height,
        rows.flat_map(|r| r.iter().skip(first).step_by(2).copied())
            .collect::<Vec<u8>>(),
    )
}

/// Four 10-bit pixels from 5 bytes, MSB first (a short last group is zero-padded).
fn unpack_y10b(group: &[u8]) -> [u16; 4] {
    let mut b = [0u16; 5];
    for (d, s) in b.iter_mut().zip(group) {
        *d = u16::from(*s);
    }
    [
        b[0] << 2 | b[1] >> 6,
        (b[1] & 0x3f) << 4 | b[2] >> 4,
        (b[2] & 0x0f) << 6 | b[3] >> 2,
        (b[3] & 0x03) << 8 | b[4],
    ]
}

/// Four 10-bit pixels from MIPI RAW10: the high 8 bits in bytes 0-3, the low 2 bits of pixel
/// k in bits 2k+1..2k of byte 4.
fn unpack_y10p(group: &[u8]) -> [u16; 4] {
    let mut b = [0u16; 5];
    for (d, s) in b.iter_mut().zip(group) {
        *d = u16::from(*s);
    }
    std::array::from_fn(|k| b[k] << 2 | (b[4] >> (2 * k)) & 0x03)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloha_face::frame::Pixels;

    fn gray16(frame: &Frame<'_>) -> (Vec<u16>, u8) {
        match frame.pixels() {
            Pixels::Gray16 { data, bits } => (data.to_vec(), *bits),
            Pixels::Gray8(_) => panic!("expected a 16-bit frame"),
        }
    }

    #[test]
    fn fourccs_round_trip_and_classify() {
        for f in PREFERENCE {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
        }
        assert_eq!(PixelFormat::Grey.fourcc(), 0x5945_5247);
        assert_eq!(PixelFormat::Y10.fourcc(), 0x2030_3159);
        assert_eq!(PixelFormat::Y8i.fourcc(), 0x2049_3859);
        assert_eq!(fourcc_name(PixelFormat::Y16.fourcc()), "Y16");
        assert_eq!(fourcc_name(PixelFormat::Y16Be.fourcc()), "Y16-BE");
        assert!(is_infrared(PixelFormat::Y10b.fourcc()));
        assert!(is_infrared(fourcc(b"Z16 ")));
        assert!(!is_infrared(PixelFormat::Yuyv.fourcc()));
        assert!(!is_infrared(fourcc(b"RGB3")));
    }

    #[test]
    fn grey_rows_skip_the_padding() {
        // 3x2, bytesperline 4: the fourth byte of each row is padding.
        let data = [1, 2, 3, 99, 4, 5, 6, 99];
        let f = to_frame(PixelFormat::Grey, 3, 2, 4, &data).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[1, 2, 3, 4, 5, 6]);
        // Short buffers are refused, not read past.
        assert!(to_frame(PixelFormat::Grey, 3, 2, 4, &data[..6]).is_err());
        // bytesperline 0 (some drivers) means packed rows.
        let f = to_frame(PixelFormat::Grey, 3, 2, 0, &data[..6]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[1, 2, 3, 99, 4, 5]);
    }

    #[test]
    fn deep_grey_keeps_its_significant_bits() {
        let data = [0xff, 0x03, 0x00, 0x02];
        let f = to_frame(PixelFormat::Y10, 2, 1, 4, &data).unwrap();
        assert_eq!(gray16(&f), (vec![1023, 512], 10));
        assert_eq!(f.to_gray8().as_ref(), &[255, 128]);
        let f = to_frame(PixelFormat::Y12, 2, 1, 4, &data).unwrap();
        assert_eq!(gray16(&f).1, 12);
        let f = to_frame(PixelFormat::Y16, 2, 1, 4, &[0x34, 0x12, 0xff, 0xff]).unwrap();
        assert_eq!(gray16(&f), (vec![0x1234, 0xffff], 16));
        let f = to_frame(PixelFormat::Y16Be, 1, 1, 2, &[0x12, 0x34]).unwrap();
        assert_eq!(gray16(&f).0, vec![0x1234]);
    }

    #[test]
    fn stereo_interleaved_takes_the_left_image() {
        // Y8I: low byte left, high byte right.
        let f = to_frame(PixelFormat::Y8i, 2, 1, 4, &[10, 200, 20, 210]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[10, 20]);
        // Y12I: left = b0 | (b1 & 0xf) << 8, right = b1 >> 4 | b2 << 4.
        let f = to_frame(PixelFormat::Y12i, 1, 1, 3, &[0x34, 0xa2, 0xff]).unwrap();
        assert_eq!(gray16(&f), (vec![0x234], 12));
    }

    #[test]
    fn packed_ten_bit_formats_unpack() {
        // Pixels 0x3ff, 0x001, 0x200, 0x155 packed MSB first (Y10B).
        let px = [0x3ffu16, 0x001, 0x200, 0x155];
        let mut bits: u64 = 0;
        for p in px {
            bits = bits << 10 | u64::from(p);
        }
        let y10b: Vec<u8> = (0..5).rev().map(|i| (bits >> (8 * i)) as u8).collect();
        let f = to_frame(PixelFormat::Y10b, 4, 1, 5, &y10b).unwrap();
        assert_eq!(gray16(&f), (px.to_vec(), 10));
        // The same pixels as MIPI RAW10 (Y10P).
        let mut y10p: Vec<u8> = px.iter().map(|p| (p >> 2) as u8).collect();
        y10p.push(
            px.iter()
                .enumerate()
                .fold(0u8, |acc, (k, p)| acc | ((p & 3) as u8) << (2 * k)),
        );
        let f = to_frame(PixelFormat::Y10p, 4, 1, 5, &y10p).unwrap();
        assert_eq!(gray16(&f).0, px.to_vec());
        // A width that is not a multiple of 4: the last group is partial.
        let f = to_frame(PixelFormat::Y10b, 2, 1, 3, &y10b[..3]).unwrap();
        assert_eq!(gray16(&f).0, px[..2].to_vec());
    }

    #[test]
    fn colour_gives_its_luma() {
        let f = to_frame(PixelFormat::Yuyv, 2, 1, 4, &[50, 128, 60, 128]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[50, 60]);
        let f = to_frame(PixelFormat::Uyvy, 2, 1, 4, &[128, 50, 128, 60]).unwrap();
        assert_eq!(f.to_gray8().as_ref(), &[50, 60]);
        assert!(to_frame(PixelFormat::Mjpg, 2, 1, 0, b"not a jpeg").is_err());
    }
}
