//! `imgfleet process`: the rendition pipeline over local files, on all cores.
//!
//! Inputs are files or folders (walked recursively, hidden entries skipped). Each worker thread holds
//! at most one decoded image at a time; results stream back to the calling thread, which prints JSON
//! lines or drives the progress bar and finally the summary.

use crate::pipeline::{self, RenderOptions, Rendered};
use imgfleet_shared::outcome::ErrorInfo;
use imgfleet_shared::{ErrorKind, Preset, RenderResult};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// What `process` works on.
#[derive(Debug, Clone)]
pub struct ProcessRequest {
    pub inputs: Vec<PathBuf>,
    /// Where renditions are written (`DIR/<stem>/<rendition>.<ext>`); `None` writes nothing.
    pub out_dir: Option<PathBuf>,
    pub preset: Preset,
    pub options: RenderOptions,
    pub jobs: usize,
}

/// One input's outcome, as printed by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub input: PathBuf,
    pub status: Status,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub result: Option<RenderResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// `ok` or `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Rejected,
}

/// Totals printed after a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub processed: usize,
    pub rejected: usize,
    pub seconds: f64,
    /// Source megapixels of the processed inputs.
    pub megapixels: f64,
    pub output_bytes: u64,
}

impl Summary {
    pub fn images_per_second(&self) -> f64 {
        self.processed as f64 / self.seconds.max(1e-9)
    }

    pub fn megapixels_per_second(&self) -> f64 {
        self.megapixels / self.seconds.max(1e-9)
    }

    /// The summary as a small table.
    pub fn table(&self) -> String {
        format!(
            "processed  rejected  seconds  images/s  MP/s    output MB\n{:<10} {:<9} {:<8.2} {:<9.2} {:<7.2} {:.2}\n",
            self.processed,
            self.rejected,
            self.seconds,
            self.images_per_second(),
            self.megapixels_per_second(),
            self.output_bytes as f64 / 1e6
        )
    }
}

/// Expands folders into the image files under them (sorted), keeping files named directly.
pub fn collect_inputs(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, &mut files)?;
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// Output folder names: the input's stem, with `-2`, `-3`… when two inputs share one.
fn unique_stems(inputs: &[PathBuf]) -> Vec<String> {
    let mut seen = HashSet::new();
    inputs
        .iter()
        .map(|p| {
            let stem = p.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
            let mut name = stem.clone();
            let mut n = 1;
            while !seen.insert(name.clone()) {
                n += 1;
                name = format!("{stem}-{n}");
            }
            name
        })
        .collect()
}

/// Runs the pipeline over every input on `jobs` threads, calling `on_report` on this thread as each
/// input finishes (in completion order).
pub fn run(request: &ProcessRequest, mut on_report: impl FnMut(&InputReport)) -> Summary {
    let started = Instant::now();
    let stems = unique_stems(&request.inputs);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<InputReport>();
    let mut summary = Summary::default();
    std::thread::scope(|scope| {
        for _ in 0..request.jobs.max(1).min(request.inputs.len().max(1)) {
            let tx = tx.clone();
            let (next, stems) = (&next, &stems);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = request.inputs.get(i) else { break };
                    let out = request.out_dir.as_ref().map(|d| d.join(&stems[i]));
                    if tx.send(process_one(input, out.as_deref(), request)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for report in rx {
            match &report.result {
                Some(r) => {
                    summary.processed += 1;
                    summary.megapixels += f64::from(r.source.width) * f64::from(r.source.height) / 1e6;
                    summary.output_bytes += r.renditions.iter().map(|x| x.bytes).sum::<u64>();
                }
                None => summary.rejected += 1,
            }
            on_report(&report);
        }
    });
    summary.seconds = started.elapsed().as_secs_f64();
    summary
}

/// Reads, renders and writes one input.
pub fn process_one(input: &Path, out_dir: Option<&Path>, request: &ProcessRequest) -> InputReport {
    let rejected = |kind: ErrorKind, message: String| InputReport {
        input: input.to_owned(),
        status: Status::Rejected,
        result: None,
        error: Some(ErrorInfo { kind, message }),
    };
    let bytes = match read_capped(input, request.options.limits.max_source_bytes) {
        Ok(b) => b,
        Err(ReadError::TooLarge(n)) => {
            return rejected(
                ErrorKind::TooLarge,
                format!("{n} bytes: over the limit of {} bytes", request.options.limits.max_source_bytes),
            );
        }
        Err(ReadError::Io(e)) => return rejected(ErrorKind::NotFound, format!("cannot read {}: {e}", input.display())),
    };
    match pipeline::render(&bytes, &request.preset, &request.options) {
        Ok(rendered) => match out_dir.map(|d| write_outputs(d, &rendered)).transpose() {
            Ok(_) => {
                InputReport { input: input.to_owned(), status: Status::Ok, result: Some(rendered.result), error: None }
            }
            Err(e) => rejected(ErrorKind::Storage, format!("cannot write renditions: {e}")),
        },
        Err(e) => rejected(e.kind(), e.to_string()),
    }
}

enum ReadError {
    TooLarge(u64),
    Io(std::io::Error),
}

/// Reads a file, refusing one over `cap` bytes before reading it.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let len = std::fs::metadata(path).map_err(ReadError::Io)?.len();
    if len > cap {
        return Err(ReadError::TooLarge(len));
    }
    std::fs::read(path).map_err(ReadError::Io)
}

fn write_outputs(dir: &Path, rendered: &Rendered) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for o in &rendered.outputs {
        std::fs::write(dir.join(format!("{}.{}", o.name, o.format.extension())), &o.data)?;
    }
    Ok(())
}
