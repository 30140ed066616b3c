//! Criterion benches of each pipeline stage and of the whole 6-output job, on generated 1, 3 and
//! 12 MP photo-like JPEGs: `cargo bench -p imgfleet-worker`.
//! Side-by-side figures against other libraries on real photos come from the loadtest binary.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use imgfleet_shared::{CropMode, Fit, ImageFormat, Limits, Preset};
use imgfleet_worker::commands::demo::sample_jpeg;
use imgfleet_worker::pipeline::{self, RenderOptions, colour, decode, encode, orient, sniff};
use std::hint::black_box;

const SIZES: [(&str, u32, u32); 3] = [("1MP", 1152, 864), ("3MP", 2048, 1536), ("12MP", 4032, 3024)];

fn stages(c: &mut Criterion) {
    let preset = Preset::default_profile();
    let limits = Limits::default();
    for (label, w, h) in SIZES {
        let jpeg = sample_jpeg(w, h, 7, 6);
        let mut g = c.benchmark_group(format!("stages/{label}"));
        g.sample_size(10);
        g.bench_function("sniff", |b| b.iter(|| sniff::sniff(black_box(&jpeg))));
        g.bench_function("decode", |b| {
            b.iter(|| colour::prepare(decode::decode(black_box(&jpeg), ImageFormat::Jpeg, &limits).unwrap()))
        });
        let (source, _) = colour::prepare(decode::decode(&jpeg, ImageFormat::Jpeg, &limits).unwrap());
        g.bench_function("resize (3 renditions)", |b| {
            b.iter(|| pipeline::resize_all(black_box(&source), &preset, 6).unwrap())
        });
        // The same with thumb and medium cropped by attention: the difference is what finding the salient
        // region (a 128 px copy of the shrunk source and its saliency) costs.
        let mut attention = preset.clone();
        for r in attention.renditions.iter_mut().filter(|r| r.fit == Fit::Cover) {
            r.crop = CropMode::Attention;
        }
        g.bench_function("resize (3 renditions, attention crops)", |b| {
            b.iter(|| pipeline::resize_all(black_box(&source), &attention, 6).unwrap())
        });
        // And by face: a 160 px upright copy through the face detector; these synthetic scenes have no
        // face, so the crops then fall back to attention (the most a face crop costs).
        let mut face = preset.clone();
        for r in face.renditions.iter_mut().filter(|r| r.fit == Fit::Cover) {
            r.crop = CropMode::Face;
        }
        g.bench_function("resize (3 renditions, face crops)", |b| {
            b.iter(|| pipeline::resize_all(black_box(&source), &face, 6).unwrap())
        });
        let made = pipeline::resize_all(&source, &preset, 6).unwrap();
        g.bench_function("orient (3 renditions)", |b| {
            b.iter(|| made.renditions.iter().map(|p| orient::apply_raster(p.clone(), 6).width()).sum::<u32>())
        });
        let upright: Vec<_> = made.renditions.iter().map(|p| orient::apply_raster(p.clone(), 6)).collect();
        for spec in &preset.renditions[0].formats {
            g.bench_function(BenchmarkId::new("encode (3 renditions)", spec.format), |b| {
                b.iter(|| upright.iter().map(|p| encode::encode(p, spec, [255; 3]).unwrap().len()).sum::<usize>())
            });
        }
        g.finish();
    }
}

fn whole_job(c: &mut Criterion) {
    let preset = Preset::default_profile();
    let options = RenderOptions::default();
    let mut g = c.benchmark_group("render (6 outputs)");
    g.sample_size(10);
    for (label, w, h) in SIZES {
        let jpeg = sample_jpeg(w, h, 7, 1);
        g.throughput(Throughput::Elements(1));
        g.bench_function(label, |b| b.iter(|| pipeline::render(black_box(&jpeg), &preset, &options).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, stages, whole_job);
criterion_main!(benches);
