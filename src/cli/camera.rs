//! `aloha camera`: the capture nodes, the one face sign-in uses and why, the IR emitter (in
//! words, or JSON for scripts); and `aloha camera --probe` with its progress lines.

use aloha::protocol::{CameraReport, FaceProgress, Request, Response};
use clap::Args;

use super::{Ctx, Failure, client_failure, done, say, to_json, unexpected};

#[derive(Args)]
pub struct CameraArgs {
    /// Print JSON for scripts.
    #[arg(long, conflicts_with = "probe")]
    json: bool,
    /// Try the known IR-emitter controls on the camera and record the one that lights it
    /// (root only).
    #[arg(long)]
    probe: bool,
}

pub fn run(ctx: &Ctx, args: CameraArgs) -> Result<(), Failure> {
    if args.probe {
        let response = ctx
            .connect()?
            .call_with_progress(&Request::CameraProbe, |p| say(&progress_line(p)))
            .map_err(client_failure)?;
        return done(response);
    }
    let Response::Camera(report) = ctx.call(Request::Camera)? else {
        return Err(unexpected("camera"));
    };
    if args.json {
        say(&format!("{}\n", to_json(&report)?));
    } else {
        say(&render(&report));
    }
    Ok(())
}

pub fn render(r: &CameraReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<17} {v}\n"));
    line("Configured:", format!("face.camera = {:?}", r.configured));
    let state = if r.usable {
        ""
    } else {
        " — face sign-in cannot use a camera now"
    };
    match &r.chosen {
        Some(c) => line("Camera:", format!("{c}{state}")),
        None => line("Camera:", format!("none{state}")),
    }
    line("Why:", r.why.clone());
    if r.visible_light {
        line(
            "WARNING:",
            "colour camera allowed: weaker spoof resistance (a photo or a screen looks to it \
             as a face does)"
                .into(),
        );
    }
    if let Some(e) = &r.emitter {
        let fires = match e.fires {
            Some(true) => "fires",
            Some(false) => "not seen firing",
            None => "not checked",
        };
        line("IR emitter:", fires.into());
        if let Some(c) = &e.control {
            line("Emitter control:", c.clone());
        }
        line("Emitter detail:", e.detail.clone());
    }
    if !r.nodes.is_empty() {
        out.push_str("Capture nodes:\n");
    }
    for n in &r.nodes {
        let kind = if n.infrared { "infrared" } else { "colour" };
        let picked = r
            .chosen
            .as_deref()
            .is_some_and(|c| c == n.path || n.stable_path.as_deref() == Some(c));
        out.push_str(&format!(
            "  {}{} {} — {kind}: {}{}\n",
            n.path,
            if picked { " (chosen)" } else { "" },
            n.name,
            if n.formats.is_empty() {
                "no formats".to_string()
            } else {
                n.formats.join(", ")
            },
            n.usb_id
                .as_ref()
                .map(|id| format!(" [USB {id}]"))
                .unwrap_or_default(),
        ));
        if let Some(s) = &n.stable_path {
            out.push_str(&format!("      {s}\n"));
        }
    }
    out
}

/// One progress report of a probe as a line.
pub fn progress_line(p: &FaceProgress) -> String {
    format!(
        "[{}/{}] {} ({} frames so far)\n",
        p.done, p.wanted, p.message, p.frame
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloha::protocol::{CameraNode, EmitterReport, FrameVerdict};

    fn report() -> CameraReport {
        CameraReport {
            configured: "auto".into(),
            nodes: vec![
                CameraNode {
                    path: "/dev/video0".into(),
                    stable_path: Some("/dev/v4l/by-id/usb-rgb-video-index0".into()),
                    name: "Integrated Camera".into(),
                    usb_id: Some("04f2:b67c".into()),
                    formats: vec!["YUYV".into(), "MJPG".into()],
                    infrared: false,
                },
                CameraNode {
                    path: "/dev/video2".into(),
                    stable_path: Some("/dev/v4l/by-id/usb-ir-video-index0".into()),
                    name: "Integrated IR Camera".into(),
                    usb_id: Some("04f2:b67c".into()),
                    formats: vec!["GREY".into()],
                    infrared: true,
                },
            ],
            chosen: Some("/dev/v4l/by-id/usb-ir-video-index0".into()),
            why: "/dev/video2 offers infrared formats (GREY)".into(),
            usable: true,
            visible_light: false,
            emitter: Some(EmitterReport {
                control: Some("unit 14 selector 14 = 02 19 (built-in quirk 04f2:b67c)".into()),
                fires: Some(true),
                detail: "the emitter fires".into(),
            }),
        }
    }

    #[test]
    fn the_chosen_node_and_the_emitter_are_shown() {
        let shown = render(&report());
        assert!(
            shown.contains(
                "/dev/video2 (chosen) Integrated IR Camera — infrared: GREY [USB 04f2:b67c]"
            ),
            "{shown}"
        );
        assert!(
            shown.contains("/dev/video0 Integrated Camera — colour: YUYV, MJPG"),
            "{shown}"
        );
        assert!(shown.contains("IR emitter:       fires\n"), "{shown}");
        assert!(shown.contains("unit 14 selector 14"), "{shown}");
        assert!(!shown.contains("WARNING"), "{shown}");
    }

    #[test]
    fn a_colour_camera_is_a_plain_warning() {
        let mut r = report();
        r.visible_light = true;
        r.emitter = None;
        r.chosen = Some("/dev/video0".into());
        let shown = render(&r);
        assert!(
            shown.contains("WARNING:          colour camera allowed: weaker spoof resistance"),
            "{shown}"
        );
        assert!(shown.contains("/dev/video0 (chosen)"), "{shown}");
        r.usable = false;
        r.chosen = None;
        assert!(
            render(&r).contains("Camera:           none — face sign-in cannot use a camera now")
        );
    }

    #[test]
    fn probe_progress_is_one_line() {
        let p = FaceProgress {
            frame: 32,
            verdict: FrameVerdict::Good,
            distance: None,
            done: 1,
            wanted: 2,
            message: "unit 14 selector 6: fires".into(),
        };
        assert_eq!(
            progress_line(&p),
            "[1/2] unit 14 selector 6: fires (32 frames so far)\n"
        );
    }
}
