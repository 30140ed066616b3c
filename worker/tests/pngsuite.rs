//! Conformance: Willem van Schaik's PngSuite (fixtures/pngsuite, sources and licence in SOURCES.md). The
//! expected outcome is the suite's own: a file whose name starts with `x` is invalid and must be refused,
//! every other one decodes. A valid file's pixels must equal a reference decoder's (Pillow, cross-checked
//! with pypng; 16 bits reduced to their high byte, palette expanded, tRNS as alpha, gAMA/cHRM/sBIT/bKGD not
//! applied), read from the atlas `reference.png` at the cell `expected.tsv` gives; a valid file then renders,
//! and its `large` rendition (the size of the file: none is larger than the box) scores within a few dB of
//! what the reference's own encoder makes of those pixels (common::rendition_check).

mod common;

use common::rendition_check;
use imgfleet_shared::{ImageFormat, Limits, Preset};
use imgfleet_worker::pipeline::decode::{DecodeError, decode};
use imgfleet_worker::pipeline::pixels::{ColourModel, Decoded, Pixels};
use imgfleet_worker::pipeline::{RenderOptions, render};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pngsuite");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The decoded image as 8-bit RGBA, whatever its colour model.
fn rgba(d: Decoded) -> Vec<u8> {
    let model = d.model;
    let p = d.raster.into_pixels();
    p.data
        .chunks_exact(usize::from(p.channels))
        .flat_map(|c| match (model, c.len()) {
            (ColourModel::Gray, 1) => [c[0], c[0], c[0], 255],
            (ColourModel::GrayAlpha, 2) => [c[0], c[0], c[0], c[1]],
            (ColourModel::Rgb, 3) => [c[0], c[1], c[2], 255],
            (ColourModel::Rgba, 4) => [c[0], c[1], c[2], c[3]],
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

struct Row {
    file: String,
    valid: bool,
    description: String,
    width: u32,
    height: u32,
    x: u32,
    y: u32,
}

fn rows() -> Vec<Row> {
    let tsv = String::from_utf8(read("expected.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let n = |i: usize| f[i].parse::<u32>().unwrap_or(0);
            Row {
                file: f[0].into(),
                valid: f[1] == "valid",
                description: f[2].into(),
                width: n(3),
                height: n(4),
                x: n(6),
                y: n(7),
            }
        })
        .collect()
}

#[test]
fn pngsuite_decodes_as_its_documentation_and_a_reference_decoder_say() {
    let rows = rows();
    assert_eq!(rows.len(), 176, "the suite's 175 images and its logo");
    assert_eq!(rows.iter().filter(|r| !r.valid).count(), 14);
    let atlas = Atlas::load();
    let limits = Limits::default();
    let mut failures = Vec::new();
    for r in &rows {
        let bytes = read(&format!("files/{}", r.file));
        let result = decode(&bytes, ImageFormat::Png, &limits);
        match (r.valid, result) {
            (true, Ok(d)) => {
                if (d.width, d.height) != (r.width, r.height) {
                    failures.push(format!(
                        "{} ({}): {}x{}, want {}x{}",
                        r.file, r.description, d.width, d.height, r.width, r.height
                    ));
                    continue;
                }
                let ours = rgba(d);
                let want = atlas.cell(r).data;
                if ours != want {
                    let db = common::psnr(&ours, &want);
                    failures.push(format!("{} ({}): differs from the reference, {db:.1} dB", r.file, r.description));
                }
            }
            (true, Err(e)) => failures.push(format!("{} ({}): refused: {e}", r.file, r.description)),
            (false, Ok(_)) => {
                failures.push(format!("{} ({}): decoded, but the suite says it is invalid", r.file, r.description))
            }
            (false, Err(e)) => {
                if !matches!(e, DecodeError::Corrupt { .. } | DecodeError::Unsupported { .. }) {
                    failures.push(format!("{} ({}): refused as {e}", r.file, r.description));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} files:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

/// The reference decoder's pixels of every valid file, 8-bit RGBA.
struct Atlas {
    width: usize,
    rgba: Vec<u8>,
}

impl Atlas {
    fn load() -> Self {
        let (width, _, channels, rgba) = common::decode_rgb_png(&read("reference.png"));
        assert_eq!(channels, 4);
        Self { width: width as usize, rgba }
    }

    fn cell(&self, r: &Row) -> Pixels {
        let data = (0..r.height as usize)
            .flat_map(|y| {
                let at = ((r.y as usize + y) * self.width + r.x as usize) * 4;
                self.rgba[at..at + r.width as usize * 4].iter().copied()
            })
            .collect();
        Pixels::new(r.width, r.height, 4, data)
    }
}

#[test]
fn every_valid_pngsuite_file_renders_as_the_reference_decoder_would() {
    let preset = Preset::default_profile();
    let large = preset.renditions.iter().find(|r| r.name == "large").unwrap();
    let atlas = Atlas::load();
    let mut failures = Vec::new();
    let mut closest: Option<(String, rendition_check::Score)> = None;
    for r in rows().iter().filter(|r| r.valid) {
        let bytes = read(&format!("files/{}", r.file));
        let rendered = render(&bytes, &preset, &RenderOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", r.file));
        assert_eq!(rendered.outputs.len(), 6, "{}", r.file);
        for s in rendition_check::judge(&r.file, &rendered, "large", &atlas.cell(r), &large.formats, &mut failures) {
            if closest.as_ref().is_none_or(|(_, c)| s.margin() < c.margin()) {
                closest = Some((r.file.clone(), s));
            }
        }
    }
    if let Some((file, s)) = closest {
        eprintln!(
            "pngsuite: closest {file} {:?} {:.2} dB vs the reference encoder's {:.2} dB",
            s.format, s.ours, s.reference
        );
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
