//! The `imgfleet` command line: `process`, `run`, `demo`, `backfill`, `presign` and `healthcheck`.

use crate::adapters::queue::SqsQueue;
use crate::adapters::storage::S3Store;
use crate::commands::process::{self, ProcessRequest, Status};
use crate::commands::{backfill, demo, presign};
use crate::fleet::service;
use crate::ops::telemetry;
use crate::pipeline::RenderOptions;
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
        /// Preset TOML file, as `run`'s IMGFLEET_PRESETS (default: the built-in profile preset).
        #[arg(long, value_name = "FILE")]
        preset: Option<PathBuf>,
        /// Photos (files or folders) to upload instead of generated samples.
        #[arg(value_name = "IMAGE")]
        images: Vec<PathBuf>,
    },
    /// Enqueue jobs for objects under a prefix whose renditions are missing or made by an older
    /// preset. Reads IMGFLEET_* settings (queue, output prefix, key template, presets) like `run`.
    Backfill(BackfillArgs),
    /// Print a presigned POST policy (URL + form fields, JSON) for one direct upload to S3: the
    /// content type and a size range are enforced by S3 itself. Uses the AWS credential chain.
    Presign {
        #[arg(long)]
        bucket: String,
        /// The exact key the upload gets.
        #[arg(long)]
        key: String,
        /// image/jpeg, image/png or image/webp.
        #[arg(long, value_name = "TYPE")]
        content_type: String,
        /// Largest upload accepted (default: the preset file's max_source_bytes).
        #[arg(long, value_name = "N")]
        max_bytes: Option<u64>,
        /// How long the policy is valid: 900, 900s, 15m, 2h, 7d at most.
        #[arg(long, value_name = "DURATION", default_value = "15m")]
        expires: String,
    },
    /// Exit 0 if the local worker's /healthz answers (for container health checks).
    Healthcheck {
        /// Metrics address to probe (default: the port of IMGFLEET_METRICS_ADDR on 127.0.0.1).
        #[arg(long, value_name = "HOST:PORT")]
        addr: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct BackfillArgs {
    /// Bucket holding the sources.
    #[arg(long)]
    bucket: String,
    /// Only keys under this prefix.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Preset to check and request (default: the configured default preset).
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    /// Only objects last modified on or after this date (2026-01-31 or 2026-01-31T12:00:00Z).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Count what would be enqueued; send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Jobs enqueued per second at most, like 50 or 50/s.
    #[arg(long, value_name = "N/s", default_value = "50/s")]
    rate: String,
    /// Resume after this key (the key a previous run printed).
    #[arg(long, value_name = "KEY")]
    start_after: Option<String>,
    /// Stop after listing this many objects (resume with --start-after).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Only keys with these extensions, comma-separated (default: every key; the worker checks content).
    #[arg(long, value_name = "EXT,...", value_delimiter = ',')]
    ext: Vec<String>,
    /// Queue to send jobs to (default: IMGFLEET_QUEUE_URL).
    #[arg(long, value_name = "URL")]
    queue_url: Option<String>,
    /// Print the final counts as one JSON object.
    #[arg(long)]
    json: bool,
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
        Command::Demo { dir, count, jobs, preset, images } => demo_command(dir, count, jobs, preset, images),
        Command::Backfill(args) => backfill_command(args),
        Command::Presign { bucket, key, content_type, max_bytes, expires } => {
            presign_command(bucket, key, content_type, max_bytes, &expires)
        }
        Command::Healthcheck { addr } => healthcheck_command(addr),
    }
}

fn backfill_command(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    telemetry::init_with(config.log_format, "warn");
    let (json, queue_url) = (args.json, args.queue_url.clone().or(config.queue_url.clone()));
    let request = backfill_request(args, &config)?;
    let queue_url = queue_url.context("no queue: set IMGFLEET_QUEUE_URL or --queue-url")?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let summary = runtime()?.block_on(async {
        let sdk = service::aws_config().await;
        let store = S3Store::new(service::s3_client(&sdk));
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url);
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            service::shutdown_signal().await;
            on_signal.cancel();
        });
        backfill::run(&store, &queue, &request, &stop, |s| {
            bar.set_message(format!(
                "listed {} · up to date {} · missing {} · stale {} · enqueued {}",
                s.listed, s.up_to_date, s.missing, s.stale, s.enqueued
            ));
        })
        .await
    })?;
    bar.finish_and_clear();
    print_backfill_summary(&summary, json, request.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

/// What `imgfleet backfill` was asked to do, with the worker's settings and presets.
fn backfill_request(args: BackfillArgs, config: &Config) -> anyhow::Result<backfill::BackfillRequest> {
    let catalog = load_catalog(config.presets.as_ref())?;
    let preset = match &args.preset {
        Some(name) => catalog.get(name).with_context(|| format!("--preset {name:?} is not in the preset file"))?,
        None => catalog.default_preset(),
    };
    Ok(backfill::BackfillRequest {
        bucket: args.bucket,
        prefix: args.prefix,
        preset_name: args.preset.clone(),
        preset: preset.clone(),
        since: args.since.as_deref().map(backfill::parse_since).transpose()?,
        extensions: args.ext.iter().map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase()).collect(),
        dry_run: args.dry_run,
        rate: backfill::parse_rate(&args.rate)?,
        start_after: args.start_after,
        limit: args.limit,
        output_bucket: config.output_bucket.clone(),
        output_prefix: config.output_prefix.clone(),
        key_template: config.key_template.clone(),
        max_source_bytes: catalog.limits.max_source_bytes,
        page_size: 1000,
    })
}

