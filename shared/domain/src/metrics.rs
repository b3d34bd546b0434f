//! CloudWatch Embedded Metric Format (EMF): the metrics every function emits, as the
//! JSON documents CloudWatch Logs turns into metrics, and the in-process tally of those
//! same documents that the local runner serves (`GET /local/metrics`).
//!
//! Pure: a [`MetricSet`] is rendered to documents by [`MetricSet::to_emf`], and a
//! [`MetricsSink`] decides where they go (stdout on Lambda, a [`Tally`] locally).
//!
//! What the specification requires, and how this module keeps to it:
//! - the root holds `_aws` with a `Timestamp` (milliseconds since the epoch) and a
//!   `CloudWatchMetrics` array of directives; each directive names a `Namespace`, its
//!   `Dimensions` (an array of dimension sets, each an array of at most 30 keys) and its
//!   `Metrics` (at most 100 definitions: `Name`, optional `Unit`);
//! - every dimension key and metric name is a member of the root: a dimension's value is
//!   a string, a metric's value a number or an array of at most 100 numbers (more metrics
//!   or values are split over several documents);
//! - CloudWatch refuses NaN, infinities and magnitudes beyond 2^360: such values are
//!   dropped (and counted in [`MetricSet::dropped`]) instead of invalidating the document;
//! - names, dimension values and properties cannot collide in the root object: a
//!   property named like a metric or dimension, or `_aws`, is refused.
//!
//! Dimensions are low-cardinality on purpose: `Function` only. A tenant id as a
//! dimension would create one custom metric per tenant and metric name (each billed,
//! and each alarm needing its own), so the tenant travels as a property: searchable in
//! CloudWatch Logs Insights, free of metric cardinality.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// At most this many metric definitions per directive (and so per document here).
pub const MAX_METRICS_PER_DOCUMENT: usize = 100;
/// At most this many values in one metric's array.
pub const MAX_VALUES_PER_METRIC: usize = 100;
/// At most this many keys in one dimension set.
pub const MAX_DIMENSIONS: usize = 30;
/// CloudWatch rejects values whose magnitude exceeds 2^360.
pub const MAX_MAGNITUDE: f64 = 2.348_542_582_773_833e108;

/// The CloudWatch units this code uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
    Bytes,
    None,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::None => "None",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Unit::Count,
            Unit::Milliseconds,
            Unit::Seconds,
            Unit::Bytes,
            Unit::None,
        ]
        .into_iter()
        .find(|u| u.as_str() == s)
    }
}

/// Why a set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmfError {
    #[error(
        "namespace '{0}' must be 1-255 characters of [A-Za-z0-9._#:/-] and not start with ':'"
    )]
    Namespace(String),
    #[error("dimension '{0}': names are 1-255 ASCII characters not starting with ':', values 1-1024 ASCII characters")]
    Dimension(String),
    #[error("more than {MAX_DIMENSIONS} dimensions")]
    TooManyDimensions,
    #[error("'{0}' is already a metric or dimension name, or reserved")]
    Collision(String),
    #[error("metric name '{0}' must be 1-255 characters")]
    MetricName(String),
    #[error("metric '{0}' was recorded with two units")]
    UnitConflict(String),
}

/// The metrics of one unit of work (an invocation, a tenant's part of one), with one
/// dimension set.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSet {
    namespace: String,
    dimensions: Vec<(String, String)>,
    metrics: BTreeMap<String, (Unit, Vec<f64>)>,
    properties: BTreeMap<String, Value>,
    /// Values refused as not representable in CloudWatch (NaN, infinite, too large).
    pub dropped: usize,
}

fn ascii_printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

