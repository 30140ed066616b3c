//! What a `face` crop keeps: the faces a detector finds on a small upright copy of the image, with
//! headroom above each for hair.
//!
//! The detector is YuNet-n (libfacedetection, Shiqi Yu et al.; weights Apache-2.0, see
//! `worker/models/`), a 75 000-parameter convolutional network run in-process by [`net`] on a copy at
//! most [`SIDE`] pixels a side. Chosen by measurement on the crop evaluation set
//! (docs/performance.md): it finds the main face in 22 of 23 photos at this size, profiles and
//! sunglasses included, with no false positive on the photos without one, in 2–4 ms; SeetaFace's
//! frontal cascade (`rustface`) found 15 of 23 at this size and took longer.
//!
//! [`detect`] returns the faces; [`detect_closer`] also takes a second look, on a copy twice as large,
//! when the first is unsure: it found only doubtful faces (a face of a dozen pixels on the small copy:
//! a person standing far off), or faces too close in size to tell which is largest (a group); [`focus`]
//! turns them into the box a crop centres on: around as many faces as fit in the crops, the largest
//! first.

pub mod net;

use super::pixels::Pixels;
use net::{ALIGN, Net, Tensor};

/// The longest side of the copy the detector runs on.
pub const SIDE: u32 = 160;

/// The lowest score (the geometric mean of the face and objectness probabilities) that counts as a
/// face. OpenCV's `FaceDetectorYN` defaults to 0.9; 0.6 finds the faces in shadow, in profile or
/// behind sunglasses of the evaluation set and still nothing on its photos without a face.
pub const MIN_SCORE: f32 = 0.6;

/// Detections that overlap a better one by more than this (intersection over union) are the same face.
const NMS_IOU: f32 = 0.3;

/// At most this many faces are kept (the best scoring).
const MAX_FACES: usize = 64;

/// A detected face: its box in the analysed image's pixels, and the detector's score (0–1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    pub left: f32,
    pub top: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

impl Face {
    fn area(&self) -> f32 {
        self.width * self.height
    }

