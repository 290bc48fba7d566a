//! Which camera: every V4L2 capture node with its formats, USB id and stable names, and the
//! rules for `face.camera` — `auto` takes an infrared node, a path takes that node, and a
//! colour-only node is refused unless `face.allow_visible_camera` allows it.

use std::collections::HashMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use aloha::protocol::CameraNode;
use v4l::Device;
use v4l::video::Capture;

use super::pixels::{PixelFormat, fourcc_name, is_infrared};
use super::v4l2::panic_text;
use super::{CameraError, classify};

/// A video node as alohad found it.
#[derive(Debug, Clone)]
pub struct Node {
    /// /dev/videoN.
    pub path: PathBuf,
    /// /dev/v4l/by-id/… (preferred) or by-path/…, when udev made one.
    pub stable_path: Option<PathBuf>,
    pub name: String,
    /// vendor:product, for USB cameras.
    pub usb_id: Option<String>,
    /// The USB device directory and the VideoControl interface number, for UVC controls.
    pub usb: Option<(PathBuf, u8)>,
    /// It captures video (not a metadata or output node).
    pub capture: bool,
    pub formats: Vec<u32>,
    /// Why it could not be looked at, if it could not.
    pub problem: Option<CameraError>,
}

impl Node {
    /// It offers an infrared-style format.
    pub fn infrared(&self) -> bool {
        self.formats.iter().any(|&f| is_infrared(f))
    }

    /// It offers a format alohad converts.
    fn usable(&self, infrared: bool) -> bool {
        self.formats
            .iter()
            .filter_map(|&f| PixelFormat::from_fourcc(f))
            .any(|f| f.infrared() == infrared)
    }

    /// The name to show and to record: the stable one when there is one.
    pub fn shown_path(&self) -> &Path {
        self.stable_path.as_deref().unwrap_or(&self.path)
    }

    fn format_names(&self) -> String {
        let names: Vec<String> = self.formats.iter().map(|&f| fourcc_name(f)).collect();
        names.join(", ")
    }

    /// Only the infrared formats: a node that also offers colour ones (vivid lists 80) is
    /// picked for these.
    fn infrared_format_names(&self) -> String {
        let names: Vec<String> = (self.formats.iter())
            .filter(|&&f| is_infrared(f))
            .map(|&f| fourcc_name(f))
            .collect();
        names.join(", ")
    }

    pub fn report(&self) -> CameraNode {
        CameraNode {
            path: self.path.display().to_string(),
            stable_path: self.stable_path.as_ref().map(|p| p.display().to_string()),
            name: self.name.clone(),
            usb_id: self.usb_id.clone(),
            formats: self.formats.iter().map(|&f| fourcc_name(f)).collect(),
            infrared: self.infrared(),
        }
    }
}

/// Every /dev/videoN, in number order, with what the driver and sysfs say about it.
pub fn scan() -> Vec<Node> {
    let stable = stable_names();
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("video")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(n, path)| {
            let sysfs = PathBuf::from(format!("/sys/class/video4linux/video{n}"));
            let mut node = Node {
                stable_path: stable.get(&path).cloned(),
                name: read_line(&sysfs.join("name")).unwrap_or_default(),
                usb: usb_interface(&sysfs),
                usb_id: usb_id(&sysfs),
                capture: false,
                formats: Vec::new(),
                problem: None,
                path,
            };
            query(&mut node);
            node
        })
        .collect()
}

/// Capabilities and formats from the driver; the `v4l` crate may panic on odd drivers, so
/// the calls are contained and a panic is a problem with this node only.
fn query(node: &mut Node) {
    let path = node.path.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let device = Device::with_path(&path).map_err(|e| classify(&e, "open", &path))?;
        let caps = device
            .query_caps()
            .map_err(|e| classify(&e, "query", &path))?;
        let capture = caps
            .capabilities
            .contains(v4l::capability::Flags::VIDEO_CAPTURE);
        let formats = if capture {
            let list = device
                .enum_formats()
                .map_err(|e| classify(&e, "list the formats of", &path))?;
            list.iter().map(|d| u32::from(d.fourcc)).collect()
        } else {
            Vec::new()
        };
        if node.name.is_empty() {
            node.name = caps.card;
        }
        Ok((capture, formats))
    }));
    match result {
        Ok(Ok((capture, formats))) => {
            node.capture = capture;
            node.formats = formats;
        }
        Ok(Err(e)) => node.problem = Some(e),
        Err(panic) => {
            node.problem = Some(CameraError::Unavailable(format!(
                "the V4L2 library failed on {} ({})",
                path.display(),
                panic_text(&*panic)
            )))
        }
    }
}

fn read_line(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// videoN/device is the USB interface; its parent is the USB device with the ids.
fn usb_id(sysfs: &Path) -> Option<String> {
    let (dev, _) = usb_interface(sysfs)?;
    let vendor = read_line(&dev.join("idVendor"))?;
    let product = read_line(&dev.join("idProduct"))?;
    Some(format!("{vendor}:{product}").to_ascii_lowercase())
}

fn usb_interface(sysfs: &Path) -> Option<(PathBuf, u8)> {
    let interface = fs::canonicalize(sysfs.join("device")).ok()?;
    let number = u8::from_str_radix(&read_line(&interface.join("bInterfaceNumber"))?, 16).ok()?;
    let dev = interface.parent()?.to_path_buf();
    dev.join("idVendor").exists().then_some((dev, number))
}

/// /dev/videoN → its by-id name, else its by-path name.
fn stable_names() -> HashMap<PathBuf, PathBuf> {
    let mut names = HashMap::new();
    // by-path first, so by-id overwrites it.
    for dir in ["/dev/v4l/by-path", "/dev/v4l/by-id"] {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Ok(target) = fs::canonicalize(entry.path()) {
                names.insert(target, entry.path());
            }
        }
    }
    names
}

