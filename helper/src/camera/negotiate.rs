//! Format negotiation: the best format alohad converts, at a size near 640×480 and never
//! above 1280×720, set with S_FMT; what the driver then reports is what is used.

use std::path::Path;

use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::CameraError;
use super::classify;
use super::pixels::{PREFERENCE, PixelFormat, fourcc_name};

/// The frame size alohad asks for: enough for a face at arm's length, cheap to process.
pub const WANTED_SIZE: (u32, u32) = (640, 480);
/// The largest size alohad takes when the wanted one is not offered.
pub const MAX_SIZE: (u32, u32) = (1280, 720);

/// What was agreed with the driver.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub bytesperline: u32,
}

impl std::fmt::Display for Negotiated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = fourcc_name(self.format.fourcc());
        write!(f, "{name} {}x{}", self.width, self.height)
    }
}

/// Pick the best format alohad converts and a size near [`WANTED_SIZE`], and set them.
pub(super) fn negotiate(device: &Device, path: &Path) -> Result<Negotiated, CameraError> {
    let caps = device
        .query_caps()
        .map_err(|e| classify(&e, "query", path))?;
    if !caps
        .capabilities
        .contains(v4l::capability::Flags::VIDEO_CAPTURE | v4l::capability::Flags::STREAMING)
    {
        return Err(CameraError::Unavailable(format!(
            "{} ({}) is not a streaming capture device",
            path.display(),
            caps.card
        )));
    }
    let offered: Vec<u32> = device
        .enum_formats()
        .map_err(|e| classify(&e, "list the formats of", path))?
        .iter()
        .map(|d| u32::from(d.fourcc))
        .collect();
    let format = PREFERENCE
        .into_iter()
        .find(|f| offered.contains(&f.fourcc()))
        .ok_or_else(|| {
            let names: Vec<String> = offered.iter().map(|&c| fourcc_name(c)).collect();
            CameraError::Unavailable(format!(
                "{} offers no format alohad can use ({})",
                path.display(),
                names.join(", ")
            ))
        })?;
    let fourcc = FourCC::from(format.fourcc());
    let sizes = device.enum_framesizes(fourcc).unwrap_or_default();
    let (width, height) = choose_size(&sizes);
    let set = device.set_format(&Format::new(width, height, fourcc));
    let got = match set {
        Ok(got) => got,
        // Busy or gone: say so. Anything else: the driver may have a format of its own it
        // will not change (v4l2loopback keeps its producer's); take that if it is usable.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENODEV)) => {
            return Err(classify(&e, "set the format of", path));
        }
        Err(e) => device
            .format()
            .map_err(|_| classify(&e, "set the format of", path))?,
    };
    let got_format = PixelFormat::from_fourcc(u32::from(got.fourcc)).ok_or_else(|| {
        CameraError::Unavailable(format!(
            "{} delivers {}, which alohad cannot use",
            path.display(),
            fourcc_name(u32::from(got.fourcc))
        ))
    })?;
    let limit = aloha_face::frame::MAX_SIDE as u32;
    if got.width == 0 || got.height == 0 || got.width > limit || got.height > limit {
        return Err(CameraError::Unavailable(format!(
            "{} delivers {}x{} frames",
            path.display(),
            got.width,
            got.height
        )));
    }
    Ok(Negotiated {
        format: got_format,
        width: got.width,
        height: got.height,
        bytesperline: got.stride,
    })
}

/// [`WANTED_SIZE`] if offered; else the offered size nearest to it in area within
/// [`MAX_SIZE`]; else the smallest. No list (the driver does not enumerate): ask for
/// [`WANTED_SIZE`] and take what S_FMT gives.
fn choose_size(sizes: &[v4l::framesize::FrameSize]) -> (u32, u32) {
    use v4l::framesize::FrameSizeEnum;
    let (ww, wh) = WANTED_SIZE;
    let mut candidates = Vec::new();
    for s in sizes {
        match &s.size {
            FrameSizeEnum::Discrete(d) => candidates.push((d.width, d.height)),
            FrameSizeEnum::Stepwise(st) => {
                let fit = |want: u32, min: u32, max: u32, step: u32| {
                    let v = want.clamp(min, max);
                    min + (v - min) / step.max(1) * step.max(1)
                };
                candidates.push((
                    fit(ww, st.min_width, st.max_width, st.step_width),
                    fit(wh, st.min_height, st.max_height, st.step_height),
                ));
            }
        }
    }
    let area = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
    let wanted = area(WANTED_SIZE);
    let fits = |&(w, h): &(u32, u32)| w <= MAX_SIZE.0 && h <= MAX_SIZE.1;
    candidates
        .iter()
        .copied()
        .filter(fits)
        .min_by_key(|&s| (area(s).abs_diff(wanted), std::cmp::Reverse(area(s))))
        .or_else(|| candidates.iter().copied().min_by_key(|&s| area(s)))
        .unwrap_or(WANTED_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use v4l::framesize::{Discrete, FrameSize, FrameSizeEnum, Stepwise};

    fn discrete(sizes: &[(u32, u32)]) -> Vec<FrameSize> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &(width, height))| FrameSize {
                index: i as u32,
                fourcc: FourCC::new(b"GREY"),
                typ: 1,
                size: FrameSizeEnum::Discrete(Discrete { width, height }),
            })
            .collect()
    }

    #[test]
    fn sizes_prefer_640x480_and_stay_within_720p() {
        assert_eq!(choose_size(&[]), (640, 480));
        let all = [
            (320, 180),
            (640, 360),
            (640, 480),
            (1280, 720),
            (1920, 1080),
        ];
        assert_eq!(choose_size(&discrete(&all)), (640, 480));
        // No 640x480: the nearest area, never above 1280x720.
        assert_eq!(
            choose_size(&discrete(&[(340, 340), (1920, 1080), (1280, 720)])),
            (340, 340)
        );
        assert_eq!(
            choose_size(&discrete(&[(1920, 1080), (1280, 720)])),
            (1280, 720)
        );
        // Only larger than 720p: the smallest there is.
        assert_eq!(
            choose_size(&discrete(&[(3840, 2160), (1920, 1080)])),
            (1920, 1080)
        );
        let step = FrameSize {
            index: 0,
            fourcc: FourCC::new(b"GREY"),
            typ: 3,
            size: FrameSizeEnum::Stepwise(Stepwise {
                min_width: 48,
                max_width: 8192,
                step_width: 16,
                min_height: 32,
                max_height: 400,
                step_height: 2,
            }),
        };
        assert_eq!(choose_size(&[step]), (640, 400));
    }
}
