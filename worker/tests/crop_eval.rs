//! The crop evaluation set (fixtures/faces: public photos with hand-checked face boxes; sources and
//! licences in SOURCES.md). For each crop mode, the share of cases in which the whole main face with
//! its headroom lies inside both the `thumb` and the `medium` crop, on the photos as they are and on
//! off-centre frames cut from them (16:9 with the face at the left or right edge, 9:16 with the face at
//! the top), kept only where a square crop can keep the face and the centred one cuts it. The crop
//! boxes are the ones the pipeline itself plans, from the focus the render reports.
//!
//! Figures are printed (docs/performance.md); asserted: every case renders, photos without a face
//! too; `face` keeps the face in at least 95 % of the off-centre cases and in no fewer of the photos
//! as they are than `centre` does; `attention` is not worse than `centre` on the off-centre cases.
//! `CROP_EVAL_VERBOSE=1` prints each case a mode cuts.

mod common;

use imgfleet_shared::{CropMode, Fit, ImageFormat, OutputSpec, Preset, RenditionSpec};
use imgfleet_worker::pipeline::geometry::{self, Focus};
use imgfleet_worker::pipeline::pixels::Pixels;
use imgfleet_worker::pipeline::{RenderOptions, face, render, resize};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/faces");

/// A box: left, top, width, height, in pixels.
type Rect = (f64, f64, f64, f64);

struct Photo {
    file: String,
    width: u32,
    height: u32,
    main: Option<Rect>,
}

fn photos() -> Vec<Photo> {
    let tsv = std::fs::read_to_string(format!("{DIR}/faces.tsv")).expect("faces.tsv");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
    let (file, width, height, main, boxes) = (col("file"), col("width"), col("height"), col("main"), col("boxes"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let boxes: Vec<Rect> = f[boxes]
                .split(';')
                .filter(|b| !b.is_empty())
                .map(|b| {
                    let v: Vec<f64> = b.split(',').map(|n| n.trim().parse().unwrap()).collect();
                    (v[0], v[1], v[2], v[3])
                })
                .collect();
            let main: i64 = f[main].parse().unwrap();
            Photo {
                file: f[file].to_owned(),
                width: f[width].parse().unwrap(),
                height: f[height].parse().unwrap(),
                main: usize::try_from(main).ok().map(|i| boxes[i]),
            }
        })
        .collect()
}

/// The face with its headroom: a third of the face's height above it (hair), clamped to the frame.
fn with_headroom((x, y, w, h): Rect) -> Rect {
    let top = (y - h / 3.0).max(0.0);
    (x, top, w, y + h - top)
}

fn inside(a: Rect, b: Rect) -> bool {
    const SLACK: f64 = 0.5;
    a.0 >= b.0 - SLACK && a.1 >= b.1 - SLACK && a.0 + a.2 <= b.0 + b.2 + SLACK && a.1 + a.3 <= b.1 + b.3 + SLACK
}

/// One case: an RGB frame and its main face (if any), in the frame's pixels.
struct Case {
    name: String,
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    face: Option<Rect>,
}

fn cut(name: String, rgb: &[u8], width: u32, (l, t, w, h): (u32, u32, u32, u32), face: Option<Rect>) -> Case {
    let data = (t..t + h)
        .flat_map(|y| rgb[((y * width + l) * 3) as usize..((y * width + l + w) * 3) as usize].iter().copied())
        .collect();
    let face = face.map(|(x, y, fw, fh)| (x - f64::from(l), y - f64::from(t), fw, fh));
    Case { name, width: w, height: h, rgb: data, face }
}

