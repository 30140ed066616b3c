//! The conformance tests' rendition check: a `large` rendition against a reference decoder's rendition of
//! the same file.
//!
//! The reference rendition is the reference decoder's pixels at the `large` size (the suites' files need no
//! resize, except where a fixture ships the reference already resized). Both sides are flattened onto white,
//! as imgfleet's JPEG is. The score is PSNR on luma plus 2×2-averaged chroma (BT.601 full range, the
//! samples weighted 4:1:1 as in a 4:2:0 image), since both files are 4:2:0. What "good enough" means is set by
//! the reference's own encoder: libjpeg-turbo (JPEG) or libwebp (WebP), the libraries Pillow, libvips and
//! sharp call, at the preset's quality, encoding the reference rendition itself. imgfleet's file may score
//! at most [`MARGIN_DB`] below that, the reference's score capped at [`CAP_DB`] (beyond it, a few dB are
//! invisible and a flat image would demand infinity).

use imgfleet_shared::{ImageFormat, OutputSpec};
use imgfleet_worker::pipeline::Rendered;
use imgfleet_worker::pipeline::encode::encode;
use imgfleet_worker::pipeline::pixels::{Pixels, Raster};

pub const MARGIN_DB: f64 = 3.0;
pub const CAP_DB: f64 = 50.0;

/// One output's scores: imgfleet's file and the reference encoder's, in dB.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub format: ImageFormat,
    pub ours: f64,
    pub reference: f64,
}

impl Score {
    /// imgfleet's score less the reference's, both capped at [`CAP_DB`].
    pub fn margin(&self) -> f64 {
        self.ours.min(CAP_DB) - self.reference.min(CAP_DB)
    }

    pub fn passes(&self) -> bool {
        self.margin() >= -MARGIN_DB
    }
}

/// RGB or RGBA pixels as RGB on white, the way imgfleet's JPEG encoder flattens them.
pub fn on_white(data: &[u8], channels: usize) -> Vec<u8> {
    match channels {
        3 => data.to_vec(),
        4 => {
            let mix = |c: u8, a: u8| ((u32::from(c) * u32::from(a) + 255 * (255 - u32::from(a)) + 127) / 255) as u8;
            data.chunks_exact(4).flat_map(|p| [mix(p[0], p[3]), mix(p[1], p[3]), mix(p[2], p[3])]).collect()
        }
        n => panic!("{n} channels"),
    }
}

/// Decodes an encoded rendition to RGB on white.
fn decode_rgb(format: ImageFormat, data: &[u8]) -> (u32, u32, Vec<u8>) {
    match format {
        ImageFormat::Jpeg => super::decode_jpeg(data),
        ImageFormat::Webp => {
            let (w, h, channels, px) = super::decode_webp(data);
            (w, h, on_white(&px, usize::from(channels)))
        }
        other => panic!("no decoder for {other:?} renditions"),
    }
}

/// Scores every output of the rendition `name` against `reference` (RGB or RGBA at the rendition's size).
/// Errs when the sizes differ.
pub fn score(rendered: &Rendered, name: &str, reference: &Pixels, specs: &[OutputSpec]) -> Result<Vec<Score>, String> {
    let want = on_white(&reference.data, usize::from(reference.channels));
    let (w, h) = (reference.width, reference.height);
    let mut scores = Vec::new();
    for out in rendered.outputs.iter().filter(|o| o.name == name) {
        if (out.width, out.height) != (w, h) {
            return Err(format!("{name} {:?} is {}x{}, the reference {w}x{h}", out.format, out.width, out.height));
        }
        let (dw, dh, ours) = decode_rgb(out.format, &out.data);
        assert_eq!((dw, dh), (w, h), "{name} {:?} decodes at its stated size", out.format);
        let spec = specs.iter().find(|s| s.format == out.format).expect("the preset's spec of this output");
        let theirs = encode(&Raster::Pixels(reference.clone()), spec, [255, 255, 255]).map_err(|e| e.to_string())?;
        let (_, _, theirs) = decode_rgb(out.format, &theirs);
        scores.push(Score {
            format: out.format,
            ours: super::psnr_420(&ours, &want, w, h),
            reference: super::psnr_420(&theirs, &want, w, h),
        });
    }
    if scores.is_empty() {
        return Err(format!("no {name} rendition"));
    }
    Ok(scores)
}

/// [`score`], with a line in `failures` for each output that fails (or for the error): the scores made.
pub fn judge(
    file: &str,
    rendered: &Rendered,
    name: &str,
    reference: &Pixels,
    specs: &[OutputSpec],
    failures: &mut Vec<String>,
) -> Vec<Score> {
    match score(rendered, name, reference, specs) {
        Ok(scores) => {
            for s in scores.iter().filter(|s| !s.passes()) {
                failures.push(format!(
                    "{file}: {name} {:?} {:.2} dB, the reference encoder {:.2} dB",
                    s.format, s.ours, s.reference
                ));
            }
            scores
        }
        Err(e) => {
            failures.push(format!("{file}: {e}"));
            Vec::new()
        }
    }
}
