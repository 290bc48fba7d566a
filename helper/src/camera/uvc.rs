//! UVC extension units: the controls vendors hang their IR emitter switch on.
//!
//! [`Xu`] is one query (`UVCIOC_CTRL_QUERY` on the capture node, [`UvcFd`]); the helpers
//! above it and the descriptor reader are ordinary Rust, tested with a scripted [`Xu`].
//! The unit layout comes from the camera's own USB descriptors (sysfs `descriptors`), so
//! alohad only ever touches a unit and selector the camera advertises.

use std::io;
use std::os::fd::RawFd;

/// `UVC_SET_CUR` and the `UVC_GET_*` requests (`<linux/usb/video.h>`).
pub const SET_CUR: u8 = 0x01;
pub const GET_CUR: u8 = 0x81;
pub const GET_LEN: u8 = 0x85;
pub const GET_INFO: u8 = 0x86;
/// GET_INFO bit D1: the control can be set.
const INFO_SET_SUPPORTED: u8 = 0x02;

/// The Microsoft camera extension unit (MSXU) GUID `{0F3F95DC-2632-4C4E-92C9-A04782F43BC8}`
/// as its bytes appear in a descriptor.
pub const MSXU_GUID: [u8; 16] = [
    0xdc, 0x95, 0x3f, 0x0f, 0x32, 0x26, 0x4e, 0x4c, 0x92, 0xc9, 0xa0, 0x47, 0x82, 0xf4, 0x3b, 0xc8,
];
/// MSXU selector 6: FACE_AUTHENTICATION (9 bytes: entries, IR endpoint, 7 bytes of flags).
pub const MSXU_FACE_AUTH: u8 = 0x06;

/// One extension-unit query.
pub trait Xu {
    fn query(&mut self, unit: u8, selector: u8, query: u8, data: &mut [u8]) -> io::Result<()>;
}

/// The control's length in bytes (GET_LEN).
pub fn get_len(xu: &mut dyn Xu, unit: u8, selector: u8) -> io::Result<usize> {
    let mut len = [0u8; 2];
    xu.query(unit, selector, GET_LEN, &mut len)?;
    Ok(usize::from(u16::from_le_bytes(len)))
}

/// Whether the control can be set (GET_INFO D1).
pub fn settable(xu: &mut dyn Xu, unit: u8, selector: u8) -> io::Result<bool> {
    let mut info = [0u8; 1];
    xu.query(unit, selector, GET_INFO, &mut info)?;
    Ok(info[0] & INFO_SET_SUPPORTED != 0)
}

/// The current value; `len` must be the control's length.
pub fn get_cur(xu: &mut dyn Xu, unit: u8, selector: u8, len: usize) -> io::Result<Vec<u8>> {
    let mut cur = vec![0u8; len];
    xu.query(unit, selector, GET_CUR, &mut cur)?;
    Ok(cur)
}

pub fn set_cur(xu: &mut dyn Xu, unit: u8, selector: u8, value: &[u8]) -> io::Result<()> {
    let mut data = value.to_vec();
    xu.query(unit, selector, SET_CUR, &mut data)
}

/// `struct uvc_xu_control_query` (`<linux/uvcvideo.h>`).
#[repr(C)]
struct XuQuery {
    unit: u8,
    selector: u8,
    query: u8,
    size: u16,
    data: *mut u8,
}

/// `UVCIOC_CTRL_QUERY = _IOWR('u', 0x21, struct uvc_xu_control_query)`.
const UVCIOC_CTRL_QUERY: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<XuQuery>() as libc::c_ulong) << 16) | (0x75 << 8) | 0x21;

// The layout and number the kernel headers give on 64-bit targets.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<XuQuery>() == 16 && UVCIOC_CTRL_QUERY == 0xc010_7521);

/// Queries through the capture node's fd (borrowed: the caller keeps it open).
#[derive(Debug, Clone, Copy)]
pub struct UvcFd(pub RawFd);

