//! The worker's settings: `IMGFLEET_*` environment variables over an optional TOML file
//! (`IMGFLEET_CONFIG`), validated at start-up with errors that name the variable.
//!
//! AWS settings (`AWS_REGION`, `AWS_ENDPOINT_URL`, credentials) are read by the AWS SDK's own
//! default chain and are not part of this type.

use crate::keys::KeyTemplate;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Every environment variable the worker reads, in the order the README documents them.
pub const ENV_VARS: &[&str] = &[
    "IMGFLEET_CONFIG",
    "IMGFLEET_QUEUE_URL",
    "IMGFLEET_DLQ_URL",
    "IMGFLEET_OUTPUT_BUCKET",
    "IMGFLEET_OUTPUT_PREFIX",
    "IMGFLEET_KEY_TEMPLATE",
    "IMGFLEET_REDIS_URL",
    "IMGFLEET_EVENTS_STREAM",
    "IMGFLEET_EVENTS_MAXLEN",
    "IMGFLEET_METRICS_ADDR",
    "IMGFLEET_CONCURRENCY",
    "IMGFLEET_SHUTDOWN_GRACE_SECS",
    "IMGFLEET_RECEIVE_WAIT_SECS",
    "IMGFLEET_VISIBILITY_TIMEOUT_SECS",
    "IMGFLEET_PRESETS",
    "IMGFLEET_CACHE_CONTROL",
    "IMGFLEET_SSE",
    "IMGFLEET_SSE_KMS_KEY_ID",
    "IMGFLEET_LOG_FORMAT",
    "IMGFLEET_WORKER_ID",
    "IMGFLEET_ECS_TASK_PROTECTION",
    "IMGFLEET_PUBLIC_BASE_URL",
    "IMGFLEET_FOLLOW_DELETES",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "ECS_AGENT_URI",
];

/// Server-side encryption for stored renditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    Aes256,
    Kms { key_id: Option<String> },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (for ECS / CloudWatch).
    Json,
}

/// The worker's validated settings. `Debug` hides the password a `redis_url` may hold.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// SQS queue to long-poll; required by `imgfleet run`.
    pub queue_url: Option<String>,
    /// Dead-letter queue, sampled for the `imgfleet_dlq_messages_visible` gauge.
    pub dlq_url: Option<String>,
    /// Bucket renditions go to; `None` means the source object's bucket.
    pub output_bucket: Option<String>,
    /// Prefix every rendition key starts with; objects under it never trigger processing.
    pub output_prefix: String,
    /// Rendition key template; see [`crate::keys::DEFAULT_KEY_TEMPLATE`].
    pub key_template: KeyTemplate,
    pub redis_url: String,
    /// Redis stream (and pub/sub channel) events go to.
    pub events_stream: String,
    /// Approximate `MAXLEN` the stream is trimmed to.
    pub events_maxlen: u64,
    pub metrics_addr: SocketAddr,
    /// Jobs decoded at once; `None` means the CPUs available to the process.
    pub concurrency: Option<usize>,
    pub shutdown_grace_secs: u64,
    /// Long-poll wait of each receive (1–20 s). A poll in flight at SIGTERM is let finish and
    /// its messages released, so the worker uses at most the grace period.
    pub receive_wait_secs: u64,
    /// Visibility each received message gets, renewed by the heartbeat while its job runs.
    pub visibility_timeout_secs: u32,
    /// Preset TOML file; `None` means the built-in profile preset.
    pub presets: Option<PathBuf>,
    pub cache_control: String,
    pub sse: Option<Sse>,
    pub log_format: LogFormat,
    pub worker_id: Option<String>,
    /// Hold ECS task scale-in protection while jobs are in flight.
    pub ecs_task_protection: bool,
    /// The ECS agent endpoint (`ECS_AGENT_URI`, set by ECS inside a task).
    pub ecs_agent_uri: Option<String>,
    /// Base URL renditions are served from (a CDN domain, say); when set, completion events carry
    /// each rendition's public `url`. Stored without a trailing `/`.
    pub public_base_url: Option<String>,
    /// Delete a source's renditions when S3 reports the source removed.
    pub follow_deletes: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added to Config cannot be left out here unnoticed.
        let Self {
            queue_url,
            dlq_url,
            output_bucket,
            output_prefix,
            key_template,
            redis_url,
            events_stream,
            events_maxlen,
            metrics_addr,
            concurrency,
            shutdown_grace_secs,
            receive_wait_secs,
            visibility_timeout_secs,
            presets,
            cache_control,
            sse,
            log_format,
            worker_id,
            ecs_task_protection,
            ecs_agent_uri,
            public_base_url,
            follow_deletes,
        } = self;
        f.debug_struct("Config")
            .field("queue_url", &queue_url)
            .field("dlq_url", &dlq_url)
            .field("output_bucket", &output_bucket)
            .field("output_prefix", &output_prefix)
            .field("key_template", &key_template.as_str())
            .field("redis_url", &redact_password(redis_url))
            .field("events_stream", &events_stream)
            .field("events_maxlen", &events_maxlen)
            .field("metrics_addr", &metrics_addr)
            .field("concurrency", &concurrency)
            .field("shutdown_grace_secs", &shutdown_grace_secs)
            .field("receive_wait_secs", &receive_wait_secs)
            .field("visibility_timeout_secs", &visibility_timeout_secs)
            .field("presets", &presets)
            .field("cache_control", &cache_control)
            .field("sse", &sse)
            .field("log_format", &log_format)
            .field("worker_id", &worker_id)
            .field("ecs_task_protection", &ecs_task_protection)
            .field("ecs_agent_uri", &ecs_agent_uri)
            .field("public_base_url", &public_base_url)
            .field("follow_deletes", &follow_deletes)
            .finish()
    }
}

