//! The adoption-by-tier page (`/app/adoption`): one segment's milestones by monthly
//! onboarding cohort, two cohorts side by side, the tier's KPI against its benchmark
//! and the accounts lagging. Every figure is the API's
//! `GET /v1/segments/{segment}/adoption?cohort=month` answer.

use crate::chart::{self, Point};
use crate::pages::{layout, segment_word};
use crate::{Answer, Signed};
use maud::{html, Markup};
use serde_json::Value;

/// The tiers the page offers (unassigned accounts have no milestones).
pub const TIERS: [&str; 4] = ["smb", "mid_market", "enterprise", "strategic"];

/// What the page shows, from its query string (unknown values dropped).
#[derive(Debug, Clone, PartialEq)]
pub struct AdoptionQuery {
    pub segment: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

fn is_cohort(v: &str) -> bool {
    v.len() == 7
        && v.bytes().enumerate().all(|(i, c)| {
            if i == 4 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

impl AdoptionQuery {
    pub fn from_query(q: &str) -> Self {
        let mut out = Self {
            segment: "smb".into(),
            a: None,
            b: None,
        };
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            match k.as_ref() {
                "segment" if TIERS.contains(&v.as_ref()) => out.segment = v.into_owned(),
                "a" if is_cohort(&v) => out.a = Some(v.into_owned()),
                "b" if is_cohort(&v) => out.b = Some(v.into_owned()),
                _ => {}
            }
        }
        out
    }

    /// The API path the page shows.
    pub fn api_path(&self) -> String {
        format!("/v1/segments/{}/adoption?cohort=month", self.segment)
    }
}

fn days(v: &Value) -> String {
    v.as_i64().map_or_else(|| "—".to_owned(), |d| d.to_string())
}

fn kpi_words(kind: &str) -> &'static str {
    match kind {
        "time_to_first_value" => "Time to first value (median days to the first milestone)",
        "sla_hit_rate" => "SLA hit rate",
        "escalation_rate" => "Escalation rate",
        "health_trend" => "Health trend (median score change)",
        _ => "Primary KPI",
    }
}

fn amount(v: f64, unit: &str) -> String {
    match unit {
        "percent" => format!("{v:.1} %"),
        "days" => format!("{v:.0} days"),
        _ => format!("{v:+.1} points"),
    }
}

fn kpi_box(k: &Value) -> Markup {
    let unit = k["unit"].as_str().unwrap_or_default();
    let bench = k["benchmark"].as_f64().unwrap_or(0.0);
    let cmp = if k["higher_is_better"].as_bool().unwrap_or(false) {
        "at least"
    } else {
        "at most"
    };
    let meters: Vec<&str> = k["meters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let (cls, verdict) = match k["meets_benchmark"].as_bool() {
        Some(true) => ("band band-green", "Meets benchmark"),
        Some(false) => ("band band-red", "Misses benchmark"),
        None => ("band", "Not measurable yet"),
    };
    html! {
        section class="kpi" aria-labelledby="kpi-h" data-kpi=(k["kind"].as_str().unwrap_or_default()) {
            h2 id="kpi-h" { "Primary KPI: " (kpi_words(k["kind"].as_str().unwrap_or_default())) }
            p {
                span class="big" data-value=[k["value"].as_f64()] {
                    (k["value"].as_f64().map_or_else(|| "no data".to_owned(), |v| amount(v, unit)))
                }
                " against a benchmark of " (cmp) " " strong { (amount(bench, unit)) } " "
                span class=(cls) { span class="dot" aria-hidden="true" {} (verdict) }
            }
            p class="empty" {
                "From " (k["sample"].as_u64().unwrap_or(0))
                @if unit == "percent" { " tickets" } @else { " accounts" }
                @if !meters.is_empty() { " · meters " (meters.join(" / ")) }
                @if unit != "days" { " · last " (k["window_days"].as_u64().unwrap_or(30)) " days" }
                " · benchmark from " (k["source"].as_str().unwrap_or("defaults").replace('_', " "))
            }
        }
    }
}

fn cohort_select(id: &str, label: &str, cohorts: &[String], chosen: Option<&str>) -> Markup {
    html! {
        label for=(id) { (label) }
        select id=(id) name=(id) {
            @for c in cohorts { option value=(c) selected[chosen == Some(c.as_str())] { (c) } }
        }
    }
}

/// The page. `cohorts` A and B default to the two most recent.
pub fn page(who: &Signed, q: &AdoptionQuery, a: &Answer) -> Markup {
    let cohorts: Vec<&Value> = a.body["cohorts"].as_array().into_iter().flatten().collect();
    let names: Vec<String> = cohorts
        .iter()
        .filter_map(|c| c["cohort"].as_str().map(str::to_owned))
        .collect();
    let pick = |want: &Option<String>, fallback: Option<&String>| {
        want.clone()
            .filter(|w| names.contains(w))
            .or_else(|| fallback.cloned())
    };
    let chosen_a = pick(&q.a, names.len().checked_sub(2).and_then(|i| names.get(i)));
    let chosen_b = pick(&q.b, names.last());
    let find = |name: &Option<String>| {
        name.as_ref()
            .and_then(|n| cohorts.iter().find(|c| c["cohort"].as_str() == Some(n)))
            .copied()
    };
    let (ca, cb) = (find(&chosen_a), find(&chosen_b));
    let milestones: Vec<&Value> = a.body["milestones"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let lagging: Vec<&Value> = a.body["lagging"].as_array().into_iter().flatten().collect();
    let tier = segment_word(&q.segment);
    layout(
        "Adoption by tier",
        Some(who),
        html! {
            h1 { "Adoption by tier: " (tier) }
            form method="get" action="/app/adoption" class="filters" aria-label="Segment and cohorts" {
                label for="segment" { "Segment" }
                select id="segment" name="segment" {
                    @for s in TIERS { option value=(s) selected[q.segment == s] { (segment_word(s)) } }
                }
                @if !names.is_empty() {
                    (cohort_select("a", "Cohort A", &names, chosen_a.as_deref()))
                    (cohort_select("b", "Cohort B", &names, chosen_b.as_deref()))
                }
                button type="submit" { "Compare" }
            }
            @if !a.ok() {
                p class="error" role="alert" { (a.message()) }
            } @else {
                (kpi_box(&a.body["kpi"]))
                @if cohorts.is_empty() {
                    p class="empty" { "No accounts in this segment yet." }
                } @else {
                    section aria-labelledby="compare-h" {
                        h2 id="compare-h" { "Cohort " (chosen_a.as_deref().unwrap_or("—")) " against cohort " (chosen_b.as_deref().unwrap_or("—")) }
                        table class="compare" id="compare" {
                            caption { "Days from onboarding to each milestone (median and 75th percentile of the accounts that reached it)." }
                            thead { tr {
                                th scope="col" { "Milestone" }
                                th scope="col" class="num" { "Due (days)" }
                                th scope="col" class="num" { (chosen_a.as_deref().unwrap_or("A")) " median" }
                                th scope="col" class="num" { (chosen_a.as_deref().unwrap_or("A")) " p75" }
                                th scope="col" class="num" { (chosen_a.as_deref().unwrap_or("A")) " reached" }
                                th scope="col" class="num" { (chosen_b.as_deref().unwrap_or("B")) " median" }
                                th scope="col" class="num" { (chosen_b.as_deref().unwrap_or("B")) " p75" }
                                th scope="col" class="num" { (chosen_b.as_deref().unwrap_or("B")) " reached" }
                                th scope="col" class="num" { "Median change (B − A)" }
                            } }
                            tbody {
                                @for (i, m) in milestones.iter().enumerate() {
                                    @let sa = ca.map(|c| &c["milestones"][i]);
                                    @let sb = cb.map(|c| &c["milestones"][i]);
                                    @let med = |s: Option<&Value>| s.and_then(|s| s["median_days"].as_i64());
                                    tr data-milestone=(m["name"].as_str().unwrap_or_default()) {
                                        th scope="row" { (m["name"].as_str().unwrap_or_default()) br; small { (m["meter"].as_str().unwrap_or_default()) } }
                                        td class="num" { (m["due_days"]) }
                                        td class="num" data-cohort="a" data-median=[med(sa)] { (sa.map_or("—".into(), |s| days(&s["median_days"]))) }
                                        td class="num" { (sa.map_or("—".into(), |s| days(&s["p75_days"]))) }
                                        td class="num" { (sa.map_or("—".into(), |s| format!("{} of {}", s["reached"], s["accounts"]))) }
                                        td class="num" data-cohort="b" data-median=[med(sb)] { (sb.map_or("—".into(), |s| days(&s["median_days"]))) }
                                        td class="num" { (sb.map_or("—".into(), |s| days(&s["p75_days"]))) }
                                        td class="num" { (sb.map_or("—".into(), |s| format!("{} of {}", s["reached"], s["accounts"]))) }
                                        td class="num" {
                                            @match (med(sa), med(sb)) {
                                                (Some(x), Some(y)) if y < x => { (format!("{} days faster", x - y)) }
                                                (Some(x), Some(y)) if y > x => { (format!("{} days slower", y - x)) }
                                                (Some(_), Some(_)) => { "same" }
                                                _ => { "—" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(first) = milestones.first() {
                        @let name = first["name"].as_str().unwrap_or_default();
                        @let points: Vec<Point> = cohorts.iter().map(|c| Point {
                            label: c["cohort"].as_str().unwrap_or_default().to_owned(),
                            value: c["milestones"][0]["median_days"].as_f64().unwrap_or(0.0),
                        }).collect();
                        figure {
                            figcaption { "Median days to " (name) " by onboarding cohort" }
                            (chart::bars("velocity", &format!("Median days to {name} by onboarding cohort"), &points))
                        }
                    }
                    table class="cohorts" id="cohorts" {
                        caption { "Every onboarding cohort of the segment (" (a.body["accounts"]) " accounts)." }
                        thead { tr {
                            th scope="col" { "Cohort" } th scope="col" class="num" { "Accounts" }
                            @for m in &milestones { th scope="col" { (m["name"].as_str().unwrap_or_default()) ": median / p75 days, reached, overdue" } }
                        } }
                        tbody {
                            @for c in &cohorts {
                                tr data-cohort=(c["cohort"].as_str().unwrap_or_default()) {
                                    th scope="row" { (c["cohort"].as_str().unwrap_or_default()) }
                                    td class="num" { (c["accounts"]) }
                                    @for s in c["milestones"].as_array().into_iter().flatten() {
                                        td { (days(&s["median_days"])) " / " (days(&s["p75_days"])) " · " (s["reached"]) " reached · " (s["overdue"]) " overdue" }
                                    }
                                }
                            }
                        }
                    }
                }
                section aria-labelledby="lagging-h" {
                    h2 id="lagging-h" { "Lagging accounts (" (a.body["lagging_total"]) ")" }
                    @if lagging.is_empty() {
                        p class="empty" { "No account is past a milestone's due day." }
                    } @else {
                        table class="lagging" id="lagging" {
                            caption { "Past a milestone's due day without reaching it, most days behind first." }
                            thead { tr {
                                th scope="col" { "Account" } th scope="col" { "Cohort" } th scope="col" { "Milestone" }
                                th scope="col" class="num" { "Due (days)" } th scope="col" class="num" { "Age (days)" }
                                th scope="col" class="num" { "Days behind" } th scope="col" { "Owner" }
                            } }
                            tbody {
                                @for l in &lagging {
                                    @let id = l["account"].as_str().unwrap_or_default();
                                    tr data-account=(id) {
                                        td { a href=(format!("/app/accounts/{id}")) { (l["name"].as_str().unwrap_or(id)) } }
                                        td { (l["cohort"].as_str().unwrap_or_default()) }
                                        td { (l["milestone"].as_str().unwrap_or_default()) }
                                        td class="num" { (l["due_days"]) }
                                        td class="num" { (l["age_days"]) }
                                        td class="num" data-days-behind=(l["days_behind"]) { (l["days_behind"]) }
                                        td { (l["owner"].as_str().unwrap_or("—")) }
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

    #[test]
    fn the_query_keeps_known_tiers_and_well_formed_cohorts_only() {
        let q = AdoptionQuery::from_query("segment=enterprise&a=2026-07&b=2026-1x&x=1");
        assert_eq!(q.segment, "enterprise");
        assert_eq!(q.a.as_deref(), Some("2026-07"));
        assert_eq!(q.b, None);
        assert_eq!(
            AdoptionQuery::from_query("segment=unassigned").segment,
            "smb"
        );
        assert_eq!(
            q.api_path(),
            "/v1/segments/enterprise/adoption?cohort=month"
        );
    }
}
