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

/// PSNR of luma plus 2×2-averaged chroma between two RGB images of `w`×`h` (a partial block at the right or
/// bottom edge averages the samples it has).
pub fn psnr_420(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    assert_eq!(a.len(), w * h * 3);
    assert_eq!(b.len(), w * h * 3);
    let ycc = |p: &[u8]| {
        let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            -0.168_736 * r - 0.331_264 * g + 0.5 * b,
            0.5 * r - 0.418_688 * g - 0.081_312 * b,
        ]
    };
    let (mut luma, mut chroma) = (0.0, 0.0);
    let (mut luma_n, mut chroma_n) = (0usize, 0usize);
    for by in (0..h).step_by(2) {
        for bx in (0..w).step_by(2) {
            let (mut ca, mut cb, mut n) = ([0.0; 2], [0.0; 2], 0.0);
            for y in by..(by + 2).min(h) {
                for x in bx..(bx + 2).min(w) {
                    let i = (y * w + x) * 3;
                    let (pa, pb) = (ycc(&a[i..i + 3]), ycc(&b[i..i + 3]));
                    luma += (pa[0] - pb[0]).powi(2);
                    luma_n += 1;
                    for c in 0..2 {
                        ca[c] += pa[c + 1];
                        cb[c] += pb[c + 1];
                    }
                    n += 1.0;
                }
            }
            chroma += (0..2).map(|c| ((ca[c] - cb[c]) / n).powi(2)).sum::<f64>();
            chroma_n += 2;
        }
    }
    // Per 2×2 block: four luma samples and two chroma samples, each counted once.
    let mse = (luma + chroma) / (luma_n + chroma_n) as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0 * 255.0 / mse).log10() }
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
            ours: psnr_420(&ours, &want, w as usize, h as usize),
            reference: psnr_420(&theirs, &want, w as usize, h as usize),
        });
    }
    if scores.is_empty() {
        return Err(format!("no {name} rendition"));
    }
    Ok(scores)
}