/// `url` with the password of its user-info part (`scheme://user:password@host`) replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => format!("{scheme}://***{}", &rest[at..]),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            queue_url: None,
            dlq_url: None,
            output_bucket: None,
            output_prefix: "renditions/".into(),
            key_template: KeyTemplate::default(),
            redis_url: "redis://127.0.0.1:6379".into(),
            events_stream: crate::event::DEFAULT_STREAM.into(),
            events_maxlen: 100_000,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            concurrency: None,
            shutdown_grace_secs: 25,
            receive_wait_secs: 20,
            visibility_timeout_secs: 120,
            presets: None,
            cache_control: "public, max-age=31536000, immutable".into(),
            sse: Some(Sse::Aes256),
            log_format: LogFormat::Text,
            worker_id: None,
            ecs_task_protection: false,
            ecs_agent_uri: None,
            public_base_url: None,
            follow_deletes: true,
        }
    }
}

/// A setting that could not be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("IMGFLEET_CONFIG: cannot read {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("IMGFLEET_CONFIG: {path} is not a valid config file: {source}")]
    FileToml { path: PathBuf, source: toml::de::Error },
}

/// The TOML file: the same settings, named without the `IMGFLEET_` prefix, in lower case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    queue_url: Option<String>,
    dlq_url: Option<String>,
    output_bucket: Option<String>,
    output_prefix: Option<String>,
    key_template: Option<String>,
    redis_url: Option<String>,
    events_stream: Option<String>,
    events_maxlen: Option<u64>,
    metrics_addr: Option<String>,
    concurrency: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    receive_wait_secs: Option<u64>,
    visibility_timeout_secs: Option<u32>,
    presets: Option<PathBuf>,
    cache_control: Option<String>,
    sse: Option<String>,
    sse_kms_key_id: Option<String>,
    log_format: Option<String>,
    worker_id: Option<String>,
    ecs_task_protection: Option<bool>,
    public_base_url: Option<String>,
    follow_deletes: Option<bool>,
}

