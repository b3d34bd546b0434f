//! The data-quality page (ops): the latest audit's KPIs each with its trend over the
//! last runs, its findings (anomalies, gaps, drift) with their explanations, and per
//! definition how many events were held in quarantine and released; an admin replays
//! a definition's held events from here (`POST /v1/definitions/{meter}/quarantine/replay`).

use crate::chart::{self, Point};
use crate::pages::layout;
use crate::view;
use crate::{Answer, Signed};
use maud::{html, Markup};
use serde_json::Value;

/// Audit runs the trend charts show (the API's page; 7 days by default).
pub const TREND_RUNS: usize = 48;

/// The KPIs shown, in order: (trend key, label, a rate (else a count)).
const KPIS: [(&str, &str, bool); 12] = [
    ("duplicate_rate", "Duplicates", true),
    (
        "unassociated_rate",
        "Events of accounts without a profile",
        true,
    ),
    ("timestamp_defaulted_rate", "Defaulted timestamps", true),
    ("timestamp_skewed_rate", "Skewed timestamps (refused)", true),
    ("late_rate", "Late events", true),
    ("schema_violation_rate", "Schema violations (refused)", true),
    ("unmapped_source_rate", "Unmapped source events", true),
    ("correction_rate", "Corrections", true),
    ("critical_usage_gap_rate", "Critical usage gaps", true),
    (
        "drift_windows",
        "Rollup windows drifting from the ledger",
        false,
    ),
    ("negative_balances", "Negative balances", false),
    ("findings", "Findings", false),
];

/// What the page says after a replay (from its redirect's query).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notice {
    pub meter: Option<String>,
    pub replayed: Option<u64>,
    pub remaining: bool,
}

impl Notice {
    pub fn from_query(q: &str) -> Self {
        let mut n = Self::default();
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "meter" => {
                    n.meter = domain::ids::MeterName::parse(&v)
                        .ok()
                        .map(|m| m.to_string())
                }
                "replayed" => n.replayed = v.parse().ok(),
                "remaining" => n.remaining = v == "true",
                _ => {}
            }
        }
        n
    }

    /// The redirect after a replay of `meter` that queued `replayed` held events.
    pub fn link(meter: &str, replayed: u64, remaining: bool) -> String {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("meter", meter)
            .append_pair("replayed", &replayed.to_string())
            .append_pair("remaining", if remaining { "true" } else { "false" })
            .finish();
        format!("/app/quality?{q}")
    }
}

/// A KPI's value in words: a rate as a percentage with its counts, else the count.
fn shown(v: &Value, rate: bool) -> String {
    if rate {
        match v["value"].as_f64() {
            Some(x) => format!(
                "{:.2} % ({} of {})",
                x * 100.0,
                v["numerator"].as_u64().unwrap_or(0),
                v["denominator"].as_u64().unwrap_or(0)
            ),
            None => "no events".to_owned(),
        }
    } else {
        v.as_u64().map_or_else(|| "—".to_owned(), |n| n.to_string())
    }
}

/// The latest report's figure of a trend key.
fn latest(report: &Value, key: &str) -> Value {
    let count = |list: &Value| Value::from(list.as_array().map_or(0, Vec::len));
    match key {
        "critical_usage_gap_rate" => report["critical_usage_gap_rate"].clone(),
        "findings" => report["findings_total"].clone(),
        "drift_windows" => count(&report["drift"]),
        "negative_balances" => count(&report["negative_balances"]),
        _ => report["kpis"][key].clone(),
    }
}

/// A trend series (`[{run_at, value}]`) as chart points (a rate in percent).
pub fn points(series: &Value, rate: bool) -> Vec<Point> {
    series
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let v = p["value"].as_f64()?;
            Some(Point {
                label: p["run_at"].as_str()?.get(..16)?.replace('T', " "),
                value: if rate { v * 100.0 } else { v },
            })
        })
        .collect()
}

/// Events held now per definition (`held` of `GET /v1/definitions/{meter}/quarantine`);
/// a definition whose count could not be read is absent.
pub type HeldNow = std::collections::BTreeMap<String, u64>;

