//! Tracing setup: JSON logs on Lambda (or with `LOG_FORMAT=json`), compact text locally.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false)
        || std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok();
    let builder = fmt().with_env_filter(filter).with_target(false);
    let result = if json {
        builder.json().flatten_event(true).without_time().try_init()
    } else {
        builder.compact().try_init()
    };
    // A second init (tests, local runner) keeps the first subscriber.
    drop(result);
}