impl Config {
    /// Reads the process environment (and the file `IMGFLEET_CONFIG` names).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let r = Reader { lookup };
        let file = match r.get("IMGFLEET_CONFIG") {
            Some(path) => read_file(PathBuf::from(path))?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let metrics_addr = metrics_addr(r.string("IMGFLEET_METRICS_ADDR", file.metrics_addr), d.metrics_addr)?;
        let concurrency = r.number("IMGFLEET_CONCURRENCY", file.concurrency.map(|c| c as u64))?;
        if concurrency == Some(0) {
            return Err(invalid("IMGFLEET_CONCURRENCY", "must be at least 1".into()));
        }
        let visibility = file.visibility_timeout_secs.map(u64::from);
        let default = u64::from(d.visibility_timeout_secs);
        let why = "must be 10..=43200 seconds";
        let visibility = r.ranged("IMGFLEET_VISIBILITY_TIMEOUT_SECS", visibility, default, 10..=43_200, why)?;
        let why = "must be 1..=20 seconds (the SQS long-poll range)";
        let receive_wait =
            r.ranged("IMGFLEET_RECEIVE_WAIT_SECS", file.receive_wait_secs, d.receive_wait_secs, 1..=20, why)?;
        let sse_kms_key_id = r.string("IMGFLEET_SSE_KMS_KEY_ID", file.sse_kms_key_id);
        let sse = sse(r.string("IMGFLEET_SSE", file.sse), sse_kms_key_id, d.sse.clone())?;
        let log_format = log_format(r.string("IMGFLEET_LOG_FORMAT", file.log_format))?;
        let ecs_task_protection = r.flag("IMGFLEET_ECS_TASK_PROTECTION", file.ecs_task_protection, false)?;
        let follow_deletes = r.flag("IMGFLEET_FOLLOW_DELETES", file.follow_deletes, d.follow_deletes)?;
        let public_base_url = public_base_url(r.string("IMGFLEET_PUBLIC_BASE_URL", file.public_base_url))?;
        let output_prefix = output_prefix(r.string("IMGFLEET_OUTPUT_PREFIX", file.output_prefix), d.output_prefix)?;
        let key_template = match r.string("IMGFLEET_KEY_TEMPLATE", file.key_template) {
            Some(t) => KeyTemplate::parse(&t).map_err(|e| invalid("IMGFLEET_KEY_TEMPLATE", e.to_string()))?,
            None => d.key_template,
        };
        let queue_url = queue_url(r.string("IMGFLEET_QUEUE_URL", file.queue_url))?;
        Ok(Config {
            queue_url,
            dlq_url: r.string("IMGFLEET_DLQ_URL", file.dlq_url),
            output_bucket: r.string("IMGFLEET_OUTPUT_BUCKET", file.output_bucket),
            output_prefix,
            key_template,
            redis_url: r.string("IMGFLEET_REDIS_URL", file.redis_url).unwrap_or(d.redis_url),
            events_stream: r.string("IMGFLEET_EVENTS_STREAM", file.events_stream).unwrap_or(d.events_stream),
            events_maxlen: r.number("IMGFLEET_EVENTS_MAXLEN", file.events_maxlen)?.unwrap_or(d.events_maxlen),
            metrics_addr,
            concurrency: concurrency.map(|c| c as usize),
            shutdown_grace_secs: r
                .number("IMGFLEET_SHUTDOWN_GRACE_SECS", file.shutdown_grace_secs)?
                .unwrap_or(d.shutdown_grace_secs),
            receive_wait_secs: receive_wait,
            visibility_timeout_secs: visibility as u32,
            presets: r.string("IMGFLEET_PRESETS", None).map(PathBuf::from).or(file.presets),
            cache_control: r.string("IMGFLEET_CACHE_CONTROL", file.cache_control).unwrap_or(d.cache_control),
            sse,
            log_format,
            worker_id: r.string("IMGFLEET_WORKER_ID", file.worker_id),
            ecs_task_protection,
            ecs_agent_uri: r.get("ECS_AGENT_URI"),
            public_base_url,
            follow_deletes,
        })
    }
}

