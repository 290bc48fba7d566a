//! `aloha camera --probe`: find the control that lights an unknown camera's emitter.
//!
//! Only controls the camera itself advertises are touched, and only two kinds: a built-in
//! quirk for its USB id, and the Microsoft face-authentication control (an MSXU unit that
//! advertises selector 6, settable, 9 bytes), where only the flags are changed to "alternate
//! frame illumination" and the camera's own entry count and endpoint are kept. No sweeps of
//! vendor units: one bricked a camera (see [`super::emitter::NEVER_PROBE`]). Every value
//! that does not make the emitter fire is put back.

use std::io;

use aloha::protocol::{FaceProgress, FrameVerdict};
use aloha_face::SourceError;

use super::CameraError;
use super::emitter::{self, Quirk};
use super::uvc::{self, ExtensionUnit, MSXU_FACE_AUTH, Xu};

/// One control to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub unit: u8,
    pub selector: u8,
    pub value: Vec<u8>,
    /// Why it is tried, in words.
    pub what: String,
}

/// What a probe ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The emitter fires with no control set.
    AlreadyFires,
    /// This control made it fire (and is now set).
    Found(Candidate),
    /// Nothing tried made it fire; everything was put back.
    NothingWorked { tried: usize },
}

/// The controls worth trying on a camera with `units`: its quirk first (when the camera
/// advertises that unit and selector), then each MSXU face-authentication control whose
/// current value can be read.
pub fn candidates(
    xu: &mut dyn Xu,
    quirk: Option<&Quirk>,
    units: &[ExtensionUnit],
) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(q) = quirk
        && units
            .iter()
            .any(|u| u.unit == q.unit && u.advertises(q.selector))
    {
        out.push(Candidate {
            unit: q.unit,
            selector: q.selector,
            value: q.value.to_vec(),
            what: format!("built-in quirk {} ({})", q.usb_id, q.camera),
        });
    }
    for u in units
        .iter()
        .filter(|u| u.is_msxu() && u.advertises(MSXU_FACE_AUTH))
    {
        let (unit, sel) = (u.unit, MSXU_FACE_AUTH);
        if out.iter().any(|c| c.unit == unit && c.selector == sel) {
            continue;
        }
        let ok = uvc::settable(xu, unit, sel).unwrap_or(false)
            && uvc::get_len(xu, unit, sel).is_ok_and(|len| len == 9);
        let Some(cur) = ok.then(|| uvc::get_cur(xu, unit, sel, 9).ok()).flatten() else {
            continue;
        };
        // bNumEntries, bEndpointAddress kept; flags = ALTERNATIVE_FRAME_ILLUMINATION only.
        let mut value = vec![cur[0], cur[1], 0x02];
        value.resize(9, 0);
        out.push(Candidate {
            unit,
            selector: sel,
            value,
            what: "Microsoft face-authentication control".into(),
        });
    }
    out
}

