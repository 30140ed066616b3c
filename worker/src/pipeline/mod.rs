//! The rendition pipeline: source bytes → every rendition of a preset, encoded.
//!
//! `sniff → decode → resize → orient (+ colour) → encode`, plain synchronous code with no I/O, no
//! async runtime and no metrics: callers time and report around [`render`]. The image is decoded
//! once; every rendition comes from that one decode. A source larger than twice what its largest
//! rendition needs is first box-shrunk by a whole factor ([`SHRINK_MARGIN`]), as a JPEG decoder's
//! shrink-on-load would. Renditions are planned in the stored orientation and made largest first: a
//! smaller one is resized from an already made full-frame (`inside`) rendition when that has at
//! least [`CASCADE_MIN_RATIO`] times the pixels it needs per side, otherwise from the (shrunk)
//! source. Each result is then turned upright and encoded. All of that geometry (sizes, crop boxes,
//! the shrink factor, which image each rendition is cut from) is a pure function of the sizes, the
//! orientation and the preset, exact by construction: [`geometry`]. The one input from the pixels:
//! a `cover` rendition whose preset asks for an `attention` crop is centred on the salient region
//! [`attention`] finds on a small copy of the (shrunk) source, and one asking for a `face` crop on the
//! faces [`face`] finds on a small upright copy (or, without a face, on the salient region); both
//! copies are made before any rendition.

// The stages, in the order an image meets them; none imports another.
pub mod colour;
pub mod decode;
pub mod encode;
pub mod orient;
pub mod resize;
pub mod sniff;

// What the stages stand on.
pub mod attention;
#[cfg(feature = "heic")]
pub mod avif;
pub mod exif;
pub mod face;
pub mod geometry;
mod libjpeg;
mod libwebp;
pub mod pixels;
pub mod shrink;

use decode::DecodeError;
use encode::EncodeError;
use geometry::{Ratio, Source};
use imgfleet_shared::outcome::{FocusBox, RenditionInfo, SourceInfo, StageTimings};
use imgfleet_shared::{CropMode, ErrorKind, Fit, ImageFormat, Limits, Preset, RenderResult};
use pixels::{Pixels, Raster};
use resize::ResizeError;
use sniff::SniffError;
use std::time::Instant;

pub use geometry::{CASCADE_MIN_RATIO, SHRINK_MARGIN};

/// Settings of a render that are not part of the preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    pub limits: Limits,
    /// What transparent pixels are flattened onto for JPEG.
    pub background: [u8; 3],
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self { limits: Limits::default(), background: [255, 255, 255] }
    }
}

/// One encoded rendition.
#[derive(Debug, Clone)]
pub struct Output {
    pub name: String,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Output {
    /// What the render report says of this file.
    fn info(&self) -> RenditionInfo {
        RenditionInfo {
            name: self.name.clone(),
            format: self.format,
            width: self.width,
            height: self.height,
            bytes: self.data.len() as u64,
            content_type: self.format.content_type().to_owned(),
        }
    }
}

/// Everything a render produced: the report and the encoded files (in preset order).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub result: RenderResult,
    pub outputs: Vec<Output>,
}

/// Why a render failed; [`RenderError::kind`] says whether the input can ever succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error(transparent)]
    Sniff(#[from] SniffError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Resize(#[from] ResizeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("internal error while rendering: {0}")]
    Panic(String),
}

impl RenderError {
    /// The kind reported in events. Failures of the input are *reject* class (the same bytes fail
    /// again); a resize failure can only be imgfleet's own bug (every plan is valid by
    /// construction), so it is `internal`, never blamed on the upload.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Sniff(_) => ErrorKind::Unsupported,
            Self::Decode(DecodeError::TooLarge { .. } | DecodeError::TooManyBytes { .. }) => ErrorKind::TooLarge,
            Self::Decode(DecodeError::Unsupported { .. }) => ErrorKind::Unsupported,
            Self::Decode(DecodeError::Corrupt { .. }) | Self::Panic(_) => ErrorKind::Corrupt,
            Self::Resize(_) => ErrorKind::Internal,
            Self::Encode(_) => ErrorKind::Encode,
        }
    }
}

/// Renders every rendition of `preset` from `bytes`.
///
/// CPU-bound: call it from a blocking thread (`tokio::task::spawn_blocking`), never on an async
/// executor thread. Peak memory is about the decoded image (width × height × channels) plus the
/// largest rendition, bounded by `options.limits`.
pub fn render(bytes: &[u8], preset: &Preset, options: &RenderOptions) -> Result<Rendered, RenderError> {
    // Decoders are fuzzed upstream, but a panic on hostile input must still become a typed error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render_inner(bytes, preset, options)))
        .unwrap_or_else(|p| Err(RenderError::Panic(panic_message(p.as_ref()).unwrap_or_else(|| "panic".into()))))
}

