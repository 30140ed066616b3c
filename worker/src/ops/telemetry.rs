//! Logging: `tracing` to stderr, as text or one JSON object per line (`IMGFLEET_LOG_FORMAT=json`,
//! for ECS / CloudWatch). The level filter comes from `RUST_LOG` (default `info`).

use imgfleet_shared::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber at `info`; later calls are ignored.
pub fn init(format: LogFormat) {
    init_with(format, "info,aws_config=warn,aws_smithy_runtime=warn");
}

/// Installs the global subscriber with `default_filter` unless `RUST_LOG` says otherwise.
pub fn init_with(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