impl MetricSet {
    pub fn new(namespace: &str, dimensions: &[(&str, &str)]) -> Result<Self, EmfError> {
        let ns_ok = (1..=255).contains(&namespace.len())
            && !namespace.starts_with(':')
            && namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._#:/-".contains(c));
        if !ns_ok {
            return Err(EmfError::Namespace(namespace.to_owned()));
        }
        if dimensions.len() > MAX_DIMENSIONS {
            return Err(EmfError::TooManyDimensions);
        }
        let mut dims: Vec<(String, String)> = Vec::with_capacity(dimensions.len());
        for (k, v) in dimensions {
            let ok = (1..=255).contains(&k.len())
                && !k.starts_with(':')
                && ascii_printable(k)
                && !k.trim().is_empty()
                && (1..=1024).contains(&v.len())
                && ascii_printable(v)
                && !v.trim().is_empty();
            if !ok {
                return Err(EmfError::Dimension((*k).to_owned()));
            }
            if *k == "_aws" || dims.iter().any(|(d, _)| d == k) {
                return Err(EmfError::Collision((*k).to_owned()));
            }
            dims.push(((*k).to_owned(), (*v).to_owned()));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            dimensions: dims,
            metrics: BTreeMap::new(),
            properties: BTreeMap::new(),
            dropped: 0,
        })
    }

    fn taken(&self, name: &str) -> bool {
        name == "_aws"
            || self.dimensions.iter().any(|(d, _)| d == name)
            || self.properties.contains_key(name)
    }

    /// Records one value of `name`.
    pub fn put(&mut self, name: &str, unit: Unit, value: f64) -> Result<(), EmfError> {
        if !(1..=255).contains(&name.len()) {
            return Err(EmfError::MetricName(name.to_owned()));
        }
        if self.taken(name) {
            return Err(EmfError::Collision(name.to_owned()));
        }
        let entry = self
            .metrics
            .entry(name.to_owned())
            .or_insert_with(|| (unit, Vec::new()));
        if entry.0 != unit {
            return Err(EmfError::UnitConflict(name.to_owned()));
        }
        if value.is_finite() && value.abs() <= MAX_MAGNITUDE {
            entry.1.push(value);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        Ok(())
    }

    /// Records a count (converted to a float as CloudWatch stores it).
    pub fn count(&mut self, name: &str, n: u64) -> Result<(), EmfError> {
        // Precision loss above 2^53 is CloudWatch's own (it stores doubles).
        #[allow(clippy::cast_precision_loss)]
        self.put(name, Unit::Count, n as f64)
    }

    /// A member of the root that is not a metric (searchable in Logs Insights).
    pub fn property(&mut self, key: &str, value: impl Into<Value>) -> Result<(), EmfError> {
        if key == "_aws"
            || self.dimensions.iter().any(|(d, _)| d == key)
            || self.metrics.contains_key(key)
        {
            return Err(EmfError::Collision(key.to_owned()));
        }
        self.properties.insert(key.to_owned(), value.into());
        Ok(())
    }

    /// No value recorded (nothing worth a document).
    pub fn is_empty(&self) -> bool {
        self.metrics.values().all(|(_, v)| v.is_empty())
    }

    /// The EMF documents of this set at `timestamp_ms`: one, or more when a directive
    /// would exceed 100 metrics or a metric 100 values.
    pub fn to_emf(&self, timestamp_ms: i64) -> Vec<Value> {
        let metrics: Vec<(&String, &(Unit, Vec<f64>))> = self
            .metrics
            .iter()
            .filter(|(_, (_, v))| !v.is_empty())
            .collect();
        let mut docs = Vec::new();
        for group in metrics.chunks(MAX_METRICS_PER_DOCUMENT) {
            let rounds = group
                .iter()
                .map(|(_, (_, v))| v.len().div_ceil(MAX_VALUES_PER_METRIC))
                .max()
                .unwrap_or(0);
            for round in 0..rounds {
                let mut root = Map::new();
                let mut definitions = Vec::new();
                for (name, (unit, values)) in group {
                    let start = round * MAX_VALUES_PER_METRIC;
                    let Some(part) =
                        values.get(start..values.len().min(start + MAX_VALUES_PER_METRIC))
                    else {
                        continue;
                    };
                    if part.is_empty() {
                        continue;
                    }
                    definitions.push(serde_json::json!({"Name": name, "Unit": unit.as_str()}));
                    let value = match part {
                        [one] => Value::from(*one),
                        many => Value::from(many.to_vec()),
                    };
                    root.insert((*name).clone(), value);
                }
                for (k, v) in &self.dimensions {
                    root.insert(k.clone(), Value::from(v.clone()));
                }
                for (k, v) in &self.properties {
                    root.insert(k.clone(), v.clone());
                }
                let keys: Vec<&String> = self.dimensions.iter().map(|(k, _)| k).collect();
                root.insert(
                    "_aws".into(),
                    serde_json::json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": [keys],
                            "Metrics": definitions,
                        }],
                    }),
                );
                docs.push(Value::Object(root));
            }
        }
        docs
    }
}

/// Where metric sets go: stdout as EMF on Lambda, a [`Tally`] in the local runner.
pub trait MetricsSink: Send + Sync {
    fn publish(&self, set: &MetricSet);
}

/// Drops everything (tests and tools that emit no metrics).
pub struct Discard;

