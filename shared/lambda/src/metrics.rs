//! Where the functions' metrics go: one process-wide [`MetricsSink`], like the tracing
//! subscriber. On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) that is stdout, one EMF JSON
//! document per line, which CloudWatch Logs turns into metrics with no API call and no
//! extra permission; the local runner installs a [`Tally`] instead ([`tally`]) and
//! serves it at `GET /local/metrics`; elsewhere (unit tests, tools) metrics are dropped.
//!
//! Namespace: `METRICS_NAMESPACE` (or Powertools' `POWERTOOLS_METRICS_NAMESPACE`),
//! default [`DEFAULT_NAMESPACE`]. One dimension, `Function` (see `domain::metrics`
//! on why the tenant is a property and not a dimension).

use domain::metrics::{Discard, MetricSet, MetricsSink, Tally};
use std::io::Write;
use std::sync::{Arc, OnceLock};

pub const DEFAULT_NAMESPACE: &str = "UsageIntel";

static SINK: OnceLock<Arc<dyn MetricsSink>> = OnceLock::new();
static TALLY: OnceLock<Arc<Tally>> = OnceLock::new();

/// Writes each set's EMF documents to stdout, one line each.
pub struct Stdout;

impl MetricsSink for Stdout {
    fn publish(&self, set: &MetricSet) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut lines = String::new();
        for doc in set.to_emf(now) {
            lines.push_str(&doc.to_string());
            lines.push('\n');
        }
        // One write under the lock: the lines are never interleaved with log lines.
        let mut out = std::io::stdout().lock();
        if out
            .write_all(lines.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            tracing::warn!("metrics could not be written to stdout");
        }
    }
}

fn sink() -> &'static Arc<dyn MetricsSink> {
    SINK.get_or_init(|| {
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            Arc::new(Stdout)
        } else {
            Arc::new(Discard)
        }
    })
}

/// Makes the process's metrics go to an in-process [`Tally`] (the local runner) and
/// returns it; the same tally on every call. `None` when another sink was chosen
/// before (something was published first).
pub fn tally() -> Option<Arc<Tally>> {
    let tally = TALLY.get_or_init(|| Arc::new(Tally::default())).clone();
    let sink: Arc<dyn MetricsSink> = tally.clone();
    let installed = SINK.get_or_init(|| sink);
    // Installed by this call or an earlier one: the sink is this very tally.
    let same = std::ptr::addr_eq(Arc::as_ptr(installed), Arc::as_ptr(&tally));
    same.then_some(tally)
}

fn namespace_from(var: impl Fn(&str) -> Option<String>) -> String {
    ["METRICS_NAMESPACE", "POWERTOOLS_METRICS_NAMESPACE"]
        .iter()
        .filter_map(|k| var(k))
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

/// An empty set for `function` (the `Function` dimension) in the configured namespace;
/// an invalid configured namespace falls back to the default, with a warning.
pub fn set(function: &'static str) -> MetricSet {
    set_with(function, &[])
}

/// [`set`] with more dimensions, each of a small, fixed set of values (a reject code,
/// an alert kind): never a tenant, account or id.
pub fn set_with(function: &'static str, dimensions: &[(&str, &str)]) -> MetricSet {
    let ns = namespace_from(|k| std::env::var(k).ok());
    let mut dims = vec![("Function", function)];
    dims.extend_from_slice(dimensions);
    MetricSet::new(&ns, &dims).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metrics namespace or dimension refused; using the defaults");
        MetricSet::new(DEFAULT_NAMESPACE, &[("Function", "unknown")])
            .expect("the default namespace and dimension are valid")
    })
}

/// Sends `set` to the process's sink (nothing when it holds no value).
pub fn publish(set: &MetricSet) {
    if set.dropped > 0 {
        tracing::warn!(
            dropped = set.dropped,
            "metric values CloudWatch would refuse were dropped"
        );
    }
    if !set.is_empty() {
        sink().publish(set);
    }
}

/// Records, logging instead of failing: a metric must never fail the work it measures.
pub fn record(result: Result<(), domain::metrics::EmfError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "metric not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespace_comes_from_the_environment_or_defaults() {
        let ns = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            namespace_from(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        };
        assert_eq!(ns(&[]), DEFAULT_NAMESPACE);
        assert_eq!(ns(&[("POWERTOOLS_METRICS_NAMESPACE", "Pt")]), "Pt");
        assert_eq!(
            ns(&[
                ("METRICS_NAMESPACE", "Mine"),
                ("POWERTOOLS_METRICS_NAMESPACE", "Pt")
            ]),
            "Mine"
        );
        assert_eq!(ns(&[("METRICS_NAMESPACE", "  ")]), DEFAULT_NAMESPACE);
    }

    #[test]
    fn a_tally_once_installed_receives_every_published_set() {
        let tally = tally().expect("nothing was published before in this test binary");
        assert!(Arc::ptr_eq(
            &tally,
            &super::tally().expect("the same tally")
        ));
        let mut s = set("ingest");
        s.count("EventsAccepted", 2).unwrap();
        s.property("tenant", "metrics-test-tenant").unwrap();
        publish(&s);
        let got = tally.summaries(Some("metrics-test-tenant"));
        assert_eq!(got["ingest"]["EventsAccepted"].sum, 2.0);
    }
}