    fn iou(&self, o: &Face) -> f32 {
        let w = (self.left + self.width).min(o.left + o.width) - self.left.max(o.left);
        let h = (self.top + self.height).min(o.top + o.height) - self.top.max(o.top);
        let inter = w.max(0.0) * h.max(0.0);
        let union = self.area() + o.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// The faces in `image` (upright; 1–4 channels: grey, grey + alpha, RGB, RGBA; transparent pixels count
/// as black), best first, each clipped to the image. Any size works; the network sees the image
/// padded with black to multiples of 32 pixels, and an image larger than [`SIDE`] is fine but slower.
pub fn detect(image: &Pixels) -> Vec<Face> {
    scan(image, MIN_SCORE)
}

/// Candidates scoring at least this, but below [`MIN_SCORE`], are doubtful: when the small copy
/// shows one and no surer face, [`detect_closer`] looks again at a higher resolution. On the crop
/// evaluation set's frames, a jockey's face under his helmet and a pitcher's under his cap, 11–14
/// pixels on the small copy, bring the best candidate of their frames to 0.34–0.52 and score 0.73–0.79
/// on a copy twice as large; 2 of its 10 photos without a face (a terrace, a masked snowboarder) have
/// a spot scoring 0.3 or more, where the second look finds nothing; none of the benchmark corpus
/// photos has one.
pub const DOUBT_SCORE: f32 = 0.3;

/// When the second largest face has at least this share of the largest one's area, the small copy
/// cannot tell which is larger (a face's box on it and on a copy twice as large differ by up to a
/// tenth), so [`detect_closer`] measures them again at a higher resolution.
pub const CLOSE_SIZES: f32 = 0.8;

/// A higher-resolution copy is worth a second look only when it is at least this much larger.
const MIN_ZOOM: f32 = 1.25;

/// [`detect`], and a second look at the whole image at a higher resolution (`closer()`: upright;
/// [`SIDE`] times two a side suits) when the first look is unsure:
/// - it found no face, but doubtful candidates ([`DOUBT_SCORE`]): the faces are what the second look
///   finds (a face must still score [`MIN_SCORE`]);
/// - the two largest faces are close in size ([`CLOSE_SIZES`]), so which one a crop keeps first is
///   not yet known: the faces are the first look's, each measured again ([`remeasure`]).
///
/// Faces in `image`'s pixels, best first. `closer` is called only for a second look; without it, or
/// when it is less than 1.25 times `image`'s size, the faces are the first look's.
pub fn detect_closer(image: &Pixels, closer: impl FnOnce() -> Option<Pixels>) -> Vec<Face> {
    let found = scan(image, DOUBT_SCORE);
    let doubtful = !found.is_empty() && found.iter().all(|f| f.score < MIN_SCORE);
    let sure: Vec<Face> = found.into_iter().filter(|f| f.score >= MIN_SCORE).collect();
    if !doubtful && !close_in_size(&sure) {
        return sure;
    }
    let Some(zoomed) = closer() else { return sure };
    let (zx, zy) = (zoomed.width as f32 / image.width as f32, zoomed.height as f32 / image.height as f32);
    if zx.min(zy) < MIN_ZOOM {
        return sure;
    }
    let again: Vec<Face> = detect(&zoomed)
        .into_iter()
        .filter_map(|f| {
            // Back to `image`'s pixels, within it.
            let (left, top) = (f.left / zx, f.top / zy);
            let right = ((f.left + f.width) / zx).min(image.width as f32);
            let bottom = ((f.top + f.height) / zy).min(image.height as f32);
            (right > left && bottom > top).then_some(Face {
                left,
                top,
                width: right - left,
                height: bottom - top,
                score: f.score,
            })
        })
        .collect();
    if doubtful { again } else { remeasure(&sure, &again) }
}

/// Whether the two largest of `faces` are too close in size for one look to rank ([`CLOSE_SIZES`]).
fn close_in_size(faces: &[Face]) -> bool {
    let mut areas: Vec<f32> = faces.iter().map(Face::area).collect();
    areas.sort_by(|a, b| b.total_cmp(a));
    matches!(areas[..], [first, second, ..] if second >= first * CLOSE_SIZES)
}

/// The faces of `first`, each measured again by `second`, a look at the same image: a face that a
/// face of `second` overlaps by more than [`NMS_IOU`] gets the mean of the two boxes and scores
/// (pairs are made best overlap first, and each face is in one pair at most); the others stay as they
/// were. Faces only `second` found are left out. Best first.
fn remeasure(first: &[Face], second: &[Face]) -> Vec<Face> {
    let mut pairs: Vec<(usize, usize, f32)> = (0..first.len())
        .flat_map(|i| (0..second.len()).map(move |j| (i, j)))
        .map(|(i, j)| (i, j, first[i].iou(&second[j])))
        .filter(|&(_, _, iou)| iou > NMS_IOU)
        .collect();
    pairs.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut faces = first.to_vec();
    let (mut measured, mut used) = (vec![false; first.len()], vec![false; second.len()]);
    for (i, j, _) in pairs {
        if measured[i] || used[j] {
            continue;
        }
        (measured[i], used[j]) = (true, true);
        let (f, g) = (first[i], second[j]);
        let mean = |a: f32, b: f32| (a + b) / 2.0;
        faces[i] = Face {
            left: mean(f.left, g.left),
            top: mean(f.top, g.top),
            width: mean(f.width, g.width),
            height: mean(f.height, g.height),
            score: mean(f.score, g.score),
        };
    }
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    faces
}

/// Every candidate scoring at least `min_score`, as [`detect`] describes.
fn scan(image: &Pixels, min_score: f32) -> Vec<Face> {
    let (w, h) = (image.width as usize, image.height as usize);
    if w == 0 || h == 0 {
        return Vec::new();
    }
    let (pw, ph) = (w.div_ceil(ALIGN) * ALIGN, h.div_ceil(ALIGN) * ALIGN);
    let mut input = Tensor::zeros(3, ph, pw);
    let ch = usize::from(image.channels);
    for y in 0..h {
        for x in 0..w {
            let p = &image.data[(y * w + x) * ch..][..ch];
            let (rgb, alpha) = match ch {
                1 => ([p[0]; 3], 255),
                2 => ([p[0]; 3], p[1]),
                3 => ([p[0], p[1], p[2]], 255),
                _ => ([p[0], p[1], p[2]], p[3]),
            };
            let a = f32::from(alpha) / 255.0;
            // Blue, green, red: the channel order the network was trained on.
            for (c, v) in [rgb[2], rgb[1], rgb[0]].into_iter().enumerate() {
                input.data[(c * ph + y) * pw + x] = f32::from(v) * a;
            }
        }
    }
    let heads = Net::yunet().run(input);
    let mut found = Vec::new();
    for (level, stride) in [8usize, 16, 32].into_iter().enumerate() {
        let (cls, obj, bbox) = (&heads[level], &heads[3 + level], &heads[6 + level]);
        let (rows, cols) = (cls.height, cls.width);
        let cells = rows * cols;
        for i in 0..cells {
            let score = (sigmoid(cls.data[i]) * sigmoid(obj.data[i])).sqrt();
            if score.is_nan() || score < min_score {
                continue;
            }
            let s = stride as f32;
            let at = |k: usize| bbox.data[k * cells + i];
            let (cx, cy) = (((i % cols) as f32 + at(0)) * s, ((i / cols) as f32 + at(1)) * s);
            let (bw, bh) = (at(2).min(8.0).exp() * s, at(3).min(8.0).exp() * s);
            // Clipped to the image, not to the padding.
            let (l, t) = ((cx - bw / 2.0).max(0.0), (cy - bh / 2.0).max(0.0));
            let (r, b) = ((cx + bw / 2.0).min(w as f32), (cy + bh / 2.0).min(h as f32));
            if r > l && b > t && r.is_finite() && b.is_finite() {
                found.push(Face { left: l, top: t, width: r - l, height: b - t, score });
            }
        }
    }
    suppress(found)
}

/// The best of each group of overlapping candidates, best first, at most [`MAX_FACES`].
fn suppress(mut found: Vec<Face>) -> Vec<Face> {
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in found {
        if kept.len() == MAX_FACES {
            break;
        }
        if kept.iter().all(|k| k.iou(&f) <= NMS_IOU) {
            kept.push(f);
        }
    }
    kept
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// A box: left, top, width, height.
pub type Rect = (f64, f64, f64, f64);

/// A face's box with headroom: a third of its height added above it (for hair), within the image.
pub fn with_headroom((l, t, w, h): Rect) -> Rect {
    let top = (t - h / 3.0).max(0.0);
    (l, top, w, t + h - top)
}

/// The head around a detected face: the face box (brows to chin) with headroom above, and a tenth of
/// its width more on each side (ears, hair), within the image's left edge.
fn head(face: Rect) -> Rect {
    let (l, t, w, h) = with_headroom(face);
    let left = (l - w / 10.0).max(0.0);
    (left, t, l + w * 1.1 - left, h)
}

fn union(a: Rect, b: Rect) -> Rect {
    let (l, t) = (a.0.min(b.0), a.1.min(b.1));
    let (r, bottom) = ((a.0 + a.2).max(b.0 + b.2), (a.1 + a.3).max(b.1 + b.3));
    (l, t, r - l, bottom - t)
}

/// The box the crops centre on, for `faces` (boxes in the image's pixels) in an image `width` wide,
/// given the sizes of the crops (width, height in the same pixels): the heads around the faces
/// ([`head`]), taken largest first while their bounding box still fits in every crop. The largest
/// alone when even that does not fit; then, when it is taller than a crop, its headroom is given up
/// first (the chin is kept), down to the face itself, and the crop centres on what is left. `None`
/// without a face.
pub fn focus(faces: &[Rect], width: f64, crops: &[(f64, f64)]) -> Option<Rect> {
    let mut by_size: Vec<Rect> = faces.to_vec();
    by_size.sort_by(|a, b| (b.2 * b.3).total_cmp(&(a.2 * a.3)));
    let (&first, rest) = by_size.split_first()?;
    let within = |(l, t, w, h): Rect| (l, t, w.min(width - l), h);
    let fits = |r: Rect| crops.iter().all(|&(cw, ch)| r.2 <= cw && r.3 <= ch);
    let mut around = within(head(first));
    for &f in rest {
        let grown = union(around, within(head(f)));
        if fits(grown) {
            around = grown;
        }
    }
    let shortest = crops.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
    if around.3 > shortest {
        let bottom = around.1 + around.3;
        let top = (bottom - shortest).min(first.1).max(around.1);
        around = (around.0, top, around.2, bottom - top);
    }
    Some(around)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yunet").join(name)
    }

    fn read_png(name: &str) -> Pixels {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(fixture(name)).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        Pixels::new(info.width, info.height, 3, buf)
    }

    /// The network's outputs against onnxruntime's on the unmodified ONNX export, for inputs cut from
    /// the crop evaluation photos (worker/models/make_yunet.py wrote both).
    #[test]
    fn the_network_computes_what_onnxruntime_computes() {
        let names = ["02-headshot-suit", "04-three-astronauts", "11-woman-profile", "27-plane-noface"];
        for name in names {
            let img = read_png(&format!("{name}.png"));
            let (w, h) = (img.width as usize, img.height as usize);
            assert!(w % ALIGN == 0 && h % ALIGN == 0);
            let mut input = Tensor::zeros(3, h, w);
            for (i, px) in img.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    input.data[c * w * h + i] = f32::from(px[2 - c]);
                }
            }
            let heads = Net::yunet().run(input);
            let bytes = std::fs::read(fixture(&format!("{name}.heads"))).unwrap();
            let want: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            // onnxruntime's cls and obj are after the sigmoid, its tensors channels last.
            let mut at = 0;
            let mut worst = 0f32;
            for (k, t) in heads.iter().enumerate() {
                let cells = t.height * t.width;
                for cell in 0..cells {
                    for c in 0..t.channels {
                        let mut v = t.data[c * cells + cell];
                        if k < 6 {
                            v = sigmoid(v);
                        }
                        let err = (v - want[at]).abs() / want[at].abs().max(1.0);
                        worst = worst.max(err);
                        at += 1;
                    }
                }
            }
            assert_eq!(at, want.len(), "{name}: output sizes");
            assert!(worst < 1e-4, "{name}: largest difference {worst}");
        }
    }

