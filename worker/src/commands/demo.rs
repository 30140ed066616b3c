//! `imgfleet demo`: the whole flow with nothing installed. The same consumer, job runner and
//! pipeline as `imgfleet run`, on local adapters: uploads land in a folder, an in-process queue
//! receives the same S3 notification JSON the bucket would send, and events go to a JSON-lines file.

use crate::adapters::local::{DirStore, JsonlSink, LocalQueue};
use crate::fleet::service::{self, Adapters, StartError, Worker};
use imgfleet_shared::config::Config;
use jpeg_encoder::{ColorType, Encoder};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bucket the demo pretends to be.
pub const DEMO_BUCKET: &str = "demo-bucket";

/// What the demo works on.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// Everything is written under this folder.
    pub dir: PathBuf,
    /// Photos to upload; when empty, `count` sample photos are made.
    pub images: Vec<PathBuf>,
    pub count: usize,
    /// Jobs at once (default: all cores).
    pub concurrency: Option<usize>,
    /// No per-event lines on the terminal.
    pub quiet: bool,
    /// A preset TOML file (as `run`'s `IMGFLEET_PRESETS`); default: the built-in profile preset.
    pub presets: Option<PathBuf>,
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub uploads: usize,
    pub completed: u64,
    pub failed: u64,
    pub seconds: f64,
    pub source_megapixels: f64,
    pub renditions_dir: PathBuf,
    pub events_file: PathBuf,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("cannot write under {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("the demo did not finish within {0:?}")]
    Timeout(Duration),
}

/// A photo-like RGB test image (gradients, soft shapes, edges); `seed` varies it.
pub fn sample_rgb(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    let phase = seed as f32 * 0.7;
    for y in 0..h {
        for x in 0..w {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let wave = ((fx * 9.0 + phase).sin() * (fy * 7.0 - phase).cos() * 60.0) as i32;
            let edge = if (x / 37 + y / 29 + seed).is_multiple_of(5) { 40 } else { 0 };
            let px = [
                (fx * 200.0) as i32 + wave + edge,
                (fy * 180.0) as i32 - wave / 2 + 30,
                ((fx + fy) * 90.0) as i32 + edge + 20,
            ];
            out.extend(px.map(|v| v.clamp(0, 255) as u8));
        }
    }
    out
}

/// A sample JPEG, tagged with an EXIF orientation when `orientation` is not 1.
pub fn sample_jpeg(w: u32, h: u32, seed: u32, orientation: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out, 90);
    if orientation != 1 {
        let mut exif = b"Exif\0\0II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        exif.extend([orientation, 0, 0, 0, 0, 0, 0, 0]);
        let _ = e.add_app_segment(1, exif);
    }
    let _ = e.encode(&sample_rgb(w, h, seed), w as u16, h as u16, ColorType::Rgb);
    out
}