/// Try `candidates` in order: measure, set, measure again, keep the first that makes the
/// emitter fire, put the others back. `measure` returns the brightness of the next
/// [`emitter::FIRES_FRAMES`] frames; `progress` answers false when nobody is listening any more.
pub fn run(
    xu: &mut dyn Xu,
    candidates: &[Candidate],
    measure: &mut dyn FnMut() -> Result<Vec<f32>, SourceError>,
    progress: &mut dyn FnMut(FaceProgress) -> bool,
) -> Result<Outcome, CameraError> {
    let wanted = u32::try_from(candidates.len()).unwrap_or(u32::MAX);
    let mut frames = 0u32;
    let mut report = |frames: u32, done: usize, fires: bool, message: String| {
        progress(FaceProgress {
            frame: frames,
            verdict: if fires {
                FrameVerdict::Good
            } else {
                FrameVerdict::TooDark
            },
            distance: None,
            done: u32::try_from(done).unwrap_or(u32::MAX),
            wanted,
            message,
        })
    };
    let mut look = |frames: &mut u32| -> Result<bool, CameraError> {
        let means = measure().map_err(CameraError::from)?;
        *frames += u32::try_from(means.len()).unwrap_or(u32::MAX);
        Ok(emitter::fires(&means) == Some(true))
    };
    let before = look(&mut frames)?;
    let gone = || CameraError::Unavailable("the client went away; the probe stopped".into());
    if !report(
        frames,
        0,
        before,
        format!("no control set: {}", emitter::describe_fires(Some(before))),
    ) {
        return Err(gone());
    }
    if before {
        return Ok(Outcome::AlreadyFires);
    }
    for (i, c) in candidates.iter().enumerate() {
        let original = uvc::get_cur(xu, c.unit, c.selector, c.value.len());
        let original = match original {
            Ok(v) => v,
            Err(e) => {
                report(frames, i + 1, false, skipped(c, &e));
                continue;
            }
        };
        if let Err(e) = uvc::set_cur(xu, c.unit, c.selector, &c.value) {
            report(frames, i + 1, false, skipped(c, &e));
            continue;
        }
        let fires = look(&mut frames);
        let fires = match fires {
            Ok(f) => f,
            Err(e) => {
                let _ = uvc::set_cur(xu, c.unit, c.selector, &original);
                return Err(e);
            }
        };
        let verdict = if fires { "fires" } else { "no alternation" };
        let listening = report(
            frames,
            i + 1,
            fires,
            format!(
                "unit {} selector {} ({}): {verdict}",
                c.unit, c.selector, c.what
            ),
        );
        if fires {
            return Ok(Outcome::Found(c.clone()));
        }
        let _ = uvc::set_cur(xu, c.unit, c.selector, &original);
        if !listening {
            return Err(gone());
        }
    }
    Ok(Outcome::NothingWorked {
        tried: candidates.len(),
    })
}

