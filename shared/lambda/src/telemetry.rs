//! Tracing setup: JSON logs on Lambda (or with `LOG_FORMAT=json`), compact text locally.
//!
//! Lambda's advanced logging controls are honoured: `AWS_LAMBDA_LOG_FORMAT` (`JSON` or
//! `Text`, set from the function's `LoggingConfig.LogFormat`) picks the format and
//! `AWS_LAMBDA_LOG_LEVEL` (from `ApplicationLogLevel`) the level, ahead of `LOG_FORMAT`
//! and `RUST_LOG`. In JSON, every line carries the fields of the spans it is in, so the
//! runtime's invocation span adds the request id and the X-Ray trace id to each line.

use tracing_subscriber::{fmt, EnvFilter};

/// How logs are written, decided from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// An `EnvFilter` directive.
    pub filter: String,
    pub json: bool,
}

impl LogSettings {
    /// From the variables `var` returns (the process environment in [`init`]).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let filter = match var("AWS_LAMBDA_LOG_LEVEL").map(|l| l.to_ascii_lowercase()) {
            // Lambda's levels; FATAL has no tracing counterpart and means errors only.
            Some(l) if l == "fatal" => "error".to_owned(),
            Some(l) if ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()) => l,
            _ => var("RUST_LOG")
                .filter(|f| !f.trim().is_empty())
                .unwrap_or_else(|| "info".to_owned()),
        };
        let json = match var("AWS_LAMBDA_LOG_FORMAT").map(|f| f.to_ascii_lowercase()) {
            Some(f) if f == "json" => true,
            Some(f) if f == "text" => false,
            _ => {
                var("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"))
                    || var("AWS_LAMBDA_FUNCTION_NAME").is_some()
            }
        };
        Self { filter, json }
    }
}

pub fn init() {
    let settings = LogSettings::from_env(|k| std::env::var(k).ok());
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let result = if settings.json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
    // A second init (tests, local runner) keeps the first subscriber.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> LogSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LogSettings::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn lambdas_logging_controls_win_over_rust_log_and_log_format() {
        let s = settings(&[
            ("AWS_LAMBDA_LOG_FORMAT", "Text"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("AWS_LAMBDA_FUNCTION_NAME", "ingest"),
            ("RUST_LOG", "debug"),
            ("LOG_FORMAT", "json"),
        ]);
        assert_eq!(
            s,
            LogSettings {
                filter: "warn".into(),
                json: false
            }
        );
        let s = settings(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
        ]);
        assert_eq!((s.filter.as_str(), s.json), ("error", true));
    }

    #[test]
    fn without_them_rust_log_and_log_format_apply_and_lambda_means_json() {
        let s = settings(&[("RUST_LOG", "ingest=debug"), ("LOG_FORMAT", "json")]);
        assert_eq!((s.filter.as_str(), s.json), ("ingest=debug", true));
        let s = settings(&[("AWS_LAMBDA_FUNCTION_NAME", "rollup")]);
        assert_eq!((s.filter.as_str(), s.json), ("info", true));
        let s = settings(&[]);
        assert_eq!((s.filter.as_str(), s.json), ("info", false));
        let s = settings(&[("AWS_LAMBDA_LOG_LEVEL", "loud"), ("RUST_LOG", "debug")]);
        assert_eq!(s.filter, "debug", "an unknown Lambda level falls back");
    }
}