impl MetricsSink for Discard {
    fn publish(&self, _: &MetricSet) {}
}

/// What a [`Tally`] knows of one metric of one function.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub unit: &'static str,
    /// Values received (a counter's samples, a distribution's observations).
    pub samples: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Percentiles over the last [`Tally::KEPT`] values (nearest rank).
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Default)]
struct Series {
    unit: &'static str,
    samples: u64,
    sum: f64,
    min: f64,
    max: f64,
    recent: std::collections::VecDeque<f64>,
}

/// Nearest-rank percentile `p` (0-100] of `values` (any order); 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// (function, tenant or `None` for all, metric name with its other dimensions).
type SeriesKey = (String, Option<String>, String);

/// The local runner's CloudWatch: reads the EMF documents the functions emit, as
/// CloudWatch Logs would, and keeps per (function, metric) summaries since start,
/// optionally of one tenant only (the documents' `tenant` property).
#[derive(Default)]
pub struct Tally {
    series: Mutex<BTreeMap<SeriesKey, Series>>,
}

impl Tally {
    /// Values kept per series for the percentiles.
    pub const KEPT: usize = 10_000;

    /// Reads one EMF document; documents that are not EMF are ignored.
    pub fn read(&self, doc: &Value) {
        let Some(directives) = doc
            .pointer("/_aws/CloudWatchMetrics")
            .and_then(Value::as_array)
        else {
            return;
        };
        let tenant = doc.get("tenant").and_then(Value::as_str).map(str::to_owned);
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        for d in directives {
            let keys: Vec<&str> = d
                .pointer("/Dimensions/0")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let dim = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or("-");
            let function = if keys.contains(&"Function") {
                dim("Function")
            } else {
                "-"
            }
            .to_owned();
            // Other dimensions name the series: `EventsRejected[Code=invalid_meter]`.
            let others: Vec<String> = keys
                .iter()
                .filter(|k| **k != "Function")
                .map(|k| format!("{k}={}", dim(k)))
                .collect();
            let suffix = if others.is_empty() {
                String::new()
            } else {
                format!("[{}]", others.join(","))
            };
            for m in d
                .get("Metrics")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = m.get("Name").and_then(Value::as_str) else {
                    continue;
                };
                let unit = m
                    .get("Unit")
                    .and_then(Value::as_str)
                    .and_then(Unit::parse)
                    .unwrap_or(Unit::None)
                    .as_str();
                let values: Vec<f64> = match doc.get(name) {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
                    Some(v) => v.as_f64().into_iter().collect(),
                    None => Vec::new(),
                };
                let keys = [None, tenant.clone()];
                for key in keys.iter().take(if tenant.is_some() { 2 } else { 1 }) {
                    let s = series
                        .entry((function.clone(), key.clone(), format!("{name}{suffix}")))
                        .or_default();
                    s.unit = unit;
                    for &v in &values {
                        if s.samples == 0 {
                            (s.min, s.max) = (v, v);
                        }
                        s.samples = s.samples.saturating_add(1);
                        s.sum += v;
                        s.min = s.min.min(v);
                        s.max = s.max.max(v);
                        if s.recent.len() == Self::KEPT {
                            s.recent.pop_front();
                        }
                        s.recent.push_back(v);
                    }
                }
            }
        }
    }

    /// function → metric → summary, of every tenant (`None`) or of one. A metric with
    /// dimensions besides `Function` is named with them: `EventsRejected[Code=invalid_meter]`.
    pub fn summaries(&self, tenant: Option<&str>) -> BTreeMap<String, BTreeMap<String, Summary>> {
        let mut out: BTreeMap<String, BTreeMap<String, Summary>> = BTreeMap::new();
        let Ok(series) = self.series.lock() else {
            return out;
        };
        for ((function, t, name), s) in series.iter() {
            if t.as_deref() != tenant {
                continue;
            }
            let recent: Vec<f64> = s.recent.iter().copied().collect();
            out.entry(function.clone()).or_default().insert(
                name.clone(),
                Summary {
                    unit: s.unit,
                    samples: s.samples,
                    sum: s.sum,
                    min: s.min,
                    max: s.max,
                    p50: percentile(&recent, 50.0),
                    p99: percentile(&recent, 99.0),
                },
            );
        }
        out
    }
}

impl MetricsSink for Tally {
    fn publish(&self, set: &MetricSet) {
        for doc in set.to_emf(0) {
            self.read(&doc);
        }
    }
}

#[cfg(test)]
mod tests;