/// The off-centre frames of a photo: the largest 16:9 frame with the face (and headroom) at its left
/// edge, then at its right, and the largest 9:16 frame with the face at the top of it (in its top
/// third), each no larger than the photo lets it be with the face there (a photo's full width puts the
/// face wherever it is in the photo, which is no off-centre case); each kept only when it holds the
/// face, a square crop could hold it too (the face with its headroom no larger than the frame's short
/// side), and the centred square crop does not.
fn off_centre(p: &Photo, rgb: &[u8]) -> Vec<Case> {
    let Some(face) = p.main else { return Vec::new() };
    let (fx, fy, fw, fh) = with_headroom(face);
    let (w, h) = (f64::from(p.width), f64::from(p.height));
    let mut frames = Vec::new();
    // 16:9: as wide as the photo allows with the face 2 % in from the edge, vertically centred on it.
    for (side, at_left) in [("left", true), ("right", false)] {
        let room = if at_left { w - fx } else { fx + fw };
        let fw16 = w.min(h * 16.0 / 9.0).min(room / 0.98);
        let fh16 = fw16 * 9.0 / 16.0;
        let left = if at_left { fx - 0.02 * fw16 } else { fx + fw - 0.98 * fw16 };
        let top = fy + fh / 2.0 - fh16 / 2.0;
        frames.push((format!("16:9 face {side}"), left, top, fw16, fh16));
    }
    // 9:16: the face's headroom 5 % below the top.
    let fh9 = h.min(w * 16.0 / 9.0).min((h - fy) / 0.95);
    let fw9 = fh9 * 9.0 / 16.0;
    frames.push(("9:16 face in the top third".into(), fx + fw / 2.0 - fw9 / 2.0, fy - 0.05 * fh9, fw9, fh9));
    let mut seen = Vec::new();
    frames
        .into_iter()
        .filter_map(|(label, l, t, fw_, fh_)| {
            let (l, t) = (l.clamp(0.0, w - fw_).round() as u32, t.clamp(0.0, h - fh_).round() as u32);
            let (cw, ch) = (fw_.floor() as u32, fh_.floor() as u32);
            // A frame as wide as the photo is the same whether the face is meant at its left or right.
            if seen.contains(&(l, t, cw, ch)) {
                return None;
            }
            seen.push((l, t, cw, ch));
            let case = cut(format!("{} ({label})", p.file), rgb, p.width, (l, t, cw, ch), Some(face));
            let f = with_headroom(case.face.unwrap());
            let frame = (0.0, 0.0, f64::from(cw), f64::from(ch));
            let side = f64::from(cw.min(ch));
            let square = ((f64::from(cw) - side) / 2.0, (f64::from(ch) - side) / 2.0, side, side);
            // A case some square crop can keep (the face no larger than one) and the centred one cuts.
            let fits = f.2 <= side && f.3 <= side;
            (inside(f, frame) && fits && !inside(f, square)).then_some(case)
        })
        .collect()
}