    #[test]
    fn faces_are_found_where_the_reference_finds_them_and_not_elsewhere() {
        let headshot = detect(&read_png("02-headshot-suit.png"));
        assert_eq!(headshot.len(), 1, "{headshot:?}");
        let astronauts = detect(&read_png("04-three-astronauts.png"));
        assert_eq!(astronauts.len(), 3, "{astronauts:?}");
        assert_eq!(detect(&read_png("11-woman-profile.png")).len(), 1);
        assert!(detect(&read_png("27-plane-noface.png")).is_empty());
    }

    /// Every size from 1x1 up, in every channel layout, flat or noisy: boxes inside the image, no panic.
    #[test]
    fn any_image_size_gives_boxes_inside_it() {
        let mut seed = 1u32;
        for w in (1..=70).step_by(3).chain([1, 2, 31, 32, 33, 64, 65, 161, 300]) {
            for h in [1, 2, 5, 31, 32, 33, 47, 100] {
                for channels in 1..=4u8 {
                    let data: Vec<u8> = (0..w * h * u32::from(channels))
                        .map(|_| {
                            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                            (seed >> 16) as u8
                        })
                        .collect();
                    for faces in [
                        detect(&Pixels::new(w, h, channels, data.clone())),
                        detect(&Pixels::new(w, h, channels, vec![0; data.len()])),
                    ] {
                        for f in faces {
                            assert!(f.left >= 0.0 && f.top >= 0.0 && f.width > 0.0 && f.height > 0.0, "{w}x{h}: {f:?}");
                            assert!(
                                f.left + f.width <= w as f32 + 1e-3 && f.top + f.height <= h as f32 + 1e-3,
                                "{w}x{h}: {f:?}"
                            );
                        }
                    }
                }
            }
        }
        assert!(detect(&Pixels::new(0, 0, 3, vec![])).is_empty());
    }