/// Reads one setting at a time: the environment variable when set (and not blank), else the
/// file's value.
struct Reader<L> {
    lookup: L,
}

impl<L: Fn(&str) -> Option<String>> Reader<L> {
    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    fn string(&self, var: &'static str, file: Option<String>) -> Option<String> {
        self.get(var).or(file)
    }

    fn number(&self, var: &'static str, file: Option<u64>) -> Result<Option<u64>, ConfigError> {
        match self.get(var) {
            Some(v) => v.trim().parse().map(Some).map_err(|_| invalid(var, format!("{v:?} is not a whole number"))),
            None => Ok(file),
        }
    }

    /// A number within `range` (`default` when unset); `why` says the range.
    fn ranged(
        &self,
        var: &'static str,
        file: Option<u64>,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        why: &str,
    ) -> Result<u64, ConfigError> {
        let value = self.number(var, file)?.unwrap_or(default);
        if !range.contains(&value) {
            return Err(invalid(var, why.into()));
        }
        Ok(value)
    }

    fn flag(&self, var: &'static str, file: Option<bool>, default: bool) -> Result<bool, ConfigError> {
        match self.get(var) {
            Some(v) => parse_bool(&v).ok_or_else(|| invalid(var, format!("{v:?} is not true or false"))),
            None => Ok(file.unwrap_or(default)),
        }
    }
}

fn metrics_addr(value: Option<String>, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    match value {
        Some(v) => v
            .parse()
            .map_err(|_| invalid("IMGFLEET_METRICS_ADDR", format!("{v:?} is not an address like 0.0.0.0:9090"))),
        None => Ok(default),
    }
}

fn output_prefix(value: Option<String>, default: String) -> Result<String, ConfigError> {
    let prefix = value.unwrap_or(default);
    if prefix.starts_with('/') {
        return Err(invalid("IMGFLEET_OUTPUT_PREFIX", "must not start with '/'".into()));
    }
    Ok(prefix)
}

fn sse(value: Option<String>, kms_key_id: Option<String>, default: Option<Sse>) -> Result<Option<Sse>, ConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(default),
        Some("AES256") => Ok(Some(Sse::Aes256)),
        Some("aws:kms") => Ok(Some(Sse::Kms { key_id: kms_key_id })),
        Some("none") => Ok(None),
        Some(other) => Err(invalid("IMGFLEET_SSE", format!("{other:?} is not one of AES256, aws:kms, none"))),
    }
}

fn log_format(value: Option<String>) -> Result<LogFormat, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(invalid("IMGFLEET_LOG_FORMAT", format!("{other:?} is not text or json"))),
    }
}

fn public_base_url(value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
            Ok(Some(u.trim().trim_end_matches('/').to_owned()))
        }
        Some(u) => Err(invalid(
            "IMGFLEET_PUBLIC_BASE_URL",
            format!("{u:?} is not an http(s) URL like https://img.example.com"),
        )),
        None => Ok(None),
    }
}

fn queue_url(value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        Some(q) if !(q.starts_with("https://") || q.starts_with("http://")) => Err(invalid(
            "IMGFLEET_QUEUE_URL",
            format!("{q:?} is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)"),
        )),
        q => Ok(q),
    }
}

fn invalid(var: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { var, problem }
}

