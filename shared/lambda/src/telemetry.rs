//! Tracing setup: JSON logs on Lambda (or with `LOG_FORMAT=json`), compact text locally.
//!
//! Lambda's advanced logging controls are honoured: `AWS_LAMBDA_LOG_FORMAT` (`JSON` or
//! `Text`, set from the function's `LoggingConfig.LogFormat`) picks the format and
//! `AWS_LAMBDA_LOG_LEVEL` (from `ApplicationLogLevel`) the level, ahead of `LOG_FORMAT`
//! and `RUST_LOG`.
//!
//! A JSON line is one flat object, as Powertools writes them: `timestamp`, `level`,
//! `message`, the event's fields, and the fields of every span the event is in, outer
//! first: the runtime's invocation span (`requestId`, `xrayTraceId`), the `request` or
//! `message` span (`correlationId`, `tenant`, [`crate::http::correlated`],
//! [`crate::batch::correlated`]). The X-Ray trace id falls back to `_X_AMZN_TRACE_ID`,
//! which the runtime sets per invocation.

use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterExt, Targets};
use tracing_subscriber::fmt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// How logs are written, decided from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// A `target=level` list (`Targets` syntax: `info`, `ingest=debug,aws_config=warn`).
    /// Span and field directives (`EnvFilter`'s `[span{field=value}]`) are not
    /// understood: `EnvFilter` and the regex engine it carries weighed ~0.2 MB in every
    /// artifact (docs/benchmarks.md). A filter that does not parse means `info`.
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
    // A second init (tests, local runner) keeps the first subscriber.
    drop(tracing::subscriber::set_global_default(subscriber(
        &settings,
        std::io::stdout,
    )));
}

/// The subscriber `settings` describe, writing lines to `writer`.
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let events = settings
        .filter
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(Level::INFO));
    // The level selects lines, not context: INFO-and-above spans stay enabled at any
    // level, so an ERROR line still carries the invocation span's request and trace ids.
    let filter = events.or(filter_fn(|m| m.is_span() && *m.level() <= Level::INFO));
    let registry = tracing_subscriber::registry();
    if settings.json {
        let layer = JsonLines {
            writer,
            trace_env: || std::env::var("_X_AMZN_TRACE_ID").ok(),
        };
        Box::new(registry.with(layer.with_filter(filter)))
    } else {
        let layer = fmt::layer()
            .compact()
            .with_target(false)
            .with_writer(writer);
        Box::new(registry.with(layer.with_filter(filter)))
    }
}

/// A span's fields as JSON, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

/// Flat JSON lines (see the module documentation).
struct JsonLines<W> {
    writer: W,
    /// The X-Ray trace id of the invocation when no span carries it.
    trace_env: fn() -> Option<String>,
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert(
            "level".into(),
            Value::from(event.metadata().level().as_str()),
        );
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    line.extend(f.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        if !line.contains_key("xrayTraceId") {
            if let Some(t) = (self.trace_env)() {
                line.insert("xrayTraceId".into(), Value::from(t));
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        // Logging must never fail the work; a lost line is all that can happen.
        drop(self.writer.make_writer().write_all(text.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tracing::{info, info_span, warn};

    /// Lines written, shared with the test.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn logged(settings: &LogSettings, work: impl FnOnce()) -> Vec<String> {
        let buf = Buf::default();
        tracing::subscriber::with_default(subscriber(settings, buf.clone()), work);
        buf.lines()
    }

    fn json_at(level: &str) -> LogSettings {
        LogSettings {
            filter: level.into(),
            json: true,
        }
    }

    /// What the runtime and `http::correlated` do around a handler.
    fn an_invocation(work: impl FnOnce()) {
        let invoke = info_span!(
            "Lambda runtime invoke",
            requestId = "req-1",
            xrayTraceId = "Root=1-5e1b4151-5ac6c58f5b5daa6532e4f2e8"
        );
        let _i = invoke.enter();
        let request = info_span!(
            "request",
            correlationId = "corr-9",
            tenant = tracing::field::Empty
        );
        let _r = request.enter();
        work();
    }

    #[test]
    fn every_json_line_carries_the_request_trace_and_correlation_ids_and_then_the_tenant() {
        let lines = logged(&json_at("info"), || {
            an_invocation(|| {
                info!("before the key is checked");
                tracing::Span::current().record("tenant", "acme");
                info!(accepted = 3, "events ingested");
            });
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        let second: Value = serde_json::from_str(&lines[1]).unwrap();
        for line in [&first, &second] {
            assert_eq!(line["requestId"], "req-1");
            assert_eq!(
                line["xrayTraceId"],
                "Root=1-5e1b4151-5ac6c58f5b5daa6532e4f2e8"
            );
            assert_eq!(line["correlationId"], "corr-9");
            assert_eq!(line["level"], "INFO");
            assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
        }
        assert!(first.get("tenant").is_none(), "{first}");
        assert_eq!(second["tenant"], "acme");
        assert_eq!(second["accepted"], 3);
        assert_eq!(second["message"], "events ingested");
    }

    #[test]
    fn without_a_span_carrying_it_the_trace_id_comes_from_the_runtimes_variable() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(JsonLines {
            writer: buf.clone(),
            trace_env: || Some("Root=1-from-env".into()),
        });
        tracing::subscriber::with_default(sub, || info!("cold start"));
        let line: Value = serde_json::from_str(&buf.lines()[0]).unwrap();
        assert_eq!(line["xrayTraceId"], "Root=1-from-env");
        assert_eq!(line["message"], "cold start");
    }

    #[test]
    fn the_level_drops_the_lines_below_it_in_either_format() {
        let lines = logged(&json_at("warn"), || {
            info!("chatty");
            warn!(code = "x", "worth a look");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            (line["level"].as_str(), line["code"].as_str()),
            (Some("WARN"), Some("x"))
        );
        let text = LogSettings {
            filter: "error".into(),
            json: false,
        };
        let lines = logged(&text, || {
            warn!("dropped");
            tracing::error!("kept");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("kept") && !lines[0].starts_with('{'),
            "{lines:?}"
        );
    }

    #[test]
    fn a_target_list_sets_each_targets_level_and_a_filter_that_does_not_parse_means_info() {
        let work = || {
            tracing::debug!("detail");
            info!("progress");
        };
        let count = |filter: &str| logged(&json_at(filter), work).len();
        assert_eq!(count("lambda=debug"), 2, "this crate at debug");
        assert_eq!(
            count("info,lambda::telemetry=warn"),
            0,
            "the longer target wins"
        );
        assert_eq!(count("ingest=debug"), 0, "other targets only");
        assert_eq!(
            count("[request{tenant=t1}]=debug"),
            1,
            "not understood: info"
        );
    }

    #[test]
    fn lambdas_settings_reach_the_lines_written() {
        let s = settings(&[
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "ERROR"),
            ("RUST_LOG", "debug"),
        ]);
        let lines = logged(&s, || {
            an_invocation(|| {
                warn!("below ERROR");
                tracing::error!("failed");
            })
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            (line["level"].as_str(), line["requestId"].as_str()),
            (Some("ERROR"), Some("req-1"))
        );
    }

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
