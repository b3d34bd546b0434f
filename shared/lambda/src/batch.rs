//! The SQS partial-batch runner every queue consumer shares (rollup, notify, score).
//!
//! Each message is processed on its own and reported on its own
//! (`ReportBatchItemFailures`): an error *or a panic* while processing one message
//! fails that message alone, so a poison message is retried alone and reaches the DLQ
//! after the queue's `maxReceiveCount` while its neighbours — possibly other
//! tenants' — are counted and deleted.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use domain::queue::MessageFailure;
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Why one message of a batch failed.
#[derive(Debug)]
pub enum Failed<E> {
    Error(E),
    /// Processing panicked; the payload's text when it was a string.
    Panicked(String),
}

/// Processes `records` with up to `concurrency` in flight and returns the ids of the
/// messages that failed, for Lambda to retry; panics are contained per message.
pub async fn run_batch<F, Fut, T, E>(
    consumer: &'static str,
    records: Vec<SqsMessage>,
    concurrency: usize,
    process: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: MessageFailure,
{
    let items = records
        .into_iter()
        .map(|m| (m.message_id.clone().unwrap_or_default(), m))
        .collect();
    let results = run_each(items, concurrency, |m: SqsMessage| {
        let correlation = correlation_of(&m);
        correlated(correlation, process(m))
    })
    .await;
    response(
        consumer,
        results.into_iter().map(|(id, r)| (id, r.map(|_| ()))),
    )
}

/// The correlation id a message carries (its `correlation_id` attribute).
pub fn correlation_of(m: &SqsMessage) -> Option<String> {
    m.message_attributes
        .get(domain::correlation::ATTRIBUTE)
        .and_then(|a| a.string_value.as_deref())
        .map(|v| domain::correlation::accept(Some(v)))
}

/// Runs `fut` as the work of `correlation` when there is one: current (so messages it
/// sends carry it on) and on every log line (a `message` span).
pub async fn correlated<F: Future>(correlation: Option<String>, fut: F) -> F::Output {
    use tracing::Instrument;
    match correlation {
        Some(id) => {
            let span = tracing::info_span!("message", correlationId = %id);
            domain::correlation::scope(id, fut.instrument(span)).await
        }
        None => fut.await,
    }
}

/// Runs `process` on each `(message id, item)` with up to `concurrency` in flight,
/// containing panics per item; one result per item, in no particular order.
pub async fn run_each<I, F, Fut, T, E>(
    items: Vec<(String, I)>,
    concurrency: usize,
    process: F,
) -> Vec<(String, Result<T, Failed<E>>)>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    stream::iter(items)
        .map(|(id, item)| {
            let fut = AssertUnwindSafe(process(item)).catch_unwind();
            async move {
                let r = match fut.await {
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(e)) => Err(Failed::Error(e)),
                    Err(payload) => Err(Failed::Panicked(panic_text(payload.as_ref()))),
                };
                (id, r)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The partial batch response for per-message results: every failure logged (poison,
/// retried, panicked) and reported by its message id.
pub fn response<E: MessageFailure>(
    consumer: &'static str,
    results: impl IntoIterator<Item = (String, Result<(), Failed<E>>)>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (id, r) in results {
        let Err(failed) = r else { continue };
        match &failed {
            Failed::Error(e) if e.is_poison() => {
                tracing::error!(consumer, message_id = %id, error = %e,
                "poison message; it goes to the DLQ after the last receive")
            }
            Failed::Error(e) => {
                tracing::warn!(consumer, message_id = %id, error = %e, "message will be retried")
            }
            Failed::Panicked(p) => tracing::error!(consumer, message_id = %id, panic = %p,
                "processing the message panicked; only this message fails and it will be retried"),
        }
        let mut f = BatchItemFailure::default();
        f.item_identifier = id;
        response.batch_item_failures.push(f);
    }
    response
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Oops(bool);
    impl std::fmt::Display for Oops {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "oops (poison: {})", self.0)
        }
    }
    impl MessageFailure for Oops {
        fn is_poison(&self) -> bool {
            self.0
        }
    }

    fn msg(id: &str, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m
    }

    #[tokio::test]
    async fn a_panicking_message_fails_alone_and_its_neighbours_succeed() {
        let done = std::sync::Mutex::new(Vec::new());
        let records = vec![
            msg("a", "ok"),
            msg("b", "panic"),
            msg("c", "err"),
            msg("d", "poison"),
            msg("e", "ok"),
        ];
        let resp = run_batch("test", records, 3, |m| {
            let done = &done;
            async move {
                match m.body.as_deref() {
                    Some("panic") => panic!("multiplication overflowed"),
                    Some("err") => Err(Oops(false)),
                    Some("poison") => Err(Oops(true)),
                    _ => {
                        done.lock().unwrap().push(m.message_id.unwrap());
                        Ok(())
                    }
                }
            }
        })
        .await;
        let mut failed: Vec<_> = resp
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        failed.sort();
        assert_eq!(failed, ["b", "c", "d"]);
        let mut done = done.into_inner().unwrap();
        done.sort();
        assert_eq!(done, ["a", "e"]);
    }

    /// `key = value` lines of one `[section]` of a TOML file (enough for Cargo.toml's
    /// profile sections: flat keys, no inline tables).
    fn toml_section<'a>(toml: &'a str, section: &str) -> Vec<(&'a str, &'a str)> {
        let header = format!("[{section}]");
        toml.lines()
            .map(str::trim)
            .skip_while(|line| *line != header)
            .skip(1)
            .take_while(|line| !line.starts_with('['))
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.trim(), value.trim()))
            .collect()
    }

    /// The containment above needs unwinding. `sam build` runs `cargo lambda build
    /// --release`, and cargo-lambda adds `--config profile.release.panic="abort"` unless the
    /// workspace's `[profile.release]` names a panic strategy itself (seen with a cargo shim:
    /// docs/deploy.md), so the strategy has to be written down, not left to the default.
    #[test]
    fn the_profiles_lambda_artifacts_are_built_with_name_unwinding_panics() {
        let manifest = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"));
        let release = toml_section(manifest, "profile.release");
        assert!(!release.is_empty(), "Cargo.toml has no [profile.release]");
        assert!(
            release.contains(&("panic", "\"unwind\"")),
            "[profile.release] must set panic = \"unwind\" explicitly: {release:?}"
        );
        let lambda = toml_section(manifest, "profile.lambda");
        assert!(lambda.contains(&("inherits", "\"release\"")), "{lambda:?}");
        assert!(
            lambda
                .iter()
                .all(|(key, value)| *key != "panic" || *value == "\"unwind\""),
            "[profile.lambda] must keep unwinding: {lambda:?}"
        );
    }

    #[test]
    fn panic_payloads_are_read_as_text() {
        assert_eq!(panic_text(&"x"), "x");
        assert_eq!(panic_text(&String::from("y")), "y");
        assert_eq!(panic_text(&42_u8), "non-text panic payload");
    }
}