fn skipped(c: &Candidate, e: &io::Error) -> String {
    format!(
        "unit {} selector {} ({}): not tried ({e})",
        c.unit, c.selector, c.what
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::emitter::{FIRES_FRAMES, QUIRKS};
    use crate::camera::uvc::MSXU_GUID;
    use crate::camera::uvc::tests::FakeXu;

    fn msxu(unit: u8) -> ExtensionUnit {
        ExtensionUnit {
            unit,
            guid: MSXU_GUID,
            selectors: vec![2, 6, 9],
        }
    }

    fn vendor(unit: u8, selectors: Vec<u8>) -> ExtensionUnit {
        ExtensionUnit {
            unit,
            guid: [7; 16],
            selectors,
        }
    }

    const OFF: [u8; 9] = [1, 3, 1, 0, 0, 0, 0, 0, 0];

    #[test]
    fn candidates_are_advertised_settable_controls_only() {
        let mut xu = FakeXu::default();
        xu.controls.insert((14, 6), (OFF.to_vec(), true));
        xu.controls.insert((8, 6), (OFF.to_vec(), false));
        xu.controls.insert((14, 14), (vec![0, 0], true));
        let chicony = &QUIRKS[0];
        let units = [msxu(8), msxu(14), vendor(4, vec![14])];
        let c = candidates(&mut xu, Some(chicony), &units);
        // The quirk's unit 14 selector 14 is not advertised here; unit 8 is not settable.
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].unit, c[0].selector), (14, 6));
        assert_eq!(c[0].value, vec![1, 3, 2, 0, 0, 0, 0, 0, 0]);
        let units = [vendor(14, vec![14]), msxu(14)];
        let c = candidates(&mut xu, Some(chicony), &units);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].value, vec![0x02, 0x19]);
        assert!(c[0].what.contains("04f2:b67c"));
        // Nothing advertised, nothing tried; and the listing itself writes nothing.
        assert!(candidates(&mut xu, None, &[vendor(14, vec![14])]).is_empty());
        assert!(xu.writes.is_empty());
    }

    /// A camera whose emitter alternates when (14, 6) holds flags 0x02.
    fn measure_for(
        xu: &std::cell::RefCell<FakeXu>,
    ) -> impl FnMut() -> Result<Vec<f32>, SourceError> {
        move || {
            let lit = xu.borrow().controls.get(&(14, 6)).map(|c| c.0[2]) == Some(2);
            Ok((0..FIRES_FRAMES)
                .map(|i| if lit && i % 2 == 0 { 120.0 } else { 20.0 })
                .collect())
        }
    }

    #[test]
    fn the_first_control_that_fires_is_kept_the_others_put_back() {
        let fake = std::cell::RefCell::new(FakeXu::default());
        fake.borrow_mut()
            .controls
            .insert((10, 6), (OFF.to_vec(), true));
        fake.borrow_mut()
            .controls
            .insert((14, 6), (OFF.to_vec(), true));
        let cands = candidates(&mut Proxy(&fake), None, &[msxu(10), msxu(14)]);
        let mut lines = Vec::new();
        let outcome = run(
            &mut Proxy(&fake),
            &cands,
            &mut measure_for(&fake),
            &mut |p| {
                lines.push(p.message);
                true
            },
        )
        .unwrap();
        let Outcome::Found(c) = outcome else {
            panic!("expected a control, got {outcome:?}")
        };
        assert_eq!(c.unit, 14);
        let writes = fake.borrow().writes.clone();
        // Unit 10 set and put back, then unit 14 set and left.
        assert_eq!(writes.len(), 3);
        assert_eq!(writes[1], (10, 6, OFF.to_vec()));
        assert_eq!(fake.borrow().controls[&(14, 6)].0[2], 2);
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains("no alternation") && lines[2].contains("fires"));
    }

    /// Shares the fake between the probe's writes and the scripted camera's frames.
    struct Proxy<'a>(&'a std::cell::RefCell<FakeXu>);

    impl Xu for Proxy<'_> {
        fn query(&mut self, unit: u8, sel: u8, query: u8, data: &mut [u8]) -> io::Result<()> {
            self.0.borrow_mut().query(unit, sel, query, data)
        }
    }

    #[test]
    fn already_firing_nothing_working_and_a_gone_client() {
        let fake = std::cell::RefCell::new(FakeXu::default());
        fake.borrow_mut()
            .controls
            .insert((14, 6), (vec![1, 3, 2, 0, 0, 0, 0, 0, 0], true));
        let mut measure = measure_for(&fake);
        let cands = [Candidate {
            unit: 14,
            selector: 6,
            value: OFF.to_vec(),
            what: "test".into(),
        }];
        let outcome = run(&mut Proxy(&fake), &cands, &mut measure, &mut |_| true).unwrap();
        assert_eq!(outcome, Outcome::AlreadyFires);
        assert!(fake.borrow().writes.is_empty());

        fake.borrow_mut()
            .controls
            .insert((14, 6), (OFF.to_vec(), true));
        let cands = [Candidate {
            unit: 14,
            selector: 6,
            value: vec![1, 3, 4, 0, 0, 0, 0, 0, 0],
            what: "test".into(),
        }];
        let outcome = run(&mut Proxy(&fake), &cands, &mut measure, &mut |_| true).unwrap();
        assert_eq!(outcome, Outcome::NothingWorked { tried: 1 });
        assert_eq!(fake.borrow().controls[&(14, 6)].0, OFF.to_vec(), "put back");

        let err = run(&mut Proxy(&fake), &cands, &mut measure, &mut |_| false).unwrap_err();
        assert!(err.to_string().contains("went away"));
        assert_eq!(fake.borrow().controls[&(14, 6)].0, OFF.to_vec());
        // A camera that stops delivering ends the probe with its error.
        let mut dead = || -> Result<Vec<f32>, SourceError> {
            Err(SourceError::Unavailable("unplugged".into()))
        };
        assert!(run(&mut Proxy(&fake), &cands, &mut dead, &mut |_| true).is_err());
    }
}
