//! The selection rules over synthetic node lists.

use super::*;

fn fourccs(names: &[&str]) -> Vec<u32> {
    names
        .iter()
        .map(|n| {
            let mut code = [b' '; 4];
            code[..n.len()].copy_from_slice(n.as_bytes());
            u32::from_le_bytes(code)
        })
        .collect()
}

fn node(n: u32, name: &str, formats: &[&str]) -> Node {
    Node {
        path: PathBuf::from(format!("/dev/video{n}")),
        stable_path: None,
        name: name.into(),
        usb_id: None,
        usb: None,
        capture: true,
        formats: fourccs(formats),
        problem: None,
    }
}

fn stable(mut n: Node, by_id: &str) -> Node {
    n.stable_path = Some(PathBuf::from(format!("/dev/v4l/by-id/{by_id}")));
    n
}

fn meta(n: u32) -> Node {
    Node {
        capture: false,
        formats: Vec::new(),
        ..node(n, "Integrated Camera", &[])
    }
}

/// Symlinks as udev makes them; anything else does not exist.
fn resolve(p: &Path) -> std::io::Result<PathBuf> {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("/dev/v4l/by-id/ir-") {
        return Ok(PathBuf::from(format!("/dev/video{rest}")));
    }
    if s.starts_with("/dev/video") {
        return Ok(p.to_path_buf());
    }
    Err(std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// A laptop: colour camera, its metadata node, IR camera, its metadata node.
fn laptop() -> Vec<Node> {
    vec![
        stable(
            node(0, "Integrated Camera: Integrated C", &["MJPG", "YUYV"]),
            "rgb",
        ),
        meta(1),
        stable(
            node(2, "Integrated Camera: Integrated I", &["GREY"]),
            "ir-2",
        ),
        meta(3),
    ]
}

#[test]
fn auto_takes_the_infrared_node() {
    let pick = choose(&laptop(), None, false, &resolve).unwrap();
    assert_eq!(pick.node.path, Path::new("/dev/video2"));
    assert!(!pick.visible_light);
    assert!(pick.why.contains("/dev/video2") && pick.why.contains("GREY"));
    assert!(!pick.why.contains("also infrared"));
}

#[test]
fn auto_prefers_a_stable_name_then_grey_and_names_the_others() {
    let nodes = vec![
        node(0, "v4l2loopback", &["Y16"]),
        node(1, "vivid", &["YUYV", "GREY", "Y10"]),
        stable(node(4, "RealSense", &["Y8I", "Z16"]), "rs"),
    ];
    let pick = choose(&nodes, None, false, &resolve).unwrap();
    assert_eq!(pick.node.path, Path::new("/dev/video4"));
    assert!(pick.why.contains("also infrared: /dev/video1, /dev/video0"));
    let pick = choose(&nodes[..2], None, false, &resolve).unwrap();
    assert_eq!(pick.node.path, Path::new("/dev/video1"));
    // Named for its infrared formats only.
    assert!(
        pick.why.contains("(GREY, Y10)") && !pick.why.contains("YUYV"),
        "{}",
        pick.why
    );
    // Depth only (Z16) is infrared in the survey but not a camera alohad can use.
    let depth = vec![node(0, "depth", &["Z16"])];
    assert!(depth[0].infrared());
    assert!(matches!(
        choose(&depth, None, false, &resolve),
        Err(CameraError::NotFound(_))
    ));
}

#[test]
fn colour_only_is_refused_unless_allowed() {
    let nodes = vec![node(0, "webcam", &["YUYV", "MJPG"]), meta(1)];
    let err = choose(&nodes, None, false, &resolve).unwrap_err();
    assert!(matches!(err, CameraError::VisibleOnly(_)), "{err:?}");
    assert!(err.to_string().contains("allow_visible_camera"));
    let pick = choose(&nodes, None, true, &resolve).unwrap();
    assert!(pick.visible_light);
    assert!(pick.why.contains("weaker spoof resistance"));
    // Named explicitly: the same rule.
    let wanted = Some(Path::new("/dev/video0"));
    assert!(matches!(
        choose(&nodes, wanted, false, &resolve),
        Err(CameraError::VisibleOnly(_))
    ));
    assert!(
        choose(&nodes, wanted, true, &resolve)
            .unwrap()
            .visible_light
    );
}

#[test]
fn a_path_selects_that_node() {
    let nodes = laptop();
    let by_id = Path::new("/dev/v4l/by-id/ir-2");
    let pick = choose(&nodes, Some(by_id), false, &resolve).unwrap();
    assert_eq!(pick.node.path, Path::new("/dev/video2"));
    assert!(pick.why.contains("infrared"));
    assert_eq!(
        pick.node.shown_path(),
        Path::new("/dev/v4l/by-id/ir-2"),
        "the stable name is what is shown"
    );
    for (wanted, kind) in [
        ("/dev/video9", "not a video device"),
        ("/dev/v4l/by-id/gone", "cannot be used"),
        ("/dev/video1", "does not capture"),
    ] {
        let err = choose(&nodes, Some(Path::new(wanted)), false, &resolve).unwrap_err();
        assert!(matches!(err, CameraError::NotFound(_)), "{wanted}: {err:?}");
        assert!(err.to_string().contains(kind), "{wanted}: {err}");
    }
}

#[test]
fn problems_are_reported() {
    let mut busy = node(0, "v4l2loopback", &[]);
    busy.capture = false;
    busy.problem = Some(CameraError::Busy("/dev/video0 is busy".into()));
    let nodes = vec![busy.clone()];
    assert!(matches!(
        choose(&nodes, None, false, &resolve),
        Err(CameraError::Busy(_))
    ));
    assert!(matches!(
        choose(&nodes, Some(Path::new("/dev/video0")), false, &resolve),
        Err(CameraError::Busy(_))
    ));
    // A busy infrared camera beside a colour one: busy, unless colour is allowed.
    let nodes = vec![busy, node(1, "webcam", &["YUYV"])];
    assert!(matches!(
        choose(&nodes, None, false, &resolve),
        Err(CameraError::Busy(_))
    ));
    let pick = choose(&nodes, None, true, &resolve).unwrap();
    assert!(pick.visible_light && pick.why.contains("is busy"));
    let err = choose(&[], None, false, &resolve).unwrap_err();
    assert!(matches!(err, CameraError::NotFound(_)));
    assert!(err.to_string().contains("no camera found"));
    let odd = vec![node(0, "raw bayer", &["BA81"])];
    assert!(matches!(
        choose(&odd, Some(Path::new("/dev/video0")), false, &resolve),
        Err(CameraError::Unavailable(_))
    ));
}

#[test]
fn nodes_report_their_formats() {
    let r = laptop()[2].report();
    assert_eq!(r.formats, vec!["GREY"]);
    assert!(r.infrared);
    assert_eq!(r.stable_path.as_deref(), Some("/dev/v4l/by-id/ir-2"));
    assert!(!laptop()[0].report().infrared);
}
