//! The `imgfleet` command line.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use imgfleet_shared::PresetCatalog;
use imgfleet_worker::pipeline::RenderOptions;
use imgfleet_worker::process::{self, ProcessRequest, Status};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "imgfleet", version, about = "Turns uploaded images into web-ready renditions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render local image files or folders into DIR/<input stem>/<rendition>.<ext>.
    Process {
        /// Preset TOML file (default: the built-in profile preset).
        #[arg(long, value_name = "FILE")]
        preset: Option<PathBuf>,
        /// Where renditions are written.
        #[arg(long, value_name = "DIR", default_value = "renditions")]
        out: PathBuf,
        /// Print one JSON line per input instead of a progress bar and table.
        #[arg(long)]
        json: bool,
        /// Images processed at once (default: all cores).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Image files or folders.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgfleet: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Process { preset, out, json, jobs, inputs } => process_command(preset, out, json, jobs, inputs),
    }
}

fn load_catalog(path: Option<&PathBuf>) -> anyhow::Result<PresetCatalog> {
    let Some(path) = path else { return Ok(PresetCatalog::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read preset file {}", path.display()))?;
    PresetCatalog::from_toml(&text).with_context(|| format!("preset file {}", path.display()))
}

fn process_command(
    preset: Option<PathBuf>,
    out: PathBuf,
    json: bool,
    jobs: Option<usize>,
    inputs: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let catalog = load_catalog(preset.as_ref())?;
    let inputs = process::collect_inputs(&inputs).context("cannot list inputs")?;
    if jobs == Some(0) {
        anyhow::bail!("--jobs must be at least 1");
    }
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let request = ProcessRequest {
        inputs,
        out_dir: Some(out.clone()),
        preset: catalog.default_preset().clone(),
        options: RenderOptions { limits: catalog.limits, background: catalog.background },
        jobs,
    };
    let bar = if json { ProgressBar::hidden() } else { ProgressBar::new(request.inputs.len() as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut stdout = std::io::stdout().lock();
    let summary = process::run(&request, |report| {
        if json {
            let line = serde_json::to_string(report).unwrap_or_default();
            let _ = writeln!(stdout, "{line}");
        } else {
            if report.status == Status::Rejected {
                let error = report.error.as_ref().map(|e| format!("{}: {}", e.kind, e.message)).unwrap_or_default();
                bar.suspend(|| eprintln!("rejected {}: {error}", report.input.display()));
            }
            bar.inc(1);
        }
    });
    bar.finish_and_clear();
    if !json {
        eprint!("{}", summary.table());
        if summary.processed > 0 {
            eprintln!("renditions in {}", out.display());
        }
    }
    Ok(if summary.rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
