//! The `imgfleet` command line: `process`, `run`, `demo` and `healthcheck`.

use crate::pipeline::RenderOptions;
use crate::process::{self, ProcessRequest, Status};
use crate::{demo, service, telemetry};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use imgfleet_shared::PresetCatalog;
use imgfleet_shared::config::Config;
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
    /// Run the fleet worker: long-poll SQS, render, store to S3, publish events to Redis.
    /// Configured by IMGFLEET_* environment variables (see the README).
    Run,
    /// The whole flow with nothing installed: a local folder as the bucket, an in-process queue,
    /// events in a JSON-lines file.
    Demo {
        /// Where uploads, renditions and events go.
        #[arg(long, value_name = "DIR", default_value = "imgfleet-demo")]
        dir: PathBuf,
        /// How many sample photos to make when no images are given.
        #[arg(long, value_name = "N", default_value_t = 24)]
        count: usize,
        /// Jobs at once (default: all cores).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
        /// Photos (files or folders) to upload instead of generated samples.
        #[arg(value_name = "IMAGE")]
        images: Vec<PathBuf>,
    },
    /// Exit 0 if the local worker's /healthz answers (for container health checks).
    Healthcheck {
        /// Metrics address to probe (default: the port of IMGFLEET_METRICS_ADDR on 127.0.0.1).
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
    },
}

/// Parses the command line and runs the command; the binary's whole `main`.
pub fn main() -> ExitCode {
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
        Command::Run => run_command(),
        Command::Demo { dir, count, jobs, images } => demo_command(dir, count, jobs, images),
        Command::Healthcheck { addr } => healthcheck_command(addr),
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
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("imgfleet").build()?)
}

fn run_command() -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    runtime()?.block_on(async {
        let sdk = service::aws_config().await;
        let worker = service::start(&config, &sdk).await?;
        service::shutdown_signal().await;
        worker.shutdown();
        worker.wait().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn demo_command(dir: PathBuf, count: usize, jobs: Option<usize>, images: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    telemetry::init_with(imgfleet_shared::config::LogFormat::Text, "warn");
    if jobs == Some(0) {
        anyhow::bail!("--jobs must be at least 1");
    }
    let request = demo::DemoRequest { dir: dir.clone(), images, count, concurrency: jobs, quiet: false };
    eprintln!("imgfleet demo: uploading to a local bucket in {} and processing with the fleet worker", dir.display());
    let report = runtime()?.block_on(demo::run(&request))?;
    eprint!("{}", demo::describe(&report, &dir));
    Ok(ExitCode::SUCCESS)
}

fn healthcheck_command(addr: Option<String>) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let addr = match addr {
        Some(a) => a,
        None => format!("127.0.0.1:{}", Config::from_env()?.metrics_addr.port()),
    };
    let probe = || -> std::io::Result<bool> {
        let sock: std::net::SocketAddr =
            addr.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut stream = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"))
    };
    match probe() {
        Ok(true) => Ok(ExitCode::SUCCESS),
        Ok(false) => {
            eprintln!("imgfleet healthcheck: {addr} answered, but not 200");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("imgfleet healthcheck: {addr}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
