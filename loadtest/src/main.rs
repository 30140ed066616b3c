//! The `imgfleet-loadtest` command line; see the library docs for what each mode does.
//!
//! Exit status: 0 when the run is clean, 1 when an e2e run lost a job or an upload failed, 2 on an
//! error (bad arguments, unreachable services).

use imgfleet_loadtest::{e2e, pipeline, report, samples, setup};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "imgfleet-loadtest", version, about = "imgfleet load generator and pipeline benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark the rendition job in-process over a folder of images.
    Pipeline {
        /// Folder of images (walked recursively, hidden entries skipped).
        #[arg(long, value_name = "DIR")]
        input: PathBuf,
        /// Only files whose name matches this pattern (`*` and `?`); `*` for every file.
        #[arg(long, value_name = "PATTERN", default_value = "*.jpg")]
        glob: String,
        /// Images rendered at once, each thread taking the next image.
        #[arg(long, value_name = "N", default_value_t = 1)]
        threads: usize,
        /// Timed passes over the folder, after one untimed warm-up pass.
        #[arg(long, value_name = "K", default_value_t = 3)]
        iterations: usize,
        /// Preset TOML file (default: the built-in profile preset).
        #[arg(long, value_name = "FILE")]
        preset: Option<PathBuf>,
        /// Also write the results as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Upload images to a bucket the fleet watches and time each upload's event on the Redis stream.
    E2e(E2eCli),
    /// Create a bucket whose uploads under PREFIX notify a new queue (with dead-letter queue
    /// <QUEUE>-dlq); prints the queue URL.
    Setup {
        /// Bucket to create (an existing one of yours is reused).
        #[arg(long, value_name = "B")]
        bucket: String,
        /// Queue to create; its dead-letter queue is <Q>-dlq.
        #[arg(long, value_name = "Q")]
        queue: String,
        /// Key prefix whose uploads notify the queue.
        #[arg(long, value_name = "P", default_value = "uploads/")]
        prefix: String,
        /// Deliveries before a message moves to the dead-letter queue.
        #[arg(long, value_name = "N", default_value_t = 5)]
        max_receives: u32,
        /// The queue's default visibility timeout, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        visibility_timeout: u32,
    },
    /// Delete what `setup` made: every object of the bucket, the bucket, the queue and <QUEUE>-dlq.
    Teardown {
        /// Bucket to empty and delete.
        #[arg(long, value_name = "B")]
        bucket: String,
        /// Queue to delete, with <Q>-dlq.
        #[arg(long, value_name = "Q")]
        queue: String,
    },
    /// Write generated sample photos (JPEG) into a folder.
    Samples {
        /// Folder the photos are written to (as sample-NNN.jpg).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// How many photos.
        #[arg(long, value_name = "N", default_value_t = 12)]
        count: usize,
        /// Make every photo this size (e.g. 7300x5480 for 40 MP) instead of a mix of shapes.
        #[arg(long, value_name = "WxH", value_parser = parse_size)]
        size: Option<(u32, u32)>,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("pace").required(true).args(["rate", "burst"]))]
