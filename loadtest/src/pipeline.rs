//! `imgfleet-loadtest pipeline`: the rendition job in-process over a folder, measured the way the
//! peer benchmark (`shared/bench/peers/bench.py`) measures pyvips, sharp and Pillow.
//!
//! Files are read into memory first. One untimed warm-up pass renders every image once (it also
//! gives the output bytes per image and sets rejected files aside), then `iterations` timed passes
//! run on `threads` threads, each taking the next image, like `imgfleet process --jobs N`.
//! Reported: images/s, MP/s, per-image latency, the share of each pipeline stage (from
//! `RenderResult.timings`), CPU time, peak RSS (`VmHWM`) and the mean output bytes per image by
//! format, summed over its renditions (the peers' table columns).

use crate::inputs::{self, Image};
use crate::report;
use crate::stats::Summary;
use imgfleet_shared::{ImageFormat, Preset, PresetCatalog, RenderResult};
use imgfleet_worker::pipeline::{self, RenderOptions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct PipelineArgs {
    pub input: PathBuf,
    pub glob: String,
    pub threads: usize,
    pub iterations: usize,
    pub preset: Option<PathBuf>,
}

/// One stage's part of the pipeline time.
#[derive(Debug, Clone, Serialize)]
pub struct StageShare {
    pub stage: &'static str,
    /// Mean milliseconds per image.
    pub mean_ms: f64,
    /// Fraction of the summed stage times.
    pub share: f64,
}

/// The result, as written by `--json` (field names follow the peer benchmark's JSON lines).
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    pub peer: &'static str,
    pub preset: String,
    pub input: PathBuf,
    pub glob: String,
    /// Files rendered per pass, and those set aside because the warm-up pass rejected them.
    pub files: usize,
    pub rejected: Vec<String>,
    pub workers: usize,
    pub reps: usize,
    /// Timed renders (files × passes).
    pub images: usize,
    pub wall_s: f64,
    pub images_per_s: f64,
    pub images_per_s_per_thread: f64,
    pub megapixels_per_s: f64,
    /// User + system CPU time of the timed passes, and images per CPU-second (≈ per core).
    pub cpu_s: f64,
    pub images_per_cpu_s: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub latency_ms: Summary,
    pub stages: Vec<StageShare>,
    /// Peak resident set size of the whole process (`VmHWM`), in MB; includes the files held in memory.
    pub rss_mb: f64,
    pub input_mb: f64,
    pub source_megapixels: f64,
    pub jpeg_bytes_per_image: u64,
    pub webp_bytes_per_image: u64,
    /// Mean bytes per image of each rendition and format, e.g. `"thumb jpeg"`.
    pub rendition_bytes: BTreeMap<String, u64>,
}

/// Runs the warm-up and timed passes.
pub fn run(args: &PipelineArgs) -> anyhow::Result<PipelineReport> {
    anyhow::ensure!(args.threads >= 1, "--threads must be at least 1");
    anyhow::ensure!(args.iterations >= 1, "--iterations must be at least 1");
    // The allocator as `imgfleet process` sets it: this benchmarks the same in-process job.
    imgfleet_worker::ops::memory::keep_freed_memory();
    let (preset, options) = load_preset(args.preset.as_deref())?;
    let mut images = inputs::load(&args.input, &args.glob)?;
    let input_mb = images.iter().map(|i| i.bytes.len()).sum::<usize>() as f64 / 1e6;

    let warm = warm_up(&images, args.threads, &preset, &options);
    let rejected: Vec<String> = warm.iter().filter_map(|w| w.as_ref().err().cloned()).collect();
    let keep: Vec<bool> = warm.iter().map(Result::is_ok).collect();
    let results: Vec<RenderResult> = warm.into_iter().filter_map(Result::ok).collect();
    let mut kept = keep.iter();
    images.retain(|_| kept.next().copied().unwrap_or(false));
    anyhow::ensure!(!images.is_empty(), "every input was rejected: {rejected:?}");

    let work: Vec<usize> = (0..args.iterations).flat_map(|_| 0..images.len()).collect();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let timed = timed_passes(&images, &work, args.threads, &preset, &options)?;
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds().zip(cpu_before).map_or(0.0, |(after, before)| after - before);

    let source_megapixels: f64 =
        results.iter().map(|r| f64::from(r.source.width) * f64::from(r.source.height) / 1e6).sum();
    let latency = Summary::of(timed.iter().map(|t| t.ms));
    let (jpeg, webp, rendition_bytes) = output_bytes(&results);
    let images_done = work.len();
    Ok(PipelineReport {
        peer: "imgfleet",
        preset: preset.name.clone(),
        input: args.input.clone(),
        glob: args.glob.clone(),
        files: images.len(),
        rejected,
        workers: args.threads,
        reps: args.iterations,
        images: images_done,
        wall_s,
        images_per_s: images_done as f64 / wall_s.max(1e-9),
        images_per_s_per_thread: images_done as f64 / wall_s.max(1e-9) / args.threads as f64,
        megapixels_per_s: source_megapixels * args.iterations as f64 / wall_s.max(1e-9),
        cpu_s,
        images_per_cpu_s: if cpu_s > 0.0 { images_done as f64 / cpu_s } else { 0.0 },
        median_ms: latency.p50,
        p90_ms: latency.p90,
        latency_ms: latency,
        stages: stage_shares(&timed),
        rss_mb: peak_rss_kb().map_or(0.0, |kb| kb as f64 / 1024.0),
        input_mb,
        source_megapixels,
        jpeg_bytes_per_image: jpeg,
        webp_bytes_per_image: webp,
        rendition_bytes,
    })
}