/// The camera `face.camera` picks, and why.
#[derive(Debug, Clone)]
pub struct Pick {
    pub node: Node,
    pub why: String,
    /// A colour-only camera, allowed by `face.allow_visible_camera`.
    pub visible_light: bool,
}

/// What colour-only cameras cost, in the words `aloha camera`, `aloha status` and the log use.
pub const VISIBLE_WARNING: &str = "colour camera allowed by face.allow_visible_camera: weaker spoof resistance (a photo or \
     a screen looks to it as a face does)";

/// Apply the rules to `nodes` for `face.camera` = `wanted` (a path) or `auto` (`None`).
/// `resolve` turns a configured path into /dev/videoN (the real one follows symlinks; tests
/// pass their own).
pub fn choose(
    nodes: &[Node],
    wanted: Option<&Path>,
    allow_visible: bool,
    resolve: &dyn Fn(&Path) -> std::io::Result<PathBuf>,
) -> Result<Pick, CameraError> {
    let capture: Vec<&Node> = nodes.iter().filter(|n| n.capture).collect();
    let visible = |node: &Node, why: String| {
        if allow_visible {
            Ok(Pick {
                node: node.clone(),
                why: format!("{why}; {VISIBLE_WARNING}"),
                visible_light: true,
            })
        } else {
            Err(CameraError::VisibleOnly(format!(
                "{why}; face sign-in needs an infrared camera (face.allow_visible_camera = \
                 true allows a colour one, with weaker spoof resistance)"
            )))
        }
    };
    match wanted {
        Some(wanted) => {
            let real = resolve(wanted).map_err(|e| {
                CameraError::NotFound(format!(
                    "face.camera = {} cannot be used: {e} (unplugged?)",
                    wanted.display()
                ))
            })?;
            let Some(node) = nodes.iter().find(|n| n.path == real) else {
                return Err(CameraError::NotFound(format!(
                    "face.camera = {} is not a video device",
                    wanted.display()
                )));
            };
            if let Some(problem) = &node.problem {
                return Err(problem.clone());
            }
            let named = format!("face.camera names {} ({})", node.path.display(), node.name);
            if !node.capture {
                Err(CameraError::NotFound(format!(
                    "{named}, which does not capture video"
                )))
            } else if node.usable(true) {
                Ok(Pick {
                    node: node.clone(),
                    why: format!(
                        "{named}, an infrared camera ({})",
                        node.infrared_format_names()
                    ),
                    visible_light: false,
                })
            } else if node.usable(false) {
                visible(
                    node,
                    format!("{named}, a colour camera ({})", node.format_names()),
                )
            } else {
                Err(CameraError::Unavailable(format!(
                    "{named}, which offers no format alohad can use ({})",
                    node.format_names()
                )))
            }
        }
        None => {
            let mut infrared: Vec<&Node> =
                capture.iter().copied().filter(|n| n.usable(true)).collect();
            // A stable name first (a real camera, not a virtual device), then GREY, then the
            // lowest number (the scan's order; sort is stable).
            infrared.sort_by_key(|n| {
                let grey = n.formats.contains(&PixelFormat::Grey.fourcc());
                (n.stable_path.is_none(), !grey)
            });
            if let Some(first) = infrared.first() {
                let mut why = format!(
                    "{} ({}) offers infrared formats ({})",
                    first.path.display(),
                    first.name,
                    first.infrared_format_names()
                );
                if infrared.len() > 1 {
                    let others: Vec<String> = infrared[1..]
                        .iter()
                        .map(|n| n.path.display().to_string())
                        .collect();
                    why.push_str(&format!(
                        "; also infrared: {} (face.camera picks one by path)",
                        others.join(", ")
                    ));
                }
                return Ok(Pick {
                    node: (*first).clone(),
                    why,
                    visible_light: false,
                });
            }
            let problems: Vec<String> = nodes
                .iter()
                .filter_map(|n| n.problem.as_ref().map(ToString::to_string))
                .collect();
            let problems = if problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", problems.join("; "))
            };
            let colour = capture.iter().find(|n| n.usable(false));
            let busy = nodes.iter().find_map(|n| match &n.problem {
                Some(e @ CameraError::Busy(_)) => Some(e.clone()),
                _ => None,
            });
            if let Some(colour) = colour
                && (allow_visible || busy.is_none())
            {
                return visible(
                    colour,
                    format!(
                        "no infrared camera found{problems}; {} ({}) is a colour camera ({})",
                        colour.path.display(),
                        colour.name,
                        colour.format_names()
                    ),
                );
            }
            // A busy camera is worth saying plainly.
            if let Some(busy) = busy {
                return Err(busy);
            }
            Err(CameraError::NotFound(format!(
                "no camera found: no V4L2 capture device{problems}"
            )))
        }
    }
}

#[cfg(test)]
#[path = "select_tests.rs"]
mod tests;