fn read_file(path: PathBuf) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::File { path: path.clone(), source })?;
    toml::from_str(&text).map_err(|source| ConfigError::FileToml { path, source })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars_lists_exactly_what_the_configuration_reads() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        Config::from_lookup(|k| {
            read.borrow_mut().insert(k.to_owned());
            None
        })
        .unwrap();
        // Read by the AWS SDK's own chain, not by this type.
        let sdk = ["AWS_REGION", "AWS_ENDPOINT_URL"];
        let listed: std::collections::BTreeSet<String> =
            ENV_VARS.iter().filter(|v| !sdk.contains(v)).map(|v| (*v).to_owned()).collect();
        assert_eq!(read.into_inner(), listed);
        assert_eq!(ENV_VARS.len(), listed.len() + sdk.len(), "no variable is listed twice");
    }
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn debug_hides_the_redis_password() {
        let c = cfg(&[("IMGFLEET_REDIS_URL", "rediss://default:s3cret-pass@cache.example:6380/0")]).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("rediss://default:***@cache.example:6380/0"), "{shown}");
        assert_eq!(redact_password("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_password("redis://token@h"), "redis://***@h");
        assert_eq!(redact_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_password("redis://h/a@b"), "redis://h/a@b");
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.output_prefix, "renditions/");
        assert_eq!(c.shutdown_grace_secs, 25);
    }

    #[test]
    fn env_values_are_parsed() {
        let c = cfg(&[
            ("IMGFLEET_QUEUE_URL", "http://127.0.0.1:5000/123456789012/q"),
            ("IMGFLEET_CONCURRENCY", "3"),
            ("IMGFLEET_SSE", "aws:kms"),
            ("IMGFLEET_SSE_KMS_KEY_ID", "k1"),
            ("IMGFLEET_LOG_FORMAT", "json"),
            ("IMGFLEET_METRICS_ADDR", "127.0.0.1:0"),
            ("IMGFLEET_ECS_TASK_PROTECTION", "true"),
            ("IMGFLEET_PUBLIC_BASE_URL", "https://img.example.com/"),
            ("IMGFLEET_FOLLOW_DELETES", "off"),
            ("IMGFLEET_RECEIVE_WAIT_SECS", "5"),
        ])
        .unwrap();
        assert_eq!(c.receive_wait_secs, 5);
        assert_eq!(c.public_base_url.as_deref(), Some("https://img.example.com"));
        assert!(!c.follow_deletes);
        assert_eq!(c.concurrency, Some(3));
        assert_eq!(c.sse, Some(Sse::Kms { key_id: Some("k1".into()) }));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.ecs_task_protection);
    }

    #[test]
    fn errors_name_the_variable() {
        for (var, value) in [
            ("IMGFLEET_CONCURRENCY", "many"),
            ("IMGFLEET_CONCURRENCY", "0"),
            ("IMGFLEET_METRICS_ADDR", "nine"),
            ("IMGFLEET_SSE", "rot13"),
            ("IMGFLEET_LOG_FORMAT", "xml"),
            ("IMGFLEET_QUEUE_URL", "my-queue"),
            ("IMGFLEET_KEY_TEMPLATE", "{prefix}{stem}.{ext}"),
            ("IMGFLEET_KEY_TEMPLATE", "{prefix}{stem}/{rendition}.{ext}{nope}"),
            ("IMGFLEET_VISIBILITY_TIMEOUT_SECS", "1"),
            ("IMGFLEET_RECEIVE_WAIT_SECS", "0"),
            ("IMGFLEET_RECEIVE_WAIT_SECS", "21"),
            ("IMGFLEET_PUBLIC_BASE_URL", "cdn.example.com"),
            ("IMGFLEET_FOLLOW_DELETES", "maybe"),
        ] {
            let err = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(err.starts_with(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn file_is_read_and_env_wins() {
        let dir = std::env::temp_dir().join(format!("imgfleet-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "output_prefix = \"out/\"\nconcurrency = 2\nredis_url = \"redis://file\"\n").unwrap();
        let p = path.to_str().unwrap();
        let c = cfg(&[("IMGFLEET_CONFIG", p), ("IMGFLEET_REDIS_URL", "redis://env")]).unwrap();
        assert_eq!(c.output_prefix, "out/");
        assert_eq!(c.concurrency, Some(2));
        assert_eq!(c.redis_url, "redis://env");
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        assert!(cfg(&[("IMGFLEET_CONFIG", p)]).unwrap_err().to_string().starts_with("IMGFLEET_CONFIG"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