/// The message a panic (or a C library's unwind) carried, when it is text.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<&str>().map(|s| (*s).to_owned()).or_else(|| payload.downcast_ref::<String>().cloned())
}

fn render_inner(bytes: &[u8], preset: &Preset, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let mut timings = StageTimings::default();
    let mut clock = Clock::start();

    let format = sniff::sniff(bytes)?;
    timings.sniff_ms = clock.lap();

    let keep = |w: u32, h: u32, orientation: u8| shrink_keep(w, h, preset, orientation);
    let mut decoded = decode::decode_shrinking(bytes, format, &options.limits, &keep)?;
    let warnings = std::mem::take(&mut decoded.warnings);
    let (orientation, size, shrunk_by) = (decoded.orientation, (decoded.width, decoded.height), decoded.shrunk_by);
    let frames = decoded.frames;
    let source_info = SourceInfo {
        format,
        width: size.0,
        height: size.1,
        bytes: bytes.len() as u64,
        orientation,
        frames,
        animated: frames > 1,
    };
    let (source, converter) = colour::prepare(decoded);
    timings.decode_ms = clock.lap();

    let made = resize_all_shrunk(&source, size, shrunk_by, preset, orientation)?;
    let thumb = placeholder_image(&source, &made, orientation)?;
    drop(source);
    timings.resize_ms = clock.lap();

    // Turned upright and, for wide-gamut RGB sources, converted to sRGB now that they are small.
    let (focus, faces) = (made.focus, made.faces);
    let upright: Vec<Raster> =
        made.renditions.into_iter().map(|r| converter.apply_raster(orient::apply_raster(r, orientation))).collect();
    let thumb = converter.apply(orient::apply(thumb.into_pixels(), orientation));
    timings.orient_ms = clock.lap();

    let outputs = encode_all(preset, &upright, options.background)?;
    let placeholder = placeholder(&thumb);
    timings.encode_ms = clock.lap();

    let renditions = outputs.iter().map(Output::info).collect();
    let focus = focus.map(|b| {
        let (x, y, width, height) = orient::upright_box(b, size, orientation);
        FocusBox { x, y, width, height }
    });
    let result = RenderResult { source: source_info, renditions, placeholder, timings, warnings, focus, faces };
    Ok(Rendered { result, outputs })
}

/// The small image the placeholder is computed from, cut from the smallest full-frame rendition,
/// or else from the source (still in the stored orientation).
fn placeholder_image(source: &Raster, made: &Made, orientation: u8) -> Result<Raster, ResizeError> {
    let base = made.smallest_frame.map_or(source, |i| &made.renditions[i]);
    let plan = geometry::transposed_plan(
        base.width(),
        base.height(),
        PLACEHOLDER_SIDE,
        PLACEHOLDER_SIDE,
        Fit::Inside,
        orientation,
    );
    // Turned into RGB pixels before it is turned upright: its chroma grid can start anywhere.
    resize::resize_raster(base, &plan, (false, false))
}

/// Every rendition of `preset` (upright, in preset order) in each of its output formats.
fn encode_all(preset: &Preset, upright: &[Raster], background: [u8; 3]) -> Result<Vec<Output>, EncodeError> {
    let mut outputs = Vec::new();
    for (spec, image) in preset.renditions.iter().zip(upright) {
        for out in &spec.formats {
            let data = encode::encode(image, out, background)?;
            outputs.push(Output {
                name: spec.name.clone(),
                format: out.format,
                width: image.width(),
                height: image.height(),
                data,
            });
        }
    }
    Ok(outputs)
}

/// Every rendition of a preset, resized but not yet turned upright or encoded.
#[derive(Debug)]
pub struct Made {
    /// In preset order, still in the stored orientation: RGB(A) pixels, or 4:2:0 YCbCr planes for a
    /// JPEG decoded to planes ([`resize::resize_raster`]).
    pub renditions: Vec<Raster>,
    /// Index (into `renditions`) of the smallest full-frame rendition smaller than the source.
    smallest_frame: Option<usize>,
    /// The region the non-centre crops centred on (left, top, width, height in the stored source's
    /// pixels): the faces with their headroom when the preset has `face` crops and the image faces, else
    /// the salient region when there is one and a crop that uses it.
    pub focus: Option<(u32, u32, u32, u32)>,
    /// How many faces were found, when the preset has a `face` crop.
    pub faces: Option<u32>,
}