/// Whether the main face with its headroom is inside both the thumb and the medium crop of `case`
/// under `mode` (`None` when the case has no face; it must still render).
fn keeps_the_face(case: &Case, mode: CropMode) -> Option<bool> {
    let formats = vec![OutputSpec::new(ImageFormat::Jpeg, 85)];
    let spec = |name: &str, side| RenditionSpec {
        name: name.into(),
        width: side,
        height: side,
        fit: Fit::Cover,
        crop: mode,
        formats: formats.clone(),
    };
    let preset = Preset { name: "eval".into(), renditions: vec![spec("thumb", 150), spec("medium", 400)] };
    let jpeg = common::jpeg_of(&case.rgb, case.width, case.height, jpeg_encoder::ColorType::Rgb);
    let rendered = render(&jpeg, &preset, &RenderOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    assert_eq!(rendered.outputs.len(), 2, "{}", case.name);
    let face = with_headroom(case.face?);
    let focus = rendered.result.focus.map(|f| {
        Focus::at(
            f64::from(f.x) + f64::from(f.width) / 2.0,
            f64::from(f.y) + f64::from(f.height) / 2.0,
            case.width,
            case.height,
        )
    });
    let kept = [150, 400].iter().all(|&side| {
        let plan = geometry::plan_around(case.width, case.height, side, side, Fit::Cover, focus);
        inside(face, plan.region())
    });
    if !kept && std::env::var_os("CROP_EVAL_VERBOSE").is_some() {
        eprintln!(
            "{mode:?} cuts {} {}x{}: face {face:?}, focus {:?}, faces {:?}",
            case.name, case.width, case.height, rendered.result.focus, rendered.result.faces
        );
    }
    Some(kept)
}

#[test]
fn crop_modes_on_the_evaluation_set() {
    let photos = photos();
    assert!(photos.len() >= 10, "{} photos", photos.len());
    let mut originals = Vec::new();
    let mut shifted = Vec::new();
    for p in &photos {
        let bytes = std::fs::read(format!("{DIR}/{}", p.file)).unwrap();
        let (w, h, rgb) = common::decode_jpeg(&bytes);
        assert_eq!((w, h), (p.width, p.height), "{}", p.file);
        shifted.extend(off_centre(p, &rgb));
        originals.push(Case { name: p.file.clone(), width: w, height: h, rgb, face: p.main });
    }
    let mut report = Vec::new();
    let mut share = std::collections::HashMap::new();
    for (set, cases) in [("photos as they are", &originals), ("off-centre frames", &shifted)] {
        for mode in [CropMode::Centre, CropMode::Attention, CropMode::Face] {
            let kept: Vec<bool> = cases.iter().filter_map(|c| keeps_the_face(c, mode)).collect();
            let n = kept.iter().filter(|k| **k).count();
            report.push(format!("{set}: {mode:?} keeps the face in {n} of {} cases", kept.len()));
            share.insert((set, format!("{mode:?}")), n as f64 / kept.len().max(1) as f64);
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(!shifted.is_empty(), "no off-centre case");
    let (centre, attention) =
        (share[&("off-centre frames", "Centre".to_owned())], share[&("off-centre frames", "Attention".to_owned())]);
    assert!(centre < 0.5, "the off-centre cases are ones a centred crop cuts: {centre}");
    assert!(attention >= centre, "attention {attention} against centre {centre} on the off-centre cases");
    let face = share[&("off-centre frames", "Face".to_owned())];
    // The target: 95 % (69 of 72 now; docs/performance.md names the ones it misses).
    assert!(face >= 0.95, "face keeps the face in {face} of the off-centre cases");
    let (centre, face) =
        (share[&("photos as they are", "Centre".to_owned())], share[&("photos as they are", "Face".to_owned())]);
    assert!(face >= centre, "face {face} against centre {centre} on the photos as they are");
}

/// A frame of the set (a photo, or `frame`'s off-centre frame of it), its detector copy
/// ([`face::SIDE`] a side), a copy twice that, and the frame's main face (in its pixels).
fn copies(file: &str, frame: Option<&str>) -> (Pixels, Pixels, Pixels, Option<Rect>) {
    let (w, h, rgb) = common::decode_jpeg(&std::fs::read(format!("{DIR}/{file}")).unwrap());
    let case = match frame {
        None => cut(file.into(), &rgb, w, (0, 0, w, h), None),
        Some(label) => {
            let photo = photos().into_iter().find(|p| p.file == file).unwrap();
            let mut frames = off_centre(&photo, &rgb).into_iter().filter(|c| c.name.contains(label));
            frames.next().unwrap_or_else(|| panic!("{file} has no {label} frame"))
        }
    };
    let src = Pixels::new(case.width, case.height, 3, case.rgb);
    let at = |side| resize::resize(&src, &geometry::plan(src.width, src.height, side, side, Fit::Inside)).unwrap();
    let (small, closer) = (at(face::SIDE), at(face::SIDE * 2));
    (src, small, closer, case.face)
}

/// `f` (in `small`'s pixels) has its centre inside `label` (in `src`'s).
fn centred_in(f: &face::Face, small: &Pixels, src: &Pixels, (x, y, w, h): Rect) -> bool {
    let s = f64::from(src.width) / f64::from(small.width);
    let (cx, cy) = (f64::from(f.left + f.width / 2.0) * s, f64::from(f.top + f.height / 2.0) * s);
    (x..x + w).contains(&cx) && (y..y + h).contains(&cy)
}

/// Faces too small for the detector's copy to be sure of get a second look, on a copy twice as
/// large, and are found where they are: a jockey's 13-pixel face under his helmet, and a pitcher's
/// under his cap, which is only the third most face-like spot on the small copy (9:16 frames the
/// off-centre set cuts).
#[test]
fn a_doubtful_face_is_found_on_a_second_look() {
    for file in ["06-jockey-small.jpg", "43-baseball-pitcher-stands.jpg"] {
        let (src, small, closer, label) = copies(file, Some("9:16"));
        let label = label.unwrap();
        assert!(face::detect(&small).is_empty(), "{file}: found at the first look: nothing to prove");
        let mut looks = 0;
        let faces = face::detect_closer(&small, || {
            looks += 1;
            Some(closer.clone())
        });
        assert_eq!(looks, 1, "{file}");
        assert_eq!(faces.len(), 1, "{file}: {faces:?}");
        assert!(centred_in(&faces[0], &small, &src, label), "{file}: {:?} against {label:?}", faces[0]);
        // Without a larger copy there is no second look, and no face.
        assert!(face::detect_closer(&small, || None).is_empty(), "{file}");
    }
}

/// Faces of about one size get a second look, which ranks them as the labels do where the small
/// copy alone does not: the three astronauts and the two friends, in the 16:9 frames with the
/// labelled largest face at the left edge (a square crop holds it and one of the others).
#[test]
fn faces_close_in_size_are_measured_twice() {
    for file in ["04-three-astronauts.jpg", "38-two-friends-cameras.jpg"] {
        let (src, small, closer, label) = copies(file, Some("face left"));
        let label = label.unwrap();
        let largest = |faces: &[face::Face]| {
            *faces.iter().max_by(|a, b| (a.width * a.height).total_cmp(&(b.width * b.height))).unwrap()
        };
        let first = face::detect(&small);
        assert!(!centred_in(&largest(&first), &small, &src, label), "{file}: the first look ranks them right");
        let mut looks = 0;
        let faces = face::detect_closer(&small, || {
            looks += 1;
            Some(closer.clone())
        });
        assert_eq!((looks, faces.len()), (1, first.len()), "{file}: {faces:?}");
        assert!(centred_in(&largest(&faces), &small, &src, label), "{file}: {faces:?} against {label:?}");
    }
}

/// The second look costs nothing where the first is sure of one face, or sees nothing like a face;
/// where it looks (doubt on a terrace, where it finds nothing; two cyclists of about one size), a copy
/// too small to be worth it leaves the first look's faces, and whatever larger copy it is given, in
/// proportion or not, its boxes stay inside the image.
#[test]
fn the_second_look_is_taken_only_when_unsure() {
    for (file, faces) in [("02-headshot-suit.jpg", 1), ("27-plane-noface.jpg", 0)] {
        let (_, small, _, _) = copies(file, None);
        let found = face::detect_closer(&small, || panic!("{file}: a second look"));
        assert_eq!(found, face::detect(&small), "{file}");
        assert_eq!(found.len(), faces, "{file}: {found:?}");
    }
    let mut checked = 0;
    for (file, faces) in [("26-terrace-noface.jpg", 0), ("12-two-cyclists.jpg", 2)] {
        let (src, small, closer, _) = copies(file, None);
        let mut looks = 0;
        let found = face::detect_closer(&small, || {
            looks += 1;
            Some(closer.clone())
        });
        assert_eq!((looks, found.len()), (1, faces), "{file}: {found:?}");
        let sized = |w: u32, h: u32| resize::resize(&src, &geometry::Plan::whole(src.width, src.height, w, h)).unwrap();
        let (w, h) = (small.width, small.height);
        for (cw, ch) in [(1, 1), (w, h), (w * 2, 1), (w * 5 / 4 - 1, h * 2), (w * 2, h * 5 / 4 - 1)] {
            assert_eq!(face::detect_closer(&small, || Some(sized(cw, ch))), face::detect(&small), "{file} {cw}x{ch}");
        }
        for (cw, ch) in
            [(w * 3, h * 3), (w * 2, h * 5 / 4 + 1), (w * 4, h * 2), (w * 2 - 1, h * 2 + 1), (w * 5 / 4 + 1, h * 4)]
        {
            for f in face::detect_closer(&small, || Some(sized(cw, ch))) {
                checked += 1;
                assert!(f.left >= 0.0 && f.top >= 0.0 && f.width > 0.0 && f.height > 0.0, "{file} {cw}x{ch}: {f:?}");
                assert!(f.left + f.width <= w as f32 && f.top + f.height <= h as f32, "{file} {cw}x{ch}: {f:?}");
            }
        }
    }
    assert!(checked > 0, "no box was checked");
}