pub fn page(
    who: &Signed,
    latest_run: &Answer,
    runs: &Answer,
    held_now: &HeldNow,
    notice: &Notice,
) -> Markup {
    let r = &latest_run.body;
    layout(
        "Data quality",
        Some(who),
        html! {
            h1 { "Data quality" }
            @if let (Some(m), Some(n)) = (&notice.meter, notice.replayed) {
                p class="notice" role="status" id="replayed" data-replayed=(n) {
                    (n) " held event(s) of " code { (m) } " queued to be counted"
                    @if notice.remaining { "; more are held: replay again" } "."
                }
            }
            @if latest_run.status == 404 {
                p class="empty" { "No audit has run yet. The audit runs hourly (locally: " code { "POST /local/jobs/audit" } ")." }
            } @else if !latest_run.ok() {
                p class="error" role="alert" { (latest_run.message()) }
            } @else {
                p class="facts" id="audit-run" { "Latest audit " strong { (r["run_at"].as_str().unwrap_or_default()) }
                    ", covering receipts of " (r["from"].as_str().unwrap_or_default()) " to " (r["to"].as_str().unwrap_or_default()) "." }
                p { (r["summary"].as_str().unwrap_or_default()) }
                section aria-labelledby="kpis-h" {
                    h2 id="kpis-h" { "KPIs and their trend" }
                    @if !runs.ok() { p class="error" { (runs.message()) } }
                    table class="kpis" id="kpis" {
                        thead { tr { th scope="col" { "KPI" } th scope="col" { "Latest" } th scope="col" { "Trend over the last runs" } } }
                        tbody {
                            @for (key, label, rate) in KPIS {
                                @let pts = points(&runs.body["trend"][key], rate);
                                tr data-kpi=(key) {
                                    th scope="row" { (label) }
                                    td class="num" { (shown(&latest(r, key), rate)) }
                                    td {
                                        @if pts.is_empty() { span class="empty" { "no runs" } }
                                        @else { (chart::bars(&format!("kpi-{key}"), &format!("{label}{} per audit run", if rate { " (%)" } else { "" }), &pts)) }
                                    }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="findings-h" {
                    h2 id="findings-h" { "Anomalies and gaps" }
                    @let findings = r["findings"].as_array().cloned().unwrap_or_default();
                    @if findings.is_empty() { p class="empty" id="no-findings" { "No anomalies, gaps or drift in the latest audit." } }
                    @else {
                        @if r["findings_total"].as_u64().unwrap_or(0) > findings.len() as u64 {
                            p { (findings.len()) " of " (r["findings_total"]) " findings shown." }
                        }
                        ol class="findings" id="findings" {
                            @for f in &findings {
                                @let severity = f["severity"].as_str().unwrap_or_default();
                                li data-code=(f["code"].as_str().unwrap_or_default()) {
                                    span class=(format!("severity severity-{severity}")) { (view::humanize(severity)) }
                                    " " strong { (view::humanize(f["code"].as_str().unwrap_or_default())) }
                                    " · " code { (f["meter"].as_str().unwrap_or_default()) }
                                    @if let Some(a) = f["account"].as_str() { " · account " a href=(format!("/app/accounts/{a}")) { (a) } }
                                    @if let Some(s) = f["since"].as_str() { " · since " (s) }
                                    p { (f["explanation"].as_str().unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="quarantine-h" {
                    h2 id="quarantine-h" { "Quarantine by definition" }
                    p { "Events of deleted or deprecated definitions are held, not lost. Restoring a definition counts what it held; "
                        "a replay finishes a large backlog (the definition must be active). "
                        "\"Held now\" is counted as the page loads; the other two columns are the audit window's." }
                    table class="quarantine" id="quarantine" {
                        thead { tr { th scope="col" { "Definition" } th scope="col" { "Criticality" } th scope="col" class="num" { "Held (audit window)" }
                            th scope="col" class="num" { "Released" } th scope="col" class="num" { "Held now" } @if who.is_admin() { th scope="col" { "Action" } } } }
                        tbody {
                            @for d in r["definitions"].as_array().into_iter().flatten() {
                                @let m = d["meter"].as_str().unwrap_or_default();
                                @let held = d["kpis"]["quarantined_events"].as_u64().unwrap_or(0);
                                @let now = held_now.get(m).copied();
                                tr data-meter=(m) data-held=(held) {
                                    th scope="row" { a href=(format!("/app/definitions/{m}")) { (m) } }
                                    td { (d["criticality"].as_str().unwrap_or_default()) }
                                    td class="num" { (held) }
                                    td class="num" { (d["kpis"]["released_events"].as_u64().unwrap_or(0)) }
                                    td class="num" data-held-now=[now] {
                                        @match now { Some(n) => (n), None => span class="empty" { "unknown" } }
                                    }
                                    @if who.is_admin() {
                                        td {
                                            @if held > 0 || now.is_some_and(|n| n > 0) {
                                                form method="post" action=(format!("/app/quality/replay/{m}")) {
                                                    input type="hidden" name="csrf" value=(who.csrf);
                                                    button type="submit" aria-label=(format!("Replay held events of {m}")) { "Replay held events" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_read_as_percentages_with_their_counts_and_counts_as_numbers() {
        assert_eq!(
            shown(
                &json!({"numerator": 3, "denominator": 200, "value": 0.015}),
                true
            ),
            "1.50 % (3 of 200)"
        );
        assert_eq!(
            shown(
                &json!({"numerator": 0, "denominator": 0, "value": null}),
                true
            ),
            "no events"
        );
        assert_eq!(shown(&json!(4), false), "4");
    }

    #[test]
    fn a_trend_is_charted_in_percent_and_runs_without_a_value_are_left_out() {
        let series = json!([
            {"run_at": "2026-11-29T10:00:00Z", "value": 0.02},
            {"run_at": "2026-11-29T11:00:00Z", "value": null},
        ]);
        let pts = points(&series, true);
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].label, "2026-11-29 10:00");
        assert!((pts[0].value - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_replay_notice_round_trips_through_its_link_and_drops_what_is_not_a_meter() {
        let link = Notice::link("storage_gb", 12, true);
        let n = Notice::from_query(link.split_once('?').unwrap().1);
        assert_eq!(
            n,
            Notice {
                meter: Some("storage_gb".into()),
                replayed: Some(12),
                remaining: true
            }
        );
        assert_eq!(Notice::from_query("meter=%3Cb%3E&replayed=x").meter, None);
    }
}
