//! Conformance over public decoder test suites (fixtures/conformance/*; each folder's SOURCES.md names the
//! source, commit and licence of every file, and its make_fixtures script rebuilds it):
//!
//! - `jpeg/`: libjpeg-turbo's test images and the outputs of its own `cjpeg` test commands (MD5-checked
//!   against the suite's CMakeLists.txt), with djpeg's decode of each valid file as the reference;
//! - `webp/`: libwebp's test vectors, whose expected decode is the suite's own MD5 of dwebp's output (PAM for
//!   an image with alpha, PPM without), and Pillow's resize of it for the few larger than the `large` box;
//! - `exif/`: the EXIF orientation examples (recurser/exif-orientation-examples), all eight orientations;
//! - `gif/`: still, interlaced, transparent and animated GIFs, Pillow's first frame on its canvas as reference.
//!
//! (PngSuite is in pngsuite.rs, HEIF/AVIF in heif.rs.) The expected outcome of every file comes from its
//! suite's documentation: valid files render, the others are refused with the kind the suite implies
//! (arithmetic-coded and 12-bit JPEG are `unsupported`, as the README says). For every valid file the `large`
//! rendition, JPEG and WebP, is compared with the reference decoder's rendition of the same file
//! (common::rendition_check: PSNR of luma plus 2×2 chroma, at most 3 dB below what the reference's own
//! encoder reaches).

mod common;

use common::rendition_check::{self, Score};
use imgfleet_shared::{ErrorKind, Preset};
use imgfleet_worker::pipeline::decode::decode;
use imgfleet_worker::pipeline::pixels::Pixels;
use imgfleet_worker::pipeline::{RenderOptions, Rendered, render};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::path::PathBuf;

fn dir(suite: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conformance")).join(suite)
}

fn read(suite: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(suite).join(file)).unwrap_or_else(|e| panic!("{suite}/{file}: {e}"))
}