struct E2eCli {
    /// Folder of images to upload, cycled through.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// Only files whose name matches this pattern (`*` and `?`).
    #[arg(long, value_name = "PATTERN", default_value = "*")]
    glob: String,
    /// Objects to upload.
    #[arg(long, value_name = "N")]
    count: usize,
    /// Uploads started per second.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Upload everything at once, --concurrency at a time.
    #[arg(long)]
    burst: bool,
    /// PutObject requests in flight at most.
    #[arg(long, value_name = "C", default_value_t = 16)]
    concurrency: usize,
    /// An upload with no event this many seconds after it returned counts as lost.
    #[arg(long, value_name = "SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Seconds to keep reading after the last expected event, to catch duplicates.
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    linger: u64,
    /// The bucket the fleet's queue is notified from.
    #[arg(long, value_name = "B", env = "IMGFLEET_LOADTEST_BUCKET")]
    bucket: String,
    /// Key prefix of this run's uploads (default: uploads/loadtest/<run id>/).
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// Redis the workers publish events to.
    #[arg(long, value_name = "URL", env = "IMGFLEET_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The stream the workers publish events to.
    #[arg(long, value_name = "NAME", env = "IMGFLEET_EVENTS_STREAM", default_value = imgfleet_shared::event::DEFAULT_STREAM)]
    stream: String,
    /// Run id, used in the default prefix and the report (default: UTC time and process id).
    #[arg(long, value_name = "ID")]
    run_id: Option<String>,
    /// Folder for report.json and chart.svg.
    #[arg(long, value_name = "DIR", default_value = "loadtest-report")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgfleet-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Pipeline { input, glob, threads, iterations, preset, json } => {
            let report = pipeline::run(&pipeline::PipelineArgs { input, glob, threads, iterations, preset })?;
            eprint!("{}", report.table());
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report).context("cannot serialise the report")?;
                std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("  json         {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::E2e(args) => e2e_command(args),
        Command::Setup { bucket, queue, prefix, max_receives, visibility_timeout } => {
            let args = setup::SetupArgs { bucket, queue, prefix, max_receives, visibility_secs: visibility_timeout };
            let created = runtime()?.block_on(async { setup::run(&setup::Clients::from_env().await, &args).await })?;
            eprintln!(
                "bucket s3://{} notifies {} for uploads under {:?}; dead letters go to {}",
                args.bucket, created.queue_url, args.prefix, created.dlq_url
            );
            println!("{}", created.queue_url);
            Ok(ExitCode::SUCCESS)
        }
        Command::Teardown { bucket, queue } => {
            let deleted = runtime()?
                .block_on(async { setup::teardown(&setup::Clients::from_env().await, &bucket, &queue).await })?;
            eprintln!("deleted {deleted} object(s), bucket s3://{bucket} and queues {queue}, {queue}-dlq");
            Ok(ExitCode::SUCCESS)
        }
        Command::Samples { out, count, size } => {
            let written = samples::write(&out, count, size)?;
            eprintln!("{} sample photos in {}", written.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| format!("{text:?} is not WxH"))?;
    match (w.parse(), h.parse()) {
        (Ok(w @ 1..=65_535), Ok(h @ 1..=65_535)) => Ok((w, h)),
        _ => Err(format!("{text:?} is not WxH with sides of 1 to 65535")),
    }
}

fn e2e_command(cli: E2eCli) -> anyhow::Result<ExitCode> {
    let run_id = cli.run_id.unwrap_or_else(default_run_id);
    let mut prefix = cli.prefix.unwrap_or_else(|| format!("uploads/loadtest/{run_id}/"));
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let pace = match cli.rate {
        Some(r) => e2e::Pace::Rate(r),
        None => e2e::Pace::Burst,
    };
    let args = e2e::E2eArgs {
        images: cli.images,
        glob: cli.glob,
        count: cli.count,
        pace,
        concurrency: cli.concurrency,
        timeout: Duration::from_secs(cli.timeout),
        linger: Duration::from_secs(cli.linger),
        bucket: cli.bucket,
        prefix,
        redis_url: cli.redis_url,
        stream: cli.stream,
    };
    let run = runtime()?.block_on(e2e::run(&args))?;
    let report = report::E2eReport::new(&run_id, &args, run);
    eprint!("{}", report.table());
    let (json, svg) = report.write(&cli.out)?;
    eprintln!("  report  {}\n  chart   {}", json.display(), svg.display());
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

/// `YYYYMMDD-HHMMSS-<pid>` in UTC.
fn default_run_id() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{}", rem / 3600, rem % 3600 / 60, rem % 60, std::process::id())
}

/// Days since 1970-01-01 → (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn e2e_needs_exactly_one_pace() {
        let base = ["imgfleet-loadtest", "e2e", "--images", "d", "--count", "3", "--bucket", "b"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--burst", "--rate", "2"])).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--rate", "2.5"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["--burst"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["--burst", "--timeout", "0"])).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert!(default_run_id().len() >= "20260101-000000-1".len());
    }
}