/// Resizes every rendition of `preset` from `source` (stored orientation), largest first, cutting
/// smaller ones from larger full-frame ones where [`CASCADE_MIN_RATIO`] allows.
pub fn resize_all(source: &Raster, preset: &Preset, orientation: u8) -> Result<Made, ResizeError> {
    resize_all_shrunk(source, (source.width(), source.height()), 1, preset, orientation)
}

/// How much of a `src_w` x `src_h` source's size (per side) must survive a box shrink: the most any
/// rendition of `preset` needs, times [`SHRINK_MARGIN`].
pub fn shrink_keep(src_w: u32, src_h: u32, preset: &Preset, orientation: u8) -> f64 {
    geometry::keep_for(&geometry::plans(src_w, src_h, preset, orientation))
}

/// [`resize_all`] for a source of `size` (stored orientation) that `source` holds box-shrunk by
/// `shrunk_by` (1: full size, and then it is shrunk here if large enough). Carries out
/// [`geometry::schedule`].
pub fn resize_all_shrunk(
    source: &Raster,
    size: (u32, u32),
    shrunk_by: u32,
    preset: &Preset,
    orientation: u8,
) -> Result<Made, ResizeError> {
    let (src_w, src_h) = size;
    let plans = geometry::plans(src_w, src_h, preset, orientation);
    let shrunk = (shrunk_by == 1).then(|| shrink::shrink(source, geometry::keep_for(&plans))).flatten();
    let (base, k) = match &shrunk {
        Some((s, k)) => (s, *k),
        None => (source, shrunk_by),
    };
    // Crops that follow the image's content are placed once its salient region is known; the crops'
    // sizes, and so how far the source could be shrunk, do not depend on where they are.
    let uses = |mode: CropMode| preset.renditions.iter().any(|r| r.fit == Fit::Cover && r.crop == mode);
    let faces = if uses(CropMode::Face) { Some(face_region(base, size, preset, orientation)?) } else { None };
    let face_focus = faces.and_then(|(focus, _)| focus);
    // Attention crops, and face crops where no face was found, centre on the salient region.
    let salient = if uses(CropMode::Attention) || (faces.is_some() && face_focus.is_none()) {
        salient_region(base, size)?
    } else {
        None
    };
    let centre = |(l, t, w, h): (u32, u32, u32, u32)| {
        geometry::Focus::at(f64::from(l) + f64::from(w) / 2.0, f64::from(t) + f64::from(h) / 2.0, src_w, src_h)
    };
    let box_of = |mode: CropMode| match mode {
        CropMode::Centre => None,
        CropMode::Attention => salient,
        CropMode::Face => face_focus.or(salient),
    };
    let plans = if salient.is_some() || face_focus.is_some() {
        geometry::plans_focused(src_w, src_h, preset, orientation, &|mode| box_of(mode).map(centre))
    } else {
        plans
    };
    // Reported: what the face crops centred on when there are any, else what the attention crops did.
    let focus = if faces.is_some() { box_of(CropMode::Face) } else { salient };
    let base_scale = Ratio::new(1, u64::from(k));
    // Renditions are made in the stored orientation; chroma is laid for the upright image.
    let mirrored = orient::mirrored_axes(orientation);
    let mut out: Vec<Option<Raster>> = vec![None; plans.len()];
    let mut smallest_frame = None;
    for step in geometry::schedule(src_w, src_h, base_scale, &plans) {
        let from = match step.from {
            Source::Base => base,
            Source::Rendition(f) => out[f].as_ref().ok_or_else(|| ResizeError::new("cascade source not made yet"))?,
        };
        out[step.rendition] = Some(resize::resize_raster(from, &step.plan, mirrored)?);
        if geometry::is_frame(&plans[step.rendition], src_w, src_h) {
            smallest_frame = Some(step.rendition);
        }
    }
    Ok(Made { renditions: out.into_iter().flatten().collect(), smallest_frame, focus, faces: faces.map(|(_, n)| n) })
}

/// A box in the stored source's pixels: left, top, width, height.
type SourceBox = (u32, u32, u32, u32);