fn load_preset(path: Option<&Path>) -> anyhow::Result<(Preset, RenderOptions)> {
    let catalog = PresetCatalog::load(path)?;
    let options = RenderOptions { limits: catalog.limits, background: catalog.background };
    Ok((catalog.default_preset().clone(), options))
}

/// Renders each image once on the same number of threads as the timed passes (so the allocator
/// sees the same pattern and peak RSS compares with the peers'); a rejected one becomes
/// `"name: kind: message"`.
fn warm_up(
    images: &[Image],
    threads: usize,
    preset: &Preset,
    options: &RenderOptions,
) -> Vec<Result<RenderResult, String>> {
    let work: Vec<usize> = (0..images.len()).collect();
    let mut out: Vec<Option<Result<RenderResult, String>>> = vec![None; images.len()];
    on_threads(&work, threads, "warm-up", |i| {
        let img = &images[i];
        pipeline::render(&img.bytes, preset, options)
            .map(|r| r.result)
            .map_err(|e| format!("{}: {}: {e}", img.name, e.kind()))
    })
    .into_iter()
    .for_each(|(i, r)| out[i] = Some(r));
    out.into_iter().flatten().collect()
}

/// One timed render.
#[derive(Debug, Clone, Copy)]
struct Timed {
    ms: f64,
    stages: [(&'static str, f64); 5],
}

/// Renders `work` (indices into `images`) on `threads` threads; returns each render's time.
fn timed_passes(
    images: &[Image],
    work: &[usize],
    threads: usize,
    preset: &Preset,
    options: &RenderOptions,
) -> anyhow::Result<Vec<Timed>> {
    let mut timed = Vec::with_capacity(work.len());
    for (_, msg) in on_threads(work, threads, "timed", |i| {
        let img = &images[i];
        let t = Instant::now();
        let result = pipeline::render(&img.bytes, preset, options);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        result.map(|r| Timed { ms, stages: r.result.timings.stages() }).map_err(|e| format!("{}: {e}", img.name))
    }) {
        // The warm-up pass rendered the same bytes: a failure now is a bug worth stopping for.
        timed.push(msg.map_err(|e| anyhow::anyhow!("a render that succeeded in the warm-up pass failed: {e}"))?);
    }
    Ok(timed)
}

/// Runs `f` on every item of `work` from `threads` worker threads (each taking the next item),
/// with a progress bar; returns `(item, result)` in completion order.
fn on_threads<T: Send>(
    work: &[usize],
    threads: usize,
    label: &'static str,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<(usize, T)> {
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    let bar = report::bar(work.len() as u64, label);
    let mut out = Vec::with_capacity(work.len());
    std::thread::scope(|scope| {
        for _ in 0..threads.min(work.len()) {
            let (tx, next, f) = (tx.clone(), &next, &f);
            scope.spawn(move || {
                while let Some(&i) = work.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if tx.send((i, f(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for item in rx {
            out.push(item);
            bar.inc(1);
        }
    });
    bar.finish_and_clear();
    out
}

/// Mean time and share of each stage, largest share first.
fn stage_shares(timed: &[Timed]) -> Vec<StageShare> {
    let mut sums: Vec<(&'static str, f64)> = Vec::new();
    for t in timed {
        for (i, (name, ms)) in t.stages.iter().enumerate() {
            match sums.get_mut(i) {
                Some(s) => s.1 += ms,
                None => sums.push((name, *ms)),
            }
        }
    }
    let total: f64 = sums.iter().map(|s| s.1).sum();
    let n = timed.len().max(1) as f64;
    let mut shares: Vec<StageShare> = sums
        .into_iter()
        .map(|(stage, ms)| StageShare { stage, mean_ms: ms / n, share: if total > 0.0 { ms / total } else { 0.0 } })
        .collect();
    shares.sort_by(|a, b| b.share.total_cmp(&a.share));
    shares
}

/// Mean bytes per image of all JPEG and all WebP outputs, and per rendition and format.
fn output_bytes(results: &[RenderResult]) -> (u64, u64, BTreeMap<String, u64>) {
    let n = results.len().max(1) as u64;
    let mut by_format = [0u64; 2];
    let mut by_rendition: BTreeMap<String, u64> = BTreeMap::new();
    for r in results.iter().flat_map(|r| &r.renditions) {
        match r.format {
            ImageFormat::Jpeg => by_format[0] += r.bytes,
            ImageFormat::Webp => by_format[1] += r.bytes,
            ImageFormat::Png | ImageFormat::Gif | ImageFormat::Heic | ImageFormat::Avif => {}
        }
        *by_rendition.entry(format!("{} {}", r.name, r.format)).or_default() += r.bytes;
    }
    by_rendition.values_mut().for_each(|v| *v /= n);
    (by_format[0] / n, by_format[1] / n, by_rendition)
}

/// Peak resident set size of this process in kB (`VmHWM` in `/proc/self/status`).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds of this process so far, from `/proc/self/stat`. Linux reports them
/// in USER_HZ ticks, which is 100 on every architecture Rust targets.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

impl PipelineReport {
    /// The terminal table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "imgfleet pipeline: {} files ({:.1} MP, {:.1} MB) from {} matching {:?}, preset {}, {} timed pass(es) on {} thread(s)\n",
            self.files,
            self.source_megapixels,
            self.input_mb,
            self.input.display(),
            self.glob,
            self.preset,
            self.reps,
            self.workers
        );
        for r in &self.rejected {
            out += &format!("  rejected (not timed): {r}\n");
        }
        let rows = [
            (
                "images/s",
                format!(
                    "{:.2}  ({:.2} per thread, {:.2} per CPU-second)",
                    self.images_per_s, self.images_per_s_per_thread, self.images_per_cpu_s
                ),
            ),
            ("megapixels/s", format!("{:.1}", self.megapixels_per_s)),
            (
                "ms/image",
                format!("median {:.1}  p90 {:.1}  max {:.1}", self.median_ms, self.p90_ms, self.latency_ms.max),
            ),
            ("wall / CPU", format!("{:.2} s / {:.2} s for {} renders", self.wall_s, self.cpu_s, self.images)),
            (
                "peak RSS",
                format!("{:.0} MB (VmHWM, with {:.1} MB of input held in memory)", self.rss_mb, self.input_mb),
            ),
            (
                "bytes/image",
                format!(
                    "JPEG {}  WebP {}  (mean per input, summed over its renditions)",
                    self.jpeg_bytes_per_image, self.webp_bytes_per_image
                ),
            ),
            (
                "stage share",
                self.stages
                    .iter()
                    .map(|s| format!("{} {:.1}% ({:.1} ms)", s.stage, s.share * 100.0, s.mean_ms))
                    .collect::<Vec<_>>()
                    .join("  "),
            ),
        ];
        out += &report::rows(&rows);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_shares_add_up() {
        let t = |d, r, e| Timed {
            ms: d + r + e,
            stages: [("sniff", 0.0), ("decode", d), ("orient", 0.0), ("resize", r), ("encode", e)],
        };
        let shares = stage_shares(&[t(60.0, 20.0, 20.0), t(40.0, 20.0, 40.0)]);
        assert_eq!(shares[0].stage, "decode");
        assert!((shares[0].share - 0.5).abs() < 1e-9);
        assert!((shares[0].mean_ms - 50.0).abs() < 1e-9);
        assert!((shares.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn proc_readers_work_on_linux() {
        assert!(peak_rss_kb().is_some_and(|kb| kb > 0));
        assert!(cpu_seconds().is_some());
    }

    #[test]
    fn renders_a_generated_sample() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jpg"), imgfleet_worker::commands::demo::sample_jpeg(320, 240, 1, 1)).unwrap();
        std::fs::write(dir.path().join("b.jpg"), b"not an image").unwrap();
        std::fs::write(dir.path().join("c.png"), b"skipped by the pattern").unwrap();
        let args = PipelineArgs {
            input: dir.path().to_owned(),
            glob: "*.jpg".into(),
            threads: 2,
            iterations: 2,
            preset: None,
        };
        let report = run(&args).unwrap();
        assert_eq!((report.files, report.images, report.rejected.len()), (1, 2, 1));
        assert!(report.jpeg_bytes_per_image > 0 && report.webp_bytes_per_image > 0);
        assert_eq!(report.rendition_bytes.len(), 6);
        assert!(report.table().contains("images/s"));
    }
}