/// The sample uploads: photos of several shapes (one rotated by EXIF) and one file that is not an image.
fn samples(count: usize) -> Vec<(String, Vec<u8>)> {
    let shapes = [(2400, 1600, 1), (1600, 2400, 1), (2048, 1536, 6), (1200, 1200, 1), (3000, 2000, 1), (900, 1350, 1)];
    let mut out: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            let (w, h, o) = shapes[i % shapes.len()];
            (format!("uploads/demo/user {i}/photo.jpg"), sample_jpeg(w, h, i as u32, o))
        })
        .collect();
    out.push(("uploads/demo/not-a-photo.jpg".into(), b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>".to_vec()));
    out
}

/// Runs the demo to completion.
pub async fn run(request: &DemoRequest) -> Result<DemoReport, DemoError> {
    let io = |e| DemoError::Io(request.dir.clone(), e);
    std::fs::create_dir_all(&request.dir).map_err(io)?;
    let events_file = request.dir.join("events.jsonl");
    let _ = std::fs::remove_file(&events_file);
    let store = DirStore::new(request.dir.join("s3"));
    let events = JsonlSink::create(&events_file, request.quiet).map_err(io)?;
    let queue = Arc::new(LocalQueue::new());
    let uploads = match request.images.is_empty() {
        true => samples(request.count),
        false => user_images(&request.images).map_err(io)?,
    };
    upload_all(&store, &queue, &uploads).map_err(io)?;

    let config = Config {
        metrics_addr: ([127, 0, 0, 1], 0).into(),
        concurrency: request.concurrency,
        worker_id: Some("demo".into()),
        presets: request.presets.clone(),
        ..Config::default()
    };
    let mut settings = service::consumer_settings(&config, Duration::from_secs(1));
    settings.wait = Duration::from_millis(200);
    let started = Instant::now();
    let adapters = Adapters { queue: Arc::clone(&queue), store: store.clone(), events };
    let worker = Worker::new(&config, adapters).settings(settings).start().await?;
    let limit = Duration::from_secs(600);
    while !queue.is_idle() {
        if started.elapsed() > limit {
            worker.shutdown();
            return Err(DemoError::Timeout(limit));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let metrics = worker.metrics.clone();
    worker.shutdown();
    worker.wait().await;
    Ok(DemoReport {
        uploads: uploads.len(),
        completed: metrics.jobs.with_label_values(&["completed"]).get(),
        failed: metrics.jobs.with_label_values(&["failed"]).get(),
        seconds,
        source_megapixels: source_megapixels(&events_file),
        renditions_dir: store.path(DEMO_BUCKET, &config.output_prefix),
        events_file,
    })
}

/// Puts each upload in the local bucket and its S3 notification on the queue, after the
/// `s3:TestEvent` S3 sends when notifications are configured.
fn upload_all(store: &DirStore, queue: &LocalQueue, uploads: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    queue.send(format!(
        r#"{{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00.000Z","Bucket":"{DEMO_BUCKET}"}}"#
    ));
    for (key, body) in uploads {
        queue.send(store.upload_notified(DEMO_BUCKET, key, body)?);
    }
    Ok(())
}

/// The megapixels of every source an event in `events_file` reports.
fn source_megapixels(events_file: &Path) -> f64 {
    std::fs::read_to_string(events_file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<imgfleet_shared::event::Event>(l).ok())
        .map(|e| f64::from(e.source.width.unwrap_or(0)) * f64::from(e.source.height.unwrap_or(0)) / 1e6)
        .sum()
}

fn user_images(paths: &[PathBuf]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let files = crate::commands::process::collect_inputs(paths)?;
    files
        .iter()
        .map(|p| {
            let name = p.file_name().map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
            Ok((format!("uploads/demo/{name}"), std::fs::read(p)?))
        })
        .collect()
}

/// Where the demo puts things, relative to `dir`, for the closing message.
pub fn describe(report: &DemoReport, dir: &Path) -> String {
    let rel = |p: &Path| {
        p.strip_prefix(dir).map_or_else(|_| p.display().to_string(), |r| format!("{}/{}", dir.display(), r.display()))
    };
    format!(
        "{} uploads: {} completed, {} failed in {:.2} s ({:.1} images/s, {:.1} MP/s)\nrenditions: {}\nevents:     {}\n",
        report.uploads,
        report.completed,
        report.failed,
        report.seconds,
        report.completed as f64 / report.seconds.max(1e-9),
        report.source_megapixels / report.seconds.max(1e-9),
        rel(&report.renditions_dir),
        rel(&report.events_file),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgfleet_shared::event::{Event, EventType};

    fn events(report: &DemoReport) -> Vec<Event> {
        let text = std::fs::read_to_string(&report.events_file).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_runs_the_built_in_preset_or_a_preset_file() {
        let dir = tempfile::tempdir().unwrap();
        let request = |name: &str, presets| DemoRequest {
            dir: dir.path().join(name),
            images: vec![],
            count: 2,
            concurrency: Some(2),
            quiet: true,
            presets,
        };
        let built_in = run(&request("built-in", None)).await.unwrap();
        assert_eq!((built_in.uploads, built_in.completed, built_in.failed), (3, 2, 1), "the SVG fails");
        let completed: Vec<Event> = events(&built_in).into_iter().filter(|e| e.kind == EventType::Completed).collect();
        assert_eq!(completed.len(), 2);
        for e in completed {
            assert_eq!((e.preset.as_deref(), e.renditions.len()), (Some("profile"), 6));
            // The built-in preset crops around faces; the samples are synthetic scenes without a face, so its
            // crops fall back to attention.
            assert_eq!(e.faces, Some(0), "the detector ran and found no face");
            assert!(e.focus.is_some(), "the fallback's focus");
        }

        let file = dir.path().join("presets.toml");
        let attention = concat!(env!("CARGO_MANIFEST_DIR"), "/../loadtest/presets/profile-attention.toml");
        std::fs::copy(attention, &file).unwrap();
        let report = run(&request("attention", Some(file.clone()))).await.unwrap();
        assert_eq!((report.completed, report.failed), (2, 1));
        let completed: Vec<Event> = events(&report).into_iter().filter(|e| e.kind == EventType::Completed).collect();
        assert_eq!(completed.len(), 2);
        for e in completed {
            assert_eq!(e.preset.as_deref(), Some("profile-attention"));
            let f = e.focus.expect("attention crops report their focus");
            // The two samples are 2400x1600 and 1600x2400 with no EXIF rotation: stored is upright.
            let (w, h) = (e.source.width.unwrap(), e.source.height.unwrap());
            assert!(f.width > 0 && f.height > 0 && f.x + f.width <= w && f.y + f.height <= h, "{f:?} in {w}x{h}");
            assert_eq!(e.faces, None, "no face crop, no face count");
        }

        let centre = concat!(env!("CARGO_MANIFEST_DIR"), "/../loadtest/presets/profile-centre.toml");
        std::fs::copy(centre, &file).unwrap();
        let report = run(&request("centre", Some(file))).await.unwrap();
        assert_eq!((report.completed, report.failed), (2, 1));
        let completed: Vec<Event> = events(&report).into_iter().filter(|e| e.kind == EventType::Completed).collect();
        assert_eq!(completed.len(), 2);
        for e in completed {
            assert_eq!(e.preset.as_deref(), Some("profile-centre"));
            assert_eq!((e.focus, e.faces), (None, None), "centred crops have no focus and count no faces");
        }
    }
}
