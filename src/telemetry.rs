//! Structured logging through `tracing`, as pretty text or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFilter, LogFormat};

/// Installs the global subscriber. A second call (tests start many servers) is a no-op.
pub fn init(filter: &LogFilter, format: LogFormat) {
    let filter = filter
        .directives()
        .iter()
        .cloned()
        .fold(EnvFilter::default(), EnvFilter::add_directive);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
