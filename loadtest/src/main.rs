//! The `imgfleet-loadtest` command line; see the library docs for what each mode does.
//!
//! Exit status: 0 when the run is clean, 1 when an e2e run lost a job or an upload failed, 2 on an
//! error (bad arguments, unreachable services).

use imgfleet_loadtest::capacity::{self, cost, policy, sim};
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
    /// Simulate the fleet and its queue under the template's target-tracking policy for an
    /// upload-rate profile: tasks over time, oldest message age, backlog drain time, cost per
    /// million photos.
    Capacity(CapacityCli),
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

#[derive(Debug, Args)]
struct CapacityCli {
    /// Images per second one vCPU completes, queue and S3 round trips included (the e2e mode's
    /// "images per worker CPU-second"; docs/performance.md measured 9.7).
    #[arg(long, value_name = "R", default_value_t = 9.7, conflicts_with = "pipeline_json")]
    per_vcpu_rate: f64,
    /// Take the per-vCPU rate from the pipeline mode's --json output (`images_per_cpu_s`),
    /// multiplied by --e2e-factor.
    #[arg(long, value_name = "FILE")]
    pipeline_json: Option<PathBuf>,
    /// The e2e rate over the pipeline rate (docs/performance.md: 9.73 / 10.91).
    #[arg(long, value_name = "F", default_value_t = 0.89)]
    e2e_factor: f64,
    /// Uploads per second at all times.
    #[arg(long, value_name = "R", default_value_t = 0.0)]
    steady: f64,
    /// A daily wave: MEAN:PEAK uploads/s, peaking at HOUR (default 20) each day.
    #[arg(long, value_name = "MEAN:PEAK[@HOUR]", value_parser = parse_daily)]
    daily: Option<sim::Daily>,
    /// A one-off backlog of N messages enqueued at once, MINUTES into the run (default 10).
    #[arg(long, value_name = "N[@MINUTES]", value_parser = parse_backlog)]
    backlog: Option<sim::OneOff>,
    /// Hours simulated.
    #[arg(long, value_name = "H", default_value_t = 24.0)]
    hours: f64,
    /// `MinTasks`.
    #[arg(long, value_name = "N", default_value_t = 1)]
    min_tasks: u32,
    /// `MaxTasks`.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_tasks: u32,
    /// `TargetBacklogPerTask`; a comma-separated list compares several.
    #[arg(long, value_name = "T[,T…]", value_delimiter = ',', default_value = "40")]
    target: Vec<f64>,
    /// `TargetCpuUtilization` (percent) of the second policy; 0 for the backlog policy alone.
    #[arg(long, value_name = "PERCENT", default_value_t = 70.0)]
    cpu_target: f64,
    /// `ScaleOutCooldownSeconds`.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    scale_out_cooldown: u64,
    /// `ScaleInCooldownSeconds`.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    scale_in_cooldown: u64,
    /// Seconds from a scale-out until the new task takes jobs.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    startup: u64,
    /// Task vCPUs (`TaskCpu` / 1024); the worker runs one job per vCPU.
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    task_vcpu: f64,
    /// Task memory in GiB (default: the smallest Fargate size that holds the memory bound).
    #[arg(long, value_name = "GIB")]
    task_memory_gib: Option<f64>,
    /// Preset TOML file, for its output count (S3 PUTs per image); default: the built-in profile.
    #[arg(long, value_name = "FILE")]
    preset: Option<PathBuf>,
    /// Rows of the tasks-over-time table.
    #[arg(long, value_name = "N", default_value_t = 24)]
    rows: usize,
    /// Also write the summaries as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
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
        Command::Capacity(args) => capacity_command(&args),
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

fn capacity_command(cli: &CapacityCli) -> anyhow::Result<ExitCode> {
    let base = capacity_base(cli)?;
    let load = sim::Load {
        steady_per_s: cli.steady,
        daily: cli.daily,
        backlog: cli.backlog,
        duration_s: (cli.hours * 3600.0).round() as u64,
    };
    let summaries: Vec<capacity::Summary> = cli
        .target
        .iter()
        .map(|target| {
            let mut plan = base;
            plan.fleet.policy.target = *target;
            capacity::run(&plan, &load, cli.rows)
        })
        .collect();
    for s in &summaries {
        eprintln!("\ntarget {} messages per task: tasks over time", s.target_backlog_per_task);
        eprint!("{}", s.timeline_table());
    }
    eprint!("\n{}", capacity::Summary::header());
    for s in &summaries {
        eprint!("{}", s.row());
    }
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&summaries).context("cannot serialise the summaries")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The plan the arguments describe (with the first target), after printing its inputs.
fn capacity_base(cli: &CapacityCli) -> anyhow::Result<capacity::Plan> {
    let per_vcpu = match &cli.pipeline_json {
        Some(path) => pipeline_rate(path)? * cli.e2e_factor,
        None => cli.per_vcpu_rate,
    };
    anyhow::ensure!(per_vcpu > 0.0 && cli.task_vcpu > 0.0, "the per-vCPU rate and --task-vcpu must be above 0");
    anyhow::ensure!(cli.min_tasks >= 1 && cli.min_tasks <= cli.max_tasks, "need 1 <= --min-tasks <= --max-tasks");
    anyhow::ensure!(cli.target.iter().all(|t| *t > 0.0), "--target must be above 0");
    let catalog = imgfleet_shared::preset::PresetCatalog::load(cli.preset.as_deref())?;
    let preset = catalog.default_preset();
    let outputs = preset.renditions.iter().map(|r| r.formats.len()).sum::<usize>();
    let limits = catalog.limits;
    let concurrency = cli.task_vcpu.ceil() as u32;
    let peak =
        cost::peak_memory_mib(25.0, concurrency, limits.max_source_pixels as f64, limits.max_source_bytes as f64);
    let memory_gib = match cli.task_memory_gib {
        Some(gib) => gib,
        None => cost::fargate_memory_mib(cli.task_vcpu, peak)
            .map(|mib| f64::from(mib) / 1024.0)
            .with_context(|| format!("no Fargate memory size for {} vCPU holds {peak:.0} MiB", cli.task_vcpu))?,
    };
    let cpu_target = (cli.cpu_target > 0.0).then_some(cli.cpu_target);
    let cpu = cpu_target.map_or_else(|| "none".to_string(), |t| format!("{t} %"));
    eprintln!(
        "capacity: {:.2} images/s per task ({per_vcpu:.2} per vCPU × {} vCPU), {memory_gib} GiB tasks (peak bound \
         {peak:.0} MiB at {} MP), preset {:?} ({outputs} outputs), {} h; tasks {}..{}, CPU target {cpu}, \
         cooldowns out {} s / in {} s, start-up {} s",
        per_vcpu * cli.task_vcpu,
        cli.task_vcpu,
        limits.max_source_pixels / 1_000_000,
        preset.name,
        cli.hours,
        cli.min_tasks,
        cli.max_tasks,
        cli.scale_out_cooldown,
        cli.scale_in_cooldown,
        cli.startup
    );
    Ok(capacity::Plan {
        fleet: sim::Fleet {
            per_task_per_s: per_vcpu * cli.task_vcpu,
            startup_s: cli.startup,
            policy: policy::Policy {
                min_tasks: cli.min_tasks,
                max_tasks: cli.max_tasks,
                target: cli.target.first().copied().unwrap_or(40.0),
                cpu_target,
                scale_out_cooldown_s: cli.scale_out_cooldown,
                scale_in_cooldown_s: cli.scale_in_cooldown,
                alarms: policy::Alarms::default(),
            },
        },
        size: cost::TaskSize { vcpu: cli.task_vcpu, memory_gib },
        requests: cost::Requests::for_outputs(outputs),
        prices: cost::Prices::default(),
    })
}

/// `images_per_cpu_s` of a pipeline report.
fn pipeline_rate(path: &std::path::Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    json.get("images_per_cpu_s")
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{} has no images_per_cpu_s: not a pipeline report", path.display()))
}

/// `MEAN:PEAK[@HOUR]` uploads per second.
fn parse_daily(text: &str) -> Result<sim::Daily, String> {
    let (rates, hour) = text.split_once('@').unwrap_or((text, "20"));
    let (mean, peak) = rates.split_once(':').ok_or_else(|| format!("{text:?} is not MEAN:PEAK[@HOUR]"))?;
    match (mean.parse::<f64>(), peak.parse::<f64>(), hour.parse::<u64>()) {
        (Ok(mean), Ok(peak), Ok(hour)) if mean >= 0.0 && peak >= mean && hour < 24 => {
            Ok(sim::Daily { mean_per_s: mean, peak_per_s: peak, peak_at_s: hour * 3600 })
        }
        _ => Err(format!("{text:?} is not MEAN:PEAK[@HOUR] with 0 <= MEAN <= PEAK and HOUR 0-23")),
    }
}

/// `N[@MINUTES]` messages.
fn parse_backlog(text: &str) -> Result<sim::OneOff, String> {
    let (count, minutes) = text.split_once('@').unwrap_or((text, "10"));
    match (count.parse::<f64>(), minutes.parse::<u64>()) {
        (Ok(count), Ok(minutes)) if count >= 0.0 => Ok(sim::OneOff { count, at_s: minutes * 60 }),
        _ => Err(format!("{text:?} is not N[@MINUTES]")),
    }
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
    fn capacity_arguments() {
        assert_eq!(parse_daily("10:30").unwrap(), sim::Daily { mean_per_s: 10.0, peak_per_s: 30.0, peak_at_s: 72_000 });
        assert_eq!(parse_daily("1:2@3").unwrap().peak_at_s, 3 * 3600);
        for bad in ["10", "30:10", "1:2@24", "a:b", "-1:2"] {
            assert!(parse_daily(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_backlog("500000").unwrap(), sim::OneOff { count: 500_000.0, at_s: 600 });
        assert_eq!(parse_backlog("5@0").unwrap().at_s, 0);
        assert!(parse_backlog("x").is_err());
        let cli = Cli::try_parse_from(["imgfleet-loadtest", "capacity", "--target", "10,40,100"]).unwrap();
        let Command::Capacity(c) = cli.command else { panic!("not capacity") };
        assert_eq!(c.target, vec![10.0, 40.0, 100.0]);
        assert!(
            Cli::try_parse_from(["imgfleet-loadtest", "capacity", "--per-vcpu-rate", "3", "--pipeline-json", "f"])
                .is_err()
        );
    }

    /// The capacity mode's defaults are the template's: a plan run without flags is the stack as
    /// deployed with its defaults.
    #[test]
    fn capacity_defaults_are_the_templates() {
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cloudformation/imgfleet.yaml"))
                .expect("the template");
        let default_of = |name: &str| -> f64 {
            let at = template.find(&format!("\n  {name}:\n")).unwrap_or_else(|| panic!("no parameter {name}"));
            let line = template[at..].lines().find(|l| l.trim_start().starts_with("Default:")).expect("a default");
            line.trim_start().trim_start_matches("Default:").trim().trim_matches('"').parse().expect("a number")
        };
        let cli = Cli::try_parse_from(["imgfleet-loadtest", "capacity"]).unwrap();
        let Command::Capacity(c) = cli.command else { panic!("not capacity") };
        assert_eq!(f64::from(c.min_tasks), default_of("MinTasks"));
        assert_eq!(f64::from(c.max_tasks), default_of("MaxTasks"));
        assert_eq!(c.target, vec![default_of("TargetBacklogPerTask")]);
        assert_eq!(c.cpu_target, default_of("TargetCpuUtilization"));
        assert_eq!(c.scale_out_cooldown as f64, default_of("ScaleOutCooldownSeconds"));
        assert_eq!(c.scale_in_cooldown as f64, default_of("ScaleInCooldownSeconds"));
        assert_eq!(c.task_vcpu * 1024.0, default_of("TaskCpu"));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert!(default_run_id().len() >= "20260101-000000-1".len());
    }
}