/// The box the `face` crops of `preset` centre on, for a `size` source (stored orientation) that `base`
/// holds, possibly box-shrunk, in the source's pixels, and how many faces [`face::detect_closer`] found
/// on an upright copy at most [`face::SIDE`] a side (looking again on a copy twice that when the
/// first look is unsure; the copy is made from `base`, so a source decoded small, as a JPEG is for a
/// preset of small renditions only, may be too small for a second look, and keeps the first's
/// faces). `None` for the box when it found none.
fn face_region(
    base: &Raster,
    size: (u32, u32),
    preset: &Preset,
    orientation: u8,
) -> Result<(Option<SourceBox>, u32), ResizeError> {
    // An upright copy at most `side` a side.
    let copy = |side| {
        let plan = geometry::plan(base.width(), base.height(), side, side, Fit::Inside);
        Ok(orient::apply(resize::resize_raster(base, &plan, (false, false))?.into_pixels(), orientation))
    };
    let small = copy(face::SIDE)?;
    // A second look reads a copy twice as large, made only then.
    let mut failed = None;
    let faces = face::detect_closer(&small, || copy(face::SIDE * 2).map_err(|e| failed = Some(e)).ok());
    if let Some(e) = failed {
        return Err(e);
    }
    let upright = if exif::transposes(orientation) { (size.1, size.0) } else { size };
    let (sx, sy) = (f64::from(upright.0) / f64::from(small.width), f64::from(upright.1) / f64::from(small.height));
    let rects: Vec<face::Rect> = faces
        .iter()
        .map(|f| (f64::from(f.left) * sx, f64::from(f.top) * sy, f64::from(f.width) * sx, f64::from(f.height) * sy))
        .collect();
    // The crops the face renditions cut, in the upright source's pixels (where they sit does not matter).
    let crops: Vec<(f64, f64)> = preset
        .renditions
        .iter()
        .filter(|r| r.fit == Fit::Cover && r.crop == CropMode::Face)
        .map(|r| {
            let (_, _, w, h) = geometry::plan(upright.0, upright.1, r.width, r.height, Fit::Cover).region();
            (w, h)
        })
        .collect();
    let focus = face::focus(&rects, f64::from(upright.0), &crops).map(|(l, t, w, h)| {
        // Rounded outwards, within the image.
        let (left, top) = ((l.floor() as u32).min(upright.0 - 1), (t.floor() as u32).min(upright.1 - 1));
        let right = ((l + w).ceil() as u32).clamp(left + 1, upright.0);
        let bottom = ((t + h).ceil() as u32).clamp(top + 1, upright.1);
        orient::stored_box((left, top, right - left, bottom - top), size, orientation)
    });
    Ok((focus, u32::try_from(faces.len()).unwrap_or(u32::MAX)))
}

/// The salient region of a `size` source (stored orientation) that `base` holds, possibly box-shrunk, in
/// the source's pixels ([`attention`], on a copy at most [`attention::SIDE`] a side).
fn salient_region(base: &Raster, size: (u32, u32)) -> Result<Option<(u32, u32, u32, u32)>, ResizeError> {
    let side = attention::SIDE;
    let plan = geometry::plan(base.width(), base.height(), side, side, Fit::Inside);
    let small = resize::resize_raster(base, &plan, (false, false))?.into_pixels();
    Ok(attention::salient_region(&small).map(|r| {
        // The small copy spans the whole source: scale out, rounding outwards, within the source.
        let scale = |v: u32, small: u32, full: u32| f64::from(v) * f64::from(full) / f64::from(small);
        let (l, t) =
            (scale(r.left, small.width, size.0).floor() as u32, scale(r.top, small.height, size.1).floor() as u32);
        let r_ = (scale(r.left + r.width, small.width, size.0).ceil() as u32).clamp(l + 1, size.0);
        let b_ = (scale(r.top + r.height, small.height, size.1).ceil() as u32).clamp(t + 1, size.1);
        (l, t, r_ - l, b_ - t)
    }))
}

/// The longest side of the image the ThumbHash is computed from. A ThumbHash keeps at most 7
/// cosine terms per side, which 32 pixels hold with room to spare (ThumbHash accepts up to 100);
/// its sums take a pixel at a time, so 32 instead of 100 makes them ten times cheaper
/// (docs/performance.md).
const PLACEHOLDER_SIDE: u32 = 32;

/// ThumbHash of an image at most [`PLACEHOLDER_SIDE`] on each side, base64.
fn placeholder(thumb: &Pixels) -> String {
    use base64::Engine as _;
    let hash = thumbhash::rgba_to_thumb_hash(thumb.width as usize, thumb.height as usize, &thumb.to_rgba());
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Measures successive laps in milliseconds.
struct Clock(Instant);

impl Clock {
    fn start() -> Self {
        Self(Instant::now())
    }

    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let ms = (now - self.0).as_secs_f64() * 1000.0;
        self.0 = now;
        ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_failure_is_imgfleets_bug_not_the_uploads() {
        let bug = RenderError::from(ResizeError::new("crop box out of the image"));
        assert_eq!(bug.kind(), ErrorKind::Internal);
        assert_eq!(bug.kind().class(), imgfleet_shared::ErrorClass::Internal);
        let bad_input = RenderError::from(SniffError::Empty);
        assert_eq!(bad_input.kind().class(), imgfleet_shared::ErrorClass::Reject);
    }
}