/// The counts (as JSON or a table) on stdout, and how it ended on stderr.
fn print_backfill_summary(summary: &backfill::BackfillSummary, json: bool, dry_run: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
    } else {
        let would = if dry_run { " (dry run: nothing sent)" } else { "" };
        println!("listed      {}", summary.listed);
        println!("skipped     {}", summary.skipped);
        println!("up to date  {}", summary.up_to_date);
        println!("missing     {}", summary.missing);
        println!("stale       {}", summary.stale);
        println!("enqueued    {}{would}", summary.enqueued);
    }
    match (&summary.last_key, summary.complete) {
        (_, true) => eprintln!("backfill complete"),
        (Some(key), false) => eprintln!("stopped early; resume with: --start-after {}", shell_quote(key)),
        (None, false) => eprintln!("stopped before any object was handled"),
    }
    Ok(())
}

fn presign_command(
    bucket: String,
    key: String,
    content_type: String,
    max_bytes: Option<u64>,
    expires: &str,
) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    let max_bytes = match max_bytes {
        Some(n) => n,
        None => load_catalog(config.presets.as_ref())?.limits.max_source_bytes,
    };
    let expires_in = presign::parse_expiry(expires).context("--expires")?;
    let post = runtime()?.block_on(async {
        let sdk = service::aws_config().await;
        let region = sdk.region().context("no AWS region: set AWS_REGION")?.to_string();
        let provider = sdk.credentials_provider().context("no AWS credentials provider")?;
        let credentials = aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider)
            .await
            .context("cannot load AWS credentials")?;
        let request = presign::PostPolicyRequest {
            bucket,
            key,
            content_type,
            max_bytes,
            expires_in,
            region,
            endpoint: sdk.endpoint_url().map(str::to_owned),
        };
        anyhow::Ok(presign::presign_post(&request, &credentials, std::time::SystemTime::now())?)
    })?;
    println!("{}", serde_json::to_string_pretty(&post)?);
    Ok(ExitCode::SUCCESS)
}

/// Quotes a key for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn load_catalog(path: Option<&PathBuf>) -> anyhow::Result<PresetCatalog> {
    let catalog = PresetCatalog::load(path.map(PathBuf::as_path))?;
    crate::pipeline::encode::check_catalog(&catalog).map_err(anyhow::Error::msg)?;
    Ok(catalog)
}

fn process_command(
    preset: Option<PathBuf>,
    out: PathBuf,
    json: bool,
    jobs: Option<usize>,
    inputs: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    crate::ops::memory::keep_freed_memory();
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

/// The async runtime of the commands that run the fleet worker. Its renders go to a fixed pool
/// of threads ([`crate::fleet::pool::RenderPool`]), which keep freed image buffers for the next image.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crate::ops::memory::keep_freed_memory_below(crate::ops::memory::WORKER_MMAP_THRESHOLD);
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("imgfleet").build()?)
}

fn run_command() -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    telemetry::init(config.log_format);
    runtime()?.block_on(async {
        let sdk = service::aws_config().await;
        let adapters = service::Adapters::connect(&config, &sdk).await?;
        service::run(&config, adapters, service::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn demo_command(
    dir: PathBuf,
    count: usize,
    jobs: Option<usize>,
    presets: Option<PathBuf>,
    images: Vec<PathBuf>,
) -> anyhow::Result<ExitCode> {
    telemetry::init_with(imgfleet_shared::config::LogFormat::Text, "warn");
    if jobs == Some(0) {
        anyhow::bail!("--jobs must be at least 1");
    }
    let request = demo::DemoRequest { dir: dir.clone(), images, count, concurrency: jobs, quiet: false, presets };
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
