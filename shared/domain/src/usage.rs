//! Usage queries: parameters, and the pure folding of day rollups into hour, day or
//! month series (months are summed from days; see docs/adr/0002).

use crate::ids::{MeterName, ServiceLine, Stage};
use crate::input::{input_error, InputError};
use crate::rollup::Bucket;
use crate::rollup::RollupRow;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Meter,
    Stage,
    ServiceLine,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
    pub meter: Option<MeterName>,
    pub stage: Option<Stage>,
    pub service_line: Option<ServiceLine>,
    pub group_by: Vec<Dimension>,
}

/// Widest range per granularity, in windows: 31 days by hour, 400 days by day, 36
/// months by month. Every granularity is read from day rollups (docs/adr/0002), so
/// these also bound the items one query reads: at most ~1,100 days per series.
pub const MAX_HOUR_WINDOWS: i64 = 31 * 24;
pub const MAX_DAY_WINDOWS: i64 = 400;
pub const MAX_MONTH_WINDOWS: i64 = 36;

/// The most windows a query of this granularity may span.
pub fn max_windows(g: Granularity) -> i64 {
    match g {
        Granularity::Hour => MAX_HOUR_WINDOWS,
        Granularity::Day => MAX_DAY_WINDOWS,
        Granularity::Month => MAX_MONTH_WINDOWS,
    }
}

const PARAMS: &[&str] = &[
    "meter",
    "from",
    "to",
    "granularity",
    "stage",
    "service_line",
    "group_by",
];

fn instant(name: &str, v: &str) -> Result<DateTime<Utc>, InputError> {
    let bad = || {
        input_error(
            "invalid_parameter",
            format!("{name} '{v}' is neither RFC 3339 nor YYYY-MM-DD in years 1-9999"),
        )
    };
    let t = match DateTime::parse_from_rfc3339(v) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(|d| Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)))
            .map_err(|_| bad())?,
    };
    // Four-digit years only: window arithmetic then never leaves chrono's range.
    if (1..=9999).contains(&t.year()) {
        Ok(t)
    } else {
        Err(bad())
    }
}

impl UsageQuery {
    /// Reads query-string parameters; unknown parameters are refused so typos show.
    pub fn parse(params: &[(String, String)], now: DateTime<Utc>) -> Result<Self, InputError> {
        let mut map = BTreeMap::new();
        for (k, v) in params {
            if !PARAMS.contains(&k.as_str()) {
                return Err(input_error(
                    "unknown_parameter",
                    format!(
                        "unknown parameter '{k}'; expected one of {}",
                        PARAMS.join(", ")
                    ),
                ));
            }
            if map.insert(k.as_str(), v.as_str()).is_some() {
                return Err(input_error(
                    "invalid_parameter",
                    format!("parameter '{k}' given twice"),
                ));
            }
        }
        let granularity = match map.get("granularity").copied() {
            None | Some("day") => Granularity::Day,
            Some("hour") => Granularity::Hour,
            Some("month") => Granularity::Month,
            Some(g) => {
                return Err(input_error(
                    "invalid_parameter",
                    format!("granularity '{g}' is not one of hour, day, month"),
                ))
            }
        };
        let to = map
            .get("to")
            .map(|v| instant("to", v))
            .transpose()?
            .unwrap_or(now);
        let from = map
            .get("from")
            .map(|v| instant("from", v))
            .transpose()?
            .unwrap_or(to - Duration::days(30));
        if from >= to {
            return Err(input_error("invalid_parameter", "from must be before to"));
        }
        let meter = map
            .get("meter")
            .map(|m| {
                MeterName::parse(m).map_err(|e| input_error("invalid_parameter", e.to_string()))
            })
            .transpose()?;
        let stage = map
            .get("stage")
            .map(|s| {
                Stage::parse(s).ok_or_else(|| {
                    input_error(
                        "invalid_parameter",
                        format!("stage '{s}' is not one of requested, delivered, billed"),
                    )
                })
            })
            .transpose()?;
        let service_line = map
            .get("service_line")
            .map(|s| {
                ServiceLine::parse(s).map_err(|e| input_error("invalid_parameter", e.to_string()))
            })
            .transpose()?;
        let mut group_by = Vec::new();
        if let Some(g) = map.get("group_by") {
            for d in g.split(',').filter(|d| !d.is_empty()) {
                group_by.push(match d {
                    "meter" => Dimension::Meter,
                    "stage" => Dimension::Stage,
                    "service_line" => Dimension::ServiceLine,
                    _ => {
                        return Err(input_error(
                            "invalid_parameter",
                            format!("group_by '{d}' is not one of meter, stage, service_line"),
                        ))
                    }
                });
            }
            group_by.sort();
            group_by.dedup();
        }
        let q = UsageQuery {
            from: floor(from, granularity),
            to,
            granularity,
            meter,
            stage,
            service_line,
            group_by,
        };
        let windows = q.window_count();
        let max = max_windows(granularity);
        if windows > max {
            let unit = match granularity {
                Granularity::Hour => "hour",
                Granularity::Day => "day",
                Granularity::Month => "month",
            };
            return Err(input_error(
                "range_too_large",
                format!("the range spans {windows} {unit} windows; at most {max} by {unit}: narrow the range or use a coarser granularity"),
            ));
        }
        Ok(q)
    }