    fn face(left: f32, top: f32, width: f32, height: f32, score: f32) -> Face {
        Face { left, top, width, height, score }
    }

    /// Every ratio of the two largest areas on a fine grid, in any order and with a smaller third:
    /// close from [`CLOSE_SIZES`] up, not below; one face or none is never close.
    #[test]
    fn faces_are_close_in_size_from_the_threshold_up() {
        assert!(!close_in_size(&[]));
        assert!(!close_in_size(&[face(0.0, 0.0, 10.0, 10.0, 0.9)]));
        for step in 1..=100 {
            let ratio = step as f32 / 100.0;
            let big = face(0.0, 0.0, 20.0, 20.0, 0.9);
            let second = face(50.0, 0.0, 20.0 * ratio, 20.0, 0.8);
            let tiny = face(90.0, 0.0, 1.0, 1.0, 0.7);
            let want = ratio >= CLOSE_SIZES;
            for order in [[big, second, tiny], [second, tiny, big], [tiny, big, second]] {
                assert_eq!(close_in_size(&order), want, "ratio {ratio}");
            }
        }
    }

    #[test]
    fn a_second_look_measures_each_face_again() {
        let a = face(10.0, 10.0, 20.0, 20.0, 0.875);
        let a2 = face(12.0, 8.0, 24.0, 24.0, 0.625);
        let b = face(100.0, 10.0, 20.0, 20.0, 0.8);
        let c = face(200.0, 10.0, 10.0, 10.0, 0.65);
        // A face both looks found: the mean box and score; one the second look missed: as it was; one
        // only the second look found: left out.
        assert_eq!(remeasure(&[a, b], &[c, a2]), vec![b, face(11.0, 9.0, 22.0, 22.0, 0.75)], "best first");
        assert_eq!(remeasure(&[a, b], &[]), vec![a, b]);
        assert!(remeasure(&[], &[c, a2]).is_empty());
        // Pairs are made best overlap first: a face of the second look that overlaps two faces of the
        // first (touching heads) measures the one it overlaps most, and the other keeps its own box.
        let left = face(0.0, 0.0, 20.0, 20.0, 0.875);
        let right = face(14.0, 0.0, 20.0, 20.0, 0.75);
        let between = face(8.0, 0.0, 20.0, 20.0, 0.625);
        assert!(left.iou(&between) > NMS_IOU && right.iou(&between) > left.iou(&between));
        assert_eq!(remeasure(&[left, right], &[between]), vec![left, face(11.0, 0.0, 20.0, 20.0, 0.6875)]);
        // Each face is in one pair: two second-look faces over one first-look face, the closer counts.
        let (most, less) = (face(11.0, 10.0, 20.0, 20.0, 0.625), face(16.0, 10.0, 20.0, 20.0, 0.5));
        assert_eq!(remeasure(&[a], &[less, most]), vec![face(10.5, 10.0, 20.0, 20.0, 0.75)]);
        // Faces that do not overlap enough are not the same face.
        let off = face(25.0, 10.0, 20.0, 20.0, 0.7);
        assert!(a.iou(&off) <= NMS_IOU);
        assert_eq!(remeasure(&[a], &[off]), vec![a]);
    }