/// A suite's `expected.tsv`, each row by column name.
fn table(suite: &str) -> Vec<HashMap<String, String>> {
    let text = String::from_utf8(read(suite, "expected.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split('\t').collect();
    lines
        .map(|line| header.iter().zip(line.split('\t')).map(|(k, v)| ((*k).to_owned(), v.to_owned())).collect())
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Valid,
    Refused(ErrorKind),
}

fn expectation(s: &str) -> Expect {
    match s {
        "valid" => Expect::Valid,
        "corrupt" => Expect::Refused(ErrorKind::Corrupt),
        "unsupported" => Expect::Refused(ErrorKind::Unsupported),
        other => panic!("expectation {other:?}"),
    }
}

fn reference_png(suite: &str, file: &str) -> Pixels {
    let (w, h, channels, data) = common::decode_rgb_png(&read(suite, file));
    Pixels::new(w, h, channels, data)
}

/// What one suite came to: failures and the scores of the files that rendered.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    scores: Vec<(String, Score)>,
    rendered: usize,
    refused: usize,
}

impl Report {
    /// Renders `bytes` with the profile preset and checks the outcome; on success, the `upright` size, the
    /// number of `frames` when the suite gives it, and the `large` rendition against `reference` (called only
    /// then, so refused files need none).
    fn check(
        &mut self,
        file: &str,
        bytes: &[u8],
        expect: Expect,
        (upright, frames): ((u32, u32), Option<u32>),
        reference: impl FnOnce() -> Pixels,
    ) {
        let preset = Preset::default_profile();
        match (expect, render(bytes, &preset, &RenderOptions::default())) {
            (Expect::Valid, Ok(rendered)) => {
                self.rendered += 1;
                let s = &rendered.result.source;
                let size = if s.orientation >= 5 { (s.height, s.width) } else { (s.width, s.height) };
                if size != upright {
                    self.failures.push(format!("{file}: upright {size:?}, want {upright:?}"));
                    return;
                }
                if frames.is_some_and(|n| n != s.frames) {
                    self.failures.push(format!("{file}: {} frames, want {frames:?}", s.frames));
                }
                self.score(file, &rendered, &preset, &reference());
            }
            (Expect::Valid, Err(e)) => self.failures.push(format!("{file}: refused ({:?}): {e}", e.kind())),
            (Expect::Refused(kind), Ok(_)) => self.failures.push(format!("{file}: rendered, want {kind:?}")),
            (Expect::Refused(kind), Err(e)) => {
                self.refused += 1;
                if e.kind() != kind {
                    self.failures.push(format!("{file}: refused as {:?} ({e}), want {kind:?}", e.kind()));
                }
            }
        }
    }

    fn score(&mut self, file: &str, rendered: &Rendered, preset: &Preset, reference: &Pixels) {
        let large = preset.renditions.iter().find(|r| r.name == "large").expect("profile has large");
        for s in rendition_check::judge(file, rendered, "large", reference, &large.formats, &mut self.failures) {
            if std::env::var_os("IMGFLEET_CONFORMANCE_VERBOSE").is_some() {
                eprintln!("{file}: {:?} {:.2} dB, reference {:.2} dB", s.format, s.ours, s.reference);
            }
            self.scores.push((file.to_owned(), s));
        }
    }

    /// Fails with every failure; prints the closest call, so the margin is visible in the test output.
    fn finish(self, suite: &str, rendered: usize, refused: usize) {
        if let Some((file, s)) = self.scores.iter().min_by(|a, b| a.1.margin().total_cmp(&b.1.margin())) {
            eprintln!(
                "{suite}: {} rendered, {} refused; closest: {file} {:?} {:.2} dB vs the reference encoder's {:.2} dB",
                self.rendered, self.refused, s.format, s.ours, s.reference
            );
        }
        assert!(self.failures.is_empty(), "{suite}: {} failures:\n{}", self.failures.len(), self.failures.join("\n"));
        assert_eq!((self.rendered, self.refused), (rendered, refused), "{suite}: files rendered and refused");
    }
}

/// Runs a suite whose `expected.tsv` names a reference PNG (at the `large` rendition's size) per valid file.
fn run_table_suite(suite: &str, rendered: usize, refused: usize) {
    let mut report = Report::default();
    for row in table(suite) {
        let file = &row["file"];
        let upright = (row["width"].parse().unwrap(), row["height"].parse().unwrap());
        let frames = row.get("frames").map(|n| n.parse().unwrap());
        report.check(file, &read(suite, file), expectation(&row["expectation"]), (upright, frames), || {
            reference_png(suite, &row["reference"])
        });
    }
    report.finish(suite, rendered, refused);
}

#[test]
fn libjpeg_turbo_test_images() {
    run_table_suite("jpeg", 8, 4);
}

#[test]
fn exif_orientation_examples() {
    run_table_suite("exif", 18, 0);
}

#[test]
fn gif_samples() {
    let rows = table("gif");
    let refused = rows.iter().filter(|r| r["expectation"] != "valid").count();
    assert!(rows.len() >= 8, "the GIF set has {} files", rows.len());
    run_table_suite("gif", rows.len() - refused, refused);
}

/// `NAME.webp.pam` → MD5 of dwebp's PAM output, from the suite's lists.
fn webp_expected_md5s() -> HashMap<String, String> {
    ["libwebp_tests.md5", "lossless.md5"]
        .iter()
        .flat_map(|list| {
            String::from_utf8(read("webp", list))
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once("  ").map(|(md5, name)| (name.to_owned(), md5.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// What dwebp writes for an image decoded as imgfleet decoded it: `-pam` (header, RGBA) for an image with
/// alpha, `-ppm` (header, RGB) for one without; and the extension the suite's MD5 lists use for it.
fn dwebp_output(p: &Pixels) -> (Vec<u8>, &'static str) {
    let (w, h) = (p.width, p.height);
    match p.channels {
        4 => {
            let header = format!("P7\nWIDTH {w}\nHEIGHT {h}\nDEPTH 4\nMAXVAL 255\nTUPLTYPE RGB_ALPHA\nENDHDR\n");
            ([header.as_bytes(), &p.data].concat(), "pam")
        }
        3 => ([format!("P6\n{w} {h}\n255\n").as_bytes(), &p.data].concat(), "ppm"),
        n => panic!("{n} channels"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn libwebp_test_vectors() {
    let expected = webp_expected_md5s();
    let mut files: Vec<String> = std::fs::read_dir(dir("webp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".webp"))
        .collect();
    files.sort();
    let mut report = Report::default();
    let limits = RenderOptions::default().limits;
    for file in &files {
        let bytes = read("webp", file);
        // The suite's expectation: this exact decode. Then the rendition, against that decode, or against the
        // reference's resize of it when the file is larger than the box.
        let decoded = match decode(&bytes, imgfleet_shared::ImageFormat::Webp, &limits) {
            Ok(d) => d.raster.into_pixels(),
            Err(e) => {
                report.failures.push(format!("{file}: refused: {e}"));
                continue;
            }
        };
        let (output, ext) = dwebp_output(&decoded);
        let Some(want) = expected.get(&format!("{file}.{ext}")) else {
            report.failures.push(format!("{file}: the suite lists no expected {ext} output"));
            continue;
        };
        let got = hex(&Md5::digest(output));
        if &got != want {
            report.failures.push(format!("{file}: decodes to MD5 {got}, the suite's {ext} output is {want}"));
            continue;
        }
        let upright = (decoded.width, decoded.height);
        let resized = format!("{}.ref.png", file.trim_end_matches(".webp"));
        let reference = || if dir("webp").join(&resized).exists() { reference_png("webp", &resized) } else { decoded };
        report.check(file, &bytes, Expect::Valid, (upright, Some(1)), reference);
    }
    report.finish("webp", files.len(), 0);
}