    /// Windows from `from` (floored) up to `to`, the last one partial: what
    /// [`UsageQuery::windows`] returns, counted without building it.
    pub fn window_count(&self) -> i64 {
        let secs = (self.to - self.from).num_seconds().max(0);
        let per = |unit: i64| (secs + unit - 1) / unit;
        match self.granularity {
            Granularity::Hour => per(3600),
            Granularity::Day => per(86_400),
            Granularity::Month => {
                let months = |t: DateTime<Utc>| i64::from(t.year()) * 12 + i64::from(t.month0());
                let whole = months(self.to) - months(self.from);
                whole + i64::from(floor(self.to, Granularity::Month) < self.to)
            }
        }
    }

    /// Inclusive day range of rollup items to read.
    pub fn days(&self) -> (NaiveDate, NaiveDate) {
        (
            self.from.date_naive(),
            (self.to - Duration::milliseconds(1)).date_naive(),
        )
    }

    /// Window starts from `from` (floored) up to, not including, `to`.
    pub fn windows(&self) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = self.from;
        while t < self.to {
            out.push(t);
            t = next(t, self.granularity);
        }
        out
    }
}

/// Start of the window that contains `t`.
pub fn floor(t: DateTime<Utc>, g: Granularity) -> DateTime<Utc> {
    let d = t.date_naive();
    let naive = match g {
        Granularity::Hour => d.and_hms_opt(t.hour(), 0, 0),
        Granularity::Day => d.and_hms_opt(0, 0, 0),
        Granularity::Month => d.with_day(1).and_then(|d| d.and_hms_opt(0, 0, 0)),
    };
    naive.map_or(t, |n| Utc.from_utc_datetime(&n))
}