    #[test]
    fn headroom_is_a_third_above_within_the_image() {
        assert_eq!(with_headroom((10.0, 30.0, 20.0, 30.0)), (10.0, 20.0, 20.0, 40.0));
        assert_eq!(with_headroom((10.0, 5.0, 20.0, 30.0)), (10.0, 0.0, 20.0, 35.0), "a face at the top edge");
    }

    #[test]
    fn focus_takes_as_many_faces_as_fit_largest_first() {
        assert_eq!(focus(&[], 1000.0, &[(100.0, 100.0)]), None);
        let big = (10.0, 30.0, 40.0, 60.0);
        let small = (200.0, 30.0, 20.0, 30.0);
        let near = (60.0, 30.0, 20.0, 30.0);
        assert_eq!(head(big), (6.0, 10.0, 48.0, 80.0), "headroom above, a tenth of the width each side");
        assert_eq!(head((1.0, 30.0, 40.0, 60.0)).0, 0.0, "within the left edge");
        // Everything fits in a wide crop.
        let all = focus(&[small, big, near], 1000.0, &[(400.0, 200.0)]).unwrap();
        assert_eq!(all, (6.0, 10.0, 216.0, 80.0));
        // A 100 px crop holds the big face and its neighbour, not the far one.
        let two = focus(&[small, big, near], 1000.0, &[(400.0, 200.0), (100.0, 100.0)]).unwrap();
        assert_eq!(two, (6.0, 10.0, 76.0, 80.0));
        // Within the right edge too.
        assert_eq!(focus(&[big], 52.0, &[(100.0, 100.0)]).unwrap(), (6.0, 10.0, 46.0, 80.0));
        // A head taller than the crop gives up its headroom first (the chin stays)...
        assert_eq!(focus(&[big], 1000.0, &[(70.0, 70.0)]).unwrap(), (6.0, 20.0, 48.0, 70.0));
        // ... down to the face itself: a face larger than the crop is what the crop centres on.
        assert_eq!(focus(&[big, small], 1000.0, &[(30.0, 30.0)]).unwrap(), (6.0, 30.0, 48.0, 60.0));
    }
}