impl Xu for UvcFd {
    fn query(&mut self, unit: u8, selector: u8, query: u8, data: &mut [u8]) -> io::Result<()> {
        let size = u16::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "control too long"))?;
        let mut q = XuQuery {
            unit,
            selector,
            query,
            size,
            data: data.as_mut_ptr(),
        };
        // SAFETY: `q` is a valid uvc_xu_control_query whose `data` points to `size` writable
        // bytes (`data`, borrowed mutably for the whole call); the driver reads or writes at
        // most `size` bytes there and nothing else. A wrong fd only yields an error.
        let rc = unsafe { libc::ioctl(self.0, UVCIOC_CTRL_QUERY as _, &mut q as *mut XuQuery) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// An extension unit as the camera's descriptors describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionUnit {
    pub unit: u8,
    pub guid: [u8; 16],
    /// The selectors it advertises (bmControls bit k → selector k + 1).
    pub selectors: Vec<u8>,
}

impl ExtensionUnit {
    pub fn is_msxu(&self) -> bool {
        self.guid == MSXU_GUID
    }

    pub fn advertises(&self, selector: u8) -> bool {
        self.selectors.contains(&selector)
    }
}

/// The extension units of the VideoControl interface numbered `interface` in a USB device's
/// raw descriptors (sysfs `descriptors`: the device descriptor, then each configuration's).
/// Composite cameras have two VideoControl interfaces with overlapping unit ids, hence the
/// interface number.
pub fn extension_units(descriptors: &[u8], interface: u8) -> Vec<ExtensionUnit> {
    const INTERFACE: u8 = 0x04;
    const CS_INTERFACE: u8 = 0x24;
    const VC_EXTENSION_UNIT: u8 = 0x06;
    const CLASS_VIDEO: u8 = 0x0e;
    const SUBCLASS_CONTROL: u8 = 0x01;
    let mut units = Vec::new();
    let mut inside = false;
    let mut rest = descriptors;
    while let [len, kind, ..] = *rest {
        let len = usize::from(len);
        if len < 2 || len > rest.len() {
            break;
        }
        let d = &rest[..len];
        rest = &rest[len..];
        if kind == INTERFACE && len >= 9 {
            inside = d[2] == interface && d[5] == CLASS_VIDEO && d[6] == SUBCLASS_CONTROL;
        } else if inside && kind == CS_INTERFACE && len >= 24 && d[2] == VC_EXTENSION_UNIT {
            // bUnitID, guidExtensionCode, bNumControls, bNrInPins = p, baSourceID[p],
            // bControlSize = n, bmControls[n].
            let pins = usize::from(d[21]);
            let Some(&size) = d.get(22 + pins) else {
                continue;
            };
            let Some(bitmap) = d.get(23 + pins..23 + pins + usize::from(size)) else {
                continue;
            };
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&d[4..20]);
            let selectors = (0..bitmap.len() * 8)
                .filter(|&k| bitmap[k / 8] & (1 << (k % 8)) != 0)
                .filter_map(|k| u8::try_from(k + 1).ok())
                .collect();
            units.push(ExtensionUnit {
                unit: d[3],
                guid,
                selectors,
            });
        }
    }
    units
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A scripted camera: controls with a length, a value and whether they may be set;
    /// every SET_CUR is recorded.
    #[derive(Debug, Default)]
    pub struct FakeXu {
        pub controls: HashMap<(u8, u8), (Vec<u8>, bool)>,
        pub writes: Vec<(u8, u8, Vec<u8>)>,
    }

    impl Xu for FakeXu {
        fn query(&mut self, unit: u8, sel: u8, query: u8, data: &mut [u8]) -> io::Result<()> {
            let Some((value, may_set)) = self.controls.get_mut(&(unit, sel)) else {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            };
            let wrong_size = || io::Error::from_raw_os_error(libc::ENOBUFS);
            match query {
                GET_LEN if data.len() == 2 => {
                    data.copy_from_slice(&(value.len() as u16).to_le_bytes())
                }
                GET_INFO if data.len() == 1 => data[0] = if *may_set { 0x03 } else { 0x01 },
                GET_CUR if data.len() == value.len() => data.copy_from_slice(value),
                SET_CUR if data.len() == value.len() && *may_set => {
                    value.copy_from_slice(data);
                    self.writes.push((unit, sel, data.to_vec()));
                }
                GET_LEN | GET_INFO | GET_CUR | SET_CUR => return Err(wrong_size()),
                _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            }
            Ok(())
        }
    }

    /// A VideoControl interface descriptor followed by extension units.
    pub fn descriptors(interface: u8, units: &[(u8, [u8; 16], &[u8])]) -> Vec<u8> {
        let mut d = vec![18, 0x01];
        d.extend([0u8; 16]);
        // Another function's VideoControl interface first, with a unit 14 of its own.
        d.extend([9, 0x04, interface + 2, 0, 0, 0x0e, 0x01, 0, 0]);
        d.extend(xu_descriptor(14, [0xaa; 16], &[0xff]));
        d.extend([9, 0x04, interface, 0, 0, 0x0e, 0x01, 0, 0]);
        for (unit, guid, bitmap) in units {
            d.extend(xu_descriptor(*unit, *guid, bitmap));
        }
        // A streaming interface after it: its class-specific descriptors are not units.
        d.extend([9, 0x04, interface + 1, 0, 0, 0x0e, 0x02, 0, 0]);
        d
    }

    fn xu_descriptor(unit: u8, guid: [u8; 16], bitmap: &[u8]) -> Vec<u8> {
        let mut x = vec![0, 0x24, 0x06, unit];
        x.extend(guid);
        x.extend([8, 1, 3, bitmap.len() as u8]);
        x.extend(bitmap);
        x.push(0);
        x[0] = x.len() as u8;
        x
    }

    #[test]
    fn the_query_number_is_the_kernels() {
        assert_eq!(UVCIOC_CTRL_QUERY, 0xc010_7521);
    }

    #[test]
    fn units_come_from_the_right_interface() {
        let d = descriptors(2, &[(4, [1; 16], &[0x00, 0x20]), (14, MSXU_GUID, &[0x20])]);
        let units = extension_units(&d, 2);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].unit, 4);
        assert_eq!(units[0].selectors, vec![14]);
        assert!(!units[0].is_msxu());
        assert!(units[1].is_msxu() && units[1].advertises(MSXU_FACE_AUTH));
        assert!(!units[1].advertises(9));
        // The other function's unit 14 is not this interface's.
        assert_eq!(extension_units(&d, 4)[0].selectors.len(), 8);
        assert!(extension_units(&d, 7).is_empty());
        // Truncated or garbage input ends the walk, it does not panic.
        for cut in 0..d.len() {
            let _ = extension_units(&d[..cut], 2);
        }
        assert!(extension_units(&[0, 0, 0], 2).is_empty());
    }

    #[test]
    fn helpers_check_length_and_settable() {
        let mut xu = FakeXu::default();
        xu.controls
            .insert((14, 6), (vec![1, 3, 1, 0, 0, 0, 0, 0, 0], true));
        xu.controls.insert((14, 9), (vec![1, 0, 0, 0], false));
        assert_eq!(get_len(&mut xu, 14, 6).unwrap(), 9);
        assert!(settable(&mut xu, 14, 6).unwrap());
        assert!(!settable(&mut xu, 14, 9).unwrap());
        assert_eq!(get_cur(&mut xu, 14, 6, 9).unwrap()[2], 1);
        assert!(set_cur(&mut xu, 14, 6, &[1, 3]).is_err());
        set_cur(&mut xu, 14, 6, &[1, 3, 2, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(xu.writes.len(), 1);
        assert!(get_len(&mut xu, 10, 6).is_err());
    }
}