fn next(t: DateTime<Utc>, g: Granularity) -> DateTime<Utc> {
    match g {
        Granularity::Hour => t + Duration::hours(1),
        Granularity::Day => t + Duration::days(1),
        Granularity::Month => t
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(t + Duration::days(31)),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter: Option<MeterName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_line: Option<ServiceLine>,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    pub events: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    pub events: i64,
}

/// Folds rollup rows into the requested series. Without `group_by` every window is
/// present (zeros included); with it, only non-empty (window, group) points are.
pub fn summarize(rows: &[RollupRow], q: &UsageQuery) -> (Vec<Point>, Totals) {
    type GroupKey = (Option<MeterName>, Option<Stage>, Option<ServiceLine>);
    let mut acc: BTreeMap<(DateTime<Utc>, GroupKey), Bucket> = BTreeMap::new();
    let has = |d| q.group_by.contains(&d);
    for row in rows {
        let k = &row.key;
        if q.meter.as_ref().is_some_and(|m| m != &k.meter)
            || q.stage.is_some_and(|s| s != k.stage)
            || q.service_line
                .as_ref()
                .is_some_and(|l| l != &k.service_line)
        {
            continue;
        }
        let group: GroupKey = (
            has(Dimension::Meter).then(|| k.meter.clone()),
            has(Dimension::Stage).then_some(k.stage),
            has(Dimension::ServiceLine).then(|| k.service_line.clone()),
        );
        let day_start = Utc.from_utc_datetime(&k.day.and_time(NaiveTime::MIN));
        // Hour buckets are summed even for day and month windows, so a range that
        // starts or ends mid-day stays exact.
        for (h, b) in row.hours.iter().enumerate() {
            let start = day_start + Duration::hours(h as i64);
            if start >= q.from && start < q.to {
                acc.entry((floor(start, q.granularity), group.clone()))
                    .or_default()
                    .add(*b);
            }
        }
    }
    acc.retain(|_, b| b.events != 0 || !b.quantity.is_zero());
    let mut totals = Totals {
        quantity: Decimal::ZERO,
        events: 0,
    };
    let point = |start: DateTime<Utc>, g: &GroupKey, b: Bucket| Point {
        start,
        end: next(start, q.granularity),
        meter: g.0.clone(),
        stage: g.1,
        service_line: g.2.clone(),
        quantity: b.quantity.normalize(),
        events: b.events,
    };
    for b in acc.values() {
        totals.quantity += b.quantity;
        totals.events += b.events;
    }
    totals.quantity = totals.quantity.normalize();
    let points = if q.group_by.is_empty() {
        let empty: GroupKey = (None, None, None);
        q.windows()
            .into_iter()
            .map(|w| {
                point(
                    w,
                    &empty,
                    acc.get(&(w, empty.clone())).copied().unwrap_or_default(),
                )
            })
            .collect()
    } else {
        acc.iter()
            .map(|((start, g), b)| point(*start, g, *b))
            .collect()
    };
    (points, totals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::AccountId;
    use crate::keys::Scope;
    use crate::rollup::RollupKey;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn row(day: u32, meter: &str, stage: Stage, hours: &[(usize, i64)]) -> RollupRow {
        let mut hs = [Bucket::default(); 24];
        let mut total = Bucket::default();
        for &(h, q) in hours {
            hs[h] = Bucket {
                quantity: Decimal::from(q),
                events: 1,
            };
            total.add(hs[h]);
        }
        RollupRow {
            key: RollupKey {
                scope: Scope::Account(AccountId::parse("a").unwrap()),
                day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
                meter: MeterName::parse(meter).unwrap(),
                stage,
                service_line: ServiceLine::default_line(),
            },
            total,
            hours: hs,
        }
    }

    #[test]
    fn defaults_are_the_last_thirty_days_by_day() {
        let q = UsageQuery::parse(&[], now()).unwrap();
        assert_eq!(q.granularity, Granularity::Day);
        assert_eq!(q.to, now());
        assert_eq!(q.from, Utc.with_ymd_and_hms(2026, 10, 26, 0, 0, 0).unwrap());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (p, code) in [
            (vec![("granularity", "week")], "invalid_parameter"),
            (vec![("from", "monday")], "invalid_parameter"),
            (
                vec![("from", "2026-11-02"), ("to", "2026-11-01")],
                "invalid_parameter",
            ),
            (vec![("stage", "x")], "invalid_parameter"),
            (vec![("metre", "x")], "unknown_parameter"),
            (
                vec![("granularity", "hour"), ("from", "2026-01-01")],
                "range_too_large",
            ),
        ] {
            assert_eq!(
                UsageQuery::parse(&params(&p), now()).unwrap_err().code,
                code,
                "{p:?}"
            );
        }
    }

    #[test]
    fn a_century_and_a_half_by_month_is_refused_as_too_large() {
        let p = params(&[
            ("granularity", "month"),
            ("from", "1876-01-01"),
            ("to", "2026-01-01"),
        ]);
        let err = UsageQuery::parse(&p, now()).unwrap_err();
        assert_eq!(err.code, "range_too_large");
        assert!(
            err.message.contains("at most 36 by month"),
            "{}",
            err.message
        );
    }

    #[test]
    fn each_granularity_accepts_its_widest_range_and_refuses_one_window_more() {
        for (g, from, widest, one_more) in [
            ("hour", "2026-10-01", "2026-11-01", "2026-11-01T01:00:00Z"),
            ("day", "2025-01-01", "2026-02-05", "2026-02-06"),
            ("month", "2023-01-01", "2026-01-01", "2026-01-02"),
        ] {
            let q = |to: &str| {
                UsageQuery::parse(
                    &params(&[("granularity", g), ("from", from), ("to", to)]),
                    now(),
                )
            };
            let ok = q(widest).unwrap_or_else(|e| panic!("{g} to {widest}: {e:?}"));
            assert_eq!(ok.window_count(), max_windows(ok.granularity), "{g}");
            assert_eq!(ok.windows().len() as i64, ok.window_count(), "{g}");
            assert_eq!(q(one_more).unwrap_err().code, "range_too_large", "{g}");
        }
    }

    #[test]
    fn window_count_matches_the_windows_of_ragged_ranges() {
        for (g, from, to) in [
            ("hour", "2026-11-25T10:30:00Z", "2026-11-25T12:00:01Z"),
            ("day", "2026-11-01T12:00:00Z", "2026-11-03T00:00:00Z"),
            ("month", "2026-01-31", "2026-03-01"),
            ("month", "2025-12-15", "2026-02-01T00:00:01Z"),
        ] {
            let q = UsageQuery::parse(
                &params(&[("granularity", g), ("from", from), ("to", to)]),
                now(),
            )
            .unwrap();
            assert_eq!(
                q.windows().len() as i64,
                q.window_count(),
                "{g} {from}..{to}"
            );
        }
    }

    #[test]
    fn years_outside_one_to_9999_are_refused() {
        for v in ["+10000-01-01", "0000-01-01", "+262142-12-31"] {
            let err = UsageQuery::parse(&params(&[("to", v)]), now()).unwrap_err();
            assert_eq!(err.code, "invalid_parameter", "{v}");
        }
    }

    #[test]
    fn hour_day_and_month_series_sum_the_same_buckets() {
        let rows = vec![
            row(24, "api_calls", Stage::Delivered, &[(1, 2), (23, 3)]),
            row(25, "api_calls", Stage::Delivered, &[(0, 5)]),
            row(25, "api_calls", Stage::Billed, &[(0, 7)]),
            row(25, "storage_gb", Stage::Delivered, &[(0, 100)]),
        ];
        let base = [
            ("from", "2026-11-24"),
            ("to", "2026-11-26"),
            ("meter", "api_calls"),
            ("stage", "delivered"),
        ];
        let mut p = base.to_vec();
        p.push(("granularity", "hour"));
        let q = UsageQuery::parse(&params(&p), now()).unwrap();
        let (points, totals) = summarize(&rows, &q);
        assert_eq!(points.len(), 48);
        assert_eq!(points[1].quantity, Decimal::from(2));
        assert_eq!(points[24].quantity, Decimal::from(5));
        assert_eq!(totals.quantity, Decimal::from(10));
        let mut p = base.to_vec();
        p.push(("granularity", "day"));
        let (points, _) = summarize(&rows, &UsageQuery::parse(&params(&p), now()).unwrap());
        assert_eq!(
            points.iter().map(|p| p.quantity).collect::<Vec<_>>(),
            vec![Decimal::from(5), Decimal::from(5)]
        );
        let mut p = base.to_vec();
        p.push(("granularity", "month"));
        let (points, totals) = summarize(&rows, &UsageQuery::parse(&params(&p), now()).unwrap());
        assert_eq!(points.len(), 1);
        assert_eq!(
            points[0].start,
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(totals.quantity, Decimal::from(10));
    }

    #[test]
    fn group_by_splits_points_by_dimension() {
        let rows = vec![
            row(25, "api_calls", Stage::Delivered, &[(0, 5)]),
            row(25, "api_calls", Stage::Billed, &[(0, 7)]),
        ];
        let q = UsageQuery::parse(
            &params(&[
                ("from", "2026-11-25"),
                ("to", "2026-11-26"),
                ("group_by", "stage"),
            ]),
            now(),
        )
        .unwrap();
        let (points, totals) = summarize(&rows, &q);
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].stage, Some(Stage::Delivered));
        assert_eq!(totals.quantity, Decimal::from(12));
    }

    #[test]
    fn a_range_starting_mid_day_counts_only_the_hours_inside_it() {
        let rows = vec![row(25, "api_calls", Stage::Delivered, &[(1, 2), (13, 3)])];
        let q = UsageQuery::parse(
            &params(&[
                ("from", "2026-11-25T12:00:00Z"),
                ("to", "2026-11-26T00:00:00Z"),
                ("granularity", "hour"),
            ]),
            now(),
        )
        .unwrap();
        let (_, totals) = summarize(&rows, &q);
        assert_eq!(totals.quantity, Decimal::from(3));
    }
}
