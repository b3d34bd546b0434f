//! Entitlements: what an account bought (a limit on one or more meters per period),
//! their periods in the entitlement's own time zone, balances and threshold crossings.
//! Everything here is pure; storage is behind [`crate::ports::EntitlementStore`].

use crate::ids::{AccountId, EntitlementId, MeterName, Stage};
use crate::input::{input_error, object, opt_string, InputError};
use crate::rollup::RollupRow;
use crate::zone::Zone;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How an entitlement's periods are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    /// 1st of each month to the 1st of the next.
    CalendarMonth,
    /// Monthly from the day of `starts_on` (the 31st becomes the month's last day).
    AnniversaryMonth,
    /// Calendar quarters.
    Quarter,
    /// Calendar years.
    Year,
    /// One period: `starts_on` to `ends_on`.
    FixedTerm,
}

/// What happens past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overage {
    /// Usage past the limit is billable overage (warning alerts).
    #[default]
    Allowed,
    /// The limit is contractual; going past it is a critical alert.
    Hard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entitlement {
    pub id: EntitlementId,
    pub account: AccountId,
    pub meters: Vec<MeterName>,
    pub stage: Stage,
    #[serde(with = "rust_decimal::serde::str")]
    pub limit: Decimal,
    pub period: PeriodKind,
    pub starts_on: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_on: Option<NaiveDate>,
    pub time_zone: String,
    /// Percentages of the limit, ascending, e.g. `[80, 100]`.
    pub thresholds: Vec<u32>,
    /// Unused allowance of the previous period adds to this period's limit.
    pub rollover: bool,
    pub overage: Overage,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One period of an entitlement: `[start, end)` as instants and as local dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub start_date: NaiveDate,
    /// Exclusive.
    pub end_date: NaiveDate,
}

impl Period {
    /// Stable name of the period within its entitlement (its first local day).
    pub fn key(&self) -> String {
        self.start_date.format("%Y-%m-%d").to_string()
    }
}

pub const DEFAULT_THRESHOLDS: &[u32] = &[80, 100];

const FIELDS: &[&str] = &[
    "account",
    "meter",
    "meters",
    "stage",
    "limit",
    "period",
    "starts_on",
    "ends_on",
    "time_zone",
    "thresholds",
    "rollover",
    "overage",
];

fn add_months(y: i32, m0: u32, n: i64) -> (i32, u32) {
    let total = i64::from(y) * 12 + i64::from(m0) + n;
    (total.div_euclid(12) as i32, total.rem_euclid(12) as u32)
}

fn days_in_month(y: i32, m0: u32) -> u32 {
    let (ny, nm) = add_months(y, m0, 1);
    let first = NaiveDate::from_ymd_opt(y, m0 + 1, 1);
    let next = NaiveDate::from_ymd_opt(ny, nm + 1, 1);
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 30,
    }
}

/// The date `n` months after `anchor`, with the anchor's day clamped to month end.
fn anniversary(anchor: NaiveDate, n: i64) -> Option<NaiveDate> {
    let (y, m0) = add_months(anchor.year(), anchor.month0(), n);
    NaiveDate::from_ymd_opt(y, m0 + 1, anchor.day().min(days_in_month(y, m0)))
}

fn first_of(y: i32, m0: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m0 + 1, 1)
}

/// Midnight of a local date as an instant (the first valid instant on DST gaps).
pub fn local_midnight(tz: &Zone, d: NaiveDate) -> DateTime<Utc> {
    let mut naive = d.and_time(chrono::NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(t) = tz.earliest(naive) {
            return t;
        }
        naive += Duration::minutes(30);
    }
    naive.and_utc()
}

impl Entitlement {
    /// The entitlement's zone (UTC if its name is unknown, which validation prevents).
    pub fn tz(&self) -> Zone {
        Zone::parse(&self.time_zone).unwrap_or_else(Zone::utc)
    }

    /// Local-date bounds `[start, end)` of the period containing local date `d`.
    fn period_dates(&self, d: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        if d < self.starts_on || self.ends_on.is_some_and(|e| d >= e) {
            return None;
        }
        let (start, end) = match self.period {
            PeriodKind::CalendarMonth => {
                let (ny, nm) = add_months(d.year(), d.month0(), 1);
                (first_of(d.year(), d.month0())?, first_of(ny, nm)?)
            }
            PeriodKind::Quarter => {
                let q0 = d.month0() / 3 * 3;
                let (ny, nm) = add_months(d.year(), q0, 3);
                (first_of(d.year(), q0)?, first_of(ny, nm)?)
            }
            PeriodKind::Year => (
                NaiveDate::from_ymd_opt(d.year(), 1, 1)?,
                NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?,
            ),
            PeriodKind::AnniversaryMonth => {
                let s = self.starts_on;
                let mut k = i64::from(d.year() - s.year()) * 12 + i64::from(d.month0())
                    - i64::from(s.month0());
                if anniversary(s, k)? > d {
                    k -= 1;
                }
                (anniversary(s, k)?, anniversary(s, k + 1)?)
            }
            PeriodKind::FixedTerm => (self.starts_on, self.ends_on?),
        };
        let start = start.max(self.starts_on);
        let end = self.ends_on.map_or(end, |e| end.min(e));
        Some((start, end))
    }

    /// The period containing instant `at`, if the entitlement is in force then.
    pub fn period_at(&self, at: DateTime<Utc>) -> Option<Period> {
        let tz = self.tz();
        let (sd, ed) = self.period_dates(tz.local_date(at))?;
        Some(Period {
            start: local_midnight(&tz, sd),
            end: local_midnight(&tz, ed),
            start_date: sd,
            end_date: ed,
        })
    }

    /// The period just before `p`, if the entitlement was in force then.
    pub fn previous_period(&self, p: &Period) -> Option<Period> {
        self.period_at(p.start - Duration::seconds(1))
    }

    pub fn counts(&self, meter: &MeterName, stage: Stage) -> bool {
        stage == self.stage && self.meters.contains(meter)
    }

    /// Whether two entitlements of one account can both count the same usage.
    pub fn overlaps(&self, other: &Entitlement) -> bool {
        if self.account != other.account || self.stage != other.stage {
            return false;
        }
        if !self.meters.iter().any(|m| other.meters.contains(m)) {
            return false;
        }
        let before = |a: &Entitlement, b: &Entitlement| a.ends_on.is_some_and(|e| e <= b.starts_on);
        !(before(self, other) || before(other, self))
    }
}

/// Usage an entitlement counts in `[start, end)`, from account day rollups. Hour
/// buckets are attributed by their start instant, so period boundaries are exact for
/// time zones with whole-hour offsets (see docs/adr/0004).
pub fn usage_in(
    rows: &[RollupRow],
    ent: &Entitlement,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Decimal, Overflow> {
    let mut total = Decimal::ZERO;
    for row in rows {
        if !ent.counts(&row.key.meter, row.key.stage) {
            continue;
        }
        let midnight = row.key.day.and_time(chrono::NaiveTime::MIN).and_utc();
        for (h, b) in row.hours.iter().enumerate() {
            let at = midnight + Duration::hours(h as i64);
            if at >= start && at < end {
                total = total.checked_add(b.quantity).ok_or(Overflow {
                    what: "the period's usage",
                })?;
            }
        }
    }
    Ok(total)
}

/// A sum of stored numbers that leaves the exactly representable range. Reported
/// for that entitlement alone; nothing else is affected (bounds at entry make it
/// unreachable for data written since they exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} is out of the representable range")]
pub struct Overflow {
    pub what: &'static str,
}

/// Largest limit an entitlement may have: far above any real contract, and small
/// enough that `limit × threshold %` and rollover stay exact.
pub const MAX_LIMIT: Decimal = Decimal::from_parts(0x_a4c6_8000, 0x_0003_8d7e, 0, false, 0); // 1e15
/// Most decimal places of a limit (the same as an event quantity).
pub const MAX_LIMIT_SCALE: u32 = 9;

/// UTC days to read for `[start, end)`.
pub fn days_for(start: DateTime<Utc>, end: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let last = end - Duration::seconds(1);
    (start.date_naive(), last.max(start).date_naive())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Balance {
    pub period: Period,
    #[serde(with = "rust_decimal::serde::str")]
    pub limit: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub rollover_in: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub used: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub remaining: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub overage: Decimal,
    /// End-of-period usage at the run rate so far.
    #[serde(with = "rust_decimal::serde::str")]
    pub projected: Decimal,
    /// `used / limit` in percent (two decimals).
    #[serde(with = "rust_decimal::serde::str")]
    pub percent: Decimal,
}

/// Balance of one period. `previous_used` is the previous period's usage (rollover).
pub fn balance(
    ent: &Entitlement,
    period: Period,
    used: Decimal,
    previous_used: Option<Decimal>,
    now: DateTime<Utc>,
) -> Result<Balance, Overflow> {
    let over = |what| Overflow { what };
    let rollover_in = match (ent.rollover, previous_used) {
        (true, Some(prev)) => ent
            .limit
            .checked_sub(prev)
            .ok_or(over("the rollover"))?
            .max(Decimal::ZERO),
        _ => Decimal::ZERO,
    };
    let limit = ent
        .limit
        .checked_add(rollover_in)
        .ok_or(over("the limit with rollover"))?;
    let length = (period.end - period.start).num_seconds().max(1);
    let elapsed = (now.min(period.end) - period.start).num_seconds();
    let projected = if elapsed <= 0 || elapsed >= length {
        used
    } else {
        used.checked_mul(Decimal::from(length))
            .and_then(|x| x.checked_div(Decimal::from(elapsed)))
            .ok_or(over("the projection"))?
            .round_dp(2)
    };
    let percent = if limit.is_zero() {
        Decimal::ZERO
    } else {
        used.checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|x| x.checked_div(limit))
            .ok_or(over("the percentage used"))?
            .round_dp(2)
    };
    let remaining = limit
        .checked_sub(used)
        .ok_or(over("the remaining allowance"))?;
    Ok(Balance {
        period,
        limit,
        rollover_in,
        used,
        remaining,
        overage: (-remaining).max(Decimal::ZERO),
        projected,
        percent,
    })
}

/// What an entitlement's usage has reached; each is alerted once per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Crossing {
    /// `used >= limit * pct / 100`.
    Threshold(u32),
    /// `used > limit` under a hard limit: the balance is negative. (With overage
    /// allowed, usage past the limit is billable overage, which the 100 % threshold
    /// alert already reports.)
    NegativeBalance,
    /// Corrections took the period's usage below zero (a data-quality problem).
    NegativeUsage,
}

impl Crossing {
    pub fn key(&self) -> String {
        match self {
            Crossing::Threshold(p) => format!("threshold:{p}"),
            Crossing::NegativeBalance => "negative_balance".into(),
            Crossing::NegativeUsage => "negative_usage".into(),
        }
    }
}

/// `used >= limit × pct / 100`, exactly, without overflowing for any stored values.
fn reached(used: Decimal, limit: Decimal, pct: u32) -> bool {
    match (
        used.checked_mul(Decimal::ONE_HUNDRED),
        limit.checked_mul(Decimal::from(pct)),
    ) {
        (Some(u), Some(l)) => u >= l,
        // |used × 100| overflowed: used is astronomically large (or small), beyond
        // any representable limit × pct when the limit's side did not overflow.
        (None, Some(_)) => used.is_sign_positive(),
        // limit × pct overflowed: nothing representable reaches it unless used
        // overflowed too; then compare the quotients.
        (Some(_), None) => false,
        (None, None) => used / limit >= Decimal::from(pct) / Decimal::ONE_HUNDRED,
    }
}

/// Every crossing the balance is at or past. Alert markers make each fire once, so
/// a correction back under a threshold and a later climb do not re-raise it.
pub fn crossings(ent: &Entitlement, b: &Balance) -> Vec<Crossing> {
    let mut out: Vec<Crossing> = ent
        .thresholds
        .iter()
        .filter(|&&t| reached(b.used, b.limit, t))
        .filter(|_| b.used > Decimal::ZERO)
        .map(|&t| Crossing::Threshold(t))
        .collect();
    if b.used > b.limit && ent.overage == Overage::Hard {
        out.push(Crossing::NegativeBalance);
    }
    if b.used < Decimal::ZERO {
        out.push(Crossing::NegativeUsage);
    }
    out
}

/// Whether the hour bucket `at` belongs to the entitlement's counting (start of hour).
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at)
}

fn date_field(
    map: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<NaiveDate>, InputError> {
    match opt_string(map, name, 10, "invalid_period")? {
        None => Ok(None),
        Some(d) => NaiveDate::parse_from_str(&d, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                input_error(
                    "invalid_period",
                    format!("{name} '{d}' is not a YYYY-MM-DD date"),
                )
            }),
    }
}

/// Validates a `PUT /v1/entitlements/{id}` body. Checks that need storage (unknown
/// account or meter, overlaps) are done by the caller.
pub fn entitlement_from_body(
    id: EntitlementId,
    body: &[u8],
    now: DateTime<Utc>,
    existing: Option<&Entitlement>,
) -> Result<Entitlement, InputError> {
    let map = object(body, FIELDS)?;
    let account = opt_string(&map, "account", AccountId::MAX, "invalid_account")?
        .ok_or_else(|| input_error("missing_account", "account is required"))?;
    let account =
        AccountId::parse(&account).map_err(|e| input_error("invalid_account", e.to_string()))?;
    let mut meters = Vec::new();
    if let Some(m) = opt_string(&map, "meter", MeterName::MAX, "invalid_meter")? {
        meters.push(m);
    }
    match map.get("meters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for v in list {
                let s = v
                    .as_str()
                    .ok_or_else(|| input_error("invalid_meter", "meters must be strings"))?;
                meters.push(s.to_owned());
            }
        }
        Some(_) => {
            return Err(input_error(
                "invalid_meter",
                "meters must be an array of meter names",
            ))
        }
    }
    if meters.is_empty() {
        return Err(input_error(
            "missing_meter",
            "meter (or meters) is required",
        ));
    }
    let mut meters = meters
        .iter()
        .map(|m| MeterName::parse(m).map_err(|e| input_error("invalid_meter", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    meters.sort();
    meters.dedup();
    if meters.len() > 20 {
        return Err(input_error(
            "invalid_meter",
            "at most 20 meters per entitlement",
        ));
    }
    let stage = match opt_string(&map, "stage", 16, "invalid_stage")? {
        None => Stage::Delivered,
        Some(s) => Stage::parse(&s).ok_or_else(|| {
            input_error(
                "invalid_stage",
                format!("stage '{s}' is not requested, delivered or billed"),
            )
        })?,
    };
    let limit = match map.get("limit") {
        Some(Value::Number(n)) => n
            .to_string()
            .parse::<Decimal>()
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .map_err(|_| input_error("invalid_limit", "limit is not a decimal number"))?,
        None | Some(Value::Null) => return Err(input_error("missing_limit", "limit is required")),
        Some(_) => return Err(input_error("invalid_limit", "limit must be a JSON number")),
    };
    if limit <= Decimal::ZERO {
        return Err(input_error(
            "invalid_limit",
            "limit must be greater than zero",
        ));
    }
    if limit > MAX_LIMIT || limit.normalize().scale() > MAX_LIMIT_SCALE {
        return Err(input_error(
            "limit_out_of_range",
            format!(
                "limit must be at most {MAX_LIMIT} with at most {MAX_LIMIT_SCALE} decimal places"
            ),
        ));
    }
    let period = match opt_string(&map, "period", 32, "invalid_period")? {
        None => return Err(input_error("missing_period", "period is required (calendar_month, anniversary_month, quarter, year, fixed_term)")),
        Some(p) => serde_json::from_value::<PeriodKind>(Value::String(p.clone())).map_err(|_| {
            input_error(
                "invalid_period",
                format!("period '{p}' is not calendar_month, anniversary_month, quarter, year or fixed_term"),
            )
        })?,
    };
    let time_zone =
        opt_string(&map, "time_zone", 64, "invalid_time_zone")?.unwrap_or_else(|| "UTC".into());
    let Some(zone) = Zone::parse(&time_zone) else {
        return Err(input_error(
            "invalid_time_zone",
            format!("time_zone '{time_zone}' is not an IANA time zone (e.g. Europe/Berlin)"),
        ));
    };
    let starts_on = date_field(&map, "starts_on")?; // default: see below
    let ends_on = date_field(&map, "ends_on")?;
    let starts_on = match (period, starts_on) {
        (PeriodKind::AnniversaryMonth | PeriodKind::FixedTerm, None) => {
            return Err(input_error(
                "invalid_period",
                "starts_on is required for anniversary_month and fixed_term",
            ))
        }
        (_, Some(d)) => d,
        (_, None) => match existing {
            Some(e) => e.starts_on,
            // The current calendar period's first day, in the entitlement's zone.
            None => {
                let today = zone.local_date(now);
                let m0 = match period {
                    PeriodKind::Quarter => today.month0() / 3 * 3,
                    PeriodKind::Year => 0,
                    _ => today.month0(),
                };
                first_of(today.year(), m0).unwrap_or(today)
            }
        },
    };
    if period == PeriodKind::FixedTerm && ends_on.is_none() {
        return Err(input_error(
            "invalid_period",
            "ends_on is required for fixed_term",
        ));
    }
    if let Some(e) = ends_on {
        if e <= starts_on {
            return Err(input_error(
                "invalid_period",
                "ends_on must be after starts_on",
            ));
        }
    }
    let thresholds = match map.get("thresholds") {
        None | Some(Value::Null) => DEFAULT_THRESHOLDS.to_vec(),
        Some(Value::Array(list)) => {
            let mut t = list
                .iter()
                .map(|v| {
                    v.as_u64()
                        .filter(|p| (1..=1000).contains(p))
                        .map(|p| p as u32)
                        .ok_or_else(|| {
                            input_error(
                                "invalid_thresholds",
                                "thresholds are whole percentages from 1 to 1000",
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            t.sort_unstable();
            t.dedup();
            if t.is_empty() || t.len() > 10 {
                return Err(input_error("invalid_thresholds", "give 1 to 10 thresholds"));
            }
            t
        }
        Some(_) => {
            return Err(input_error(
                "invalid_thresholds",
                "thresholds must be an array of percentages",
            ))
        }
    };
    let rollover = match map.get("rollover") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(input_error(
                "invalid_rollover",
                "rollover must be true or false",
            ))
        }
    };
    let overage = match opt_string(&map, "overage", 16, "invalid_overage")? {
        None => Overage::Allowed,
        Some(o) => serde_json::from_value::<Overage>(Value::String(o.clone())).map_err(|_| {
            input_error(
                "invalid_overage",
                format!("overage '{o}' is not allowed or hard"),
            )
        })?,
    };
    Ok(Entitlement {
        id,
        account,
        meters,
        stage,
        limit,
        period,
        starts_on,
        ends_on,
        time_zone,
        thresholds,
        rollover,
        overage,
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn ent(period: PeriodKind, starts: &str, tz: &str) -> Entitlement {
        Entitlement {
            id: EntitlementId::parse("e1").unwrap(),
            account: AccountId::parse("acme").unwrap(),
            meters: vec![MeterName::parse("api_calls").unwrap()],
            stage: Stage::Delivered,
            limit: Decimal::from(100),
            period,
            starts_on: d(starts),
            ends_on: None,
            time_zone: tz.into(),
            thresholds: vec![80, 100],
            rollover: false,
            overage: Overage::Allowed,
            created_at: t("2026-01-01T00:00:00Z"),
            updated_at: t("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn a_calendar_month_ends_at_local_midnight_of_the_entitlements_time_zone() {
        let e = ent(PeriodKind::CalendarMonth, "2026-01-01", "America/New_York");
        // 2026-12-01T03:30Z is still November 30th in New York.
        let p = e.period_at(t("2026-12-01T03:30:00Z")).unwrap();
        assert_eq!(p.start_date, d("2026-11-01"));
        assert_eq!(p.end, t("2026-12-01T05:00:00Z"));
        let next = e.period_at(t("2026-12-01T05:00:00Z")).unwrap();
        assert_eq!(next.start_date, d("2026-12-01"));
    }

    #[test]
    fn a_leap_day_belongs_to_february_and_the_anniversary_of_the_29th_clamps() {
        let e = ent(PeriodKind::CalendarMonth, "2028-01-01", "Europe/Berlin");
        let p = e.period_at(t("2028-02-29T22:59:59Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2028-02-01"), d("2028-03-01"))
        );
        let a = ent(PeriodKind::AnniversaryMonth, "2028-01-29", "UTC");
        let p = a.period_at(t("2028-02-29T12:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2028-02-29"), d("2028-03-29"))
        );
        let p = a.period_at(t("2029-02-28T12:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2029-02-28"), d("2029-03-29"))
        );
    }

    #[test]
    fn an_anniversary_on_the_31st_falls_on_each_months_last_day() {
        let e = ent(PeriodKind::AnniversaryMonth, "2026-01-31", "Asia/Tokyo");
        let p = e.period_at(t("2026-02-15T00:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2026-01-31"), d("2026-02-28"))
        );
        let p = e.period_at(t("2026-03-30T00:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2026-02-28"), d("2026-03-31"))
        );
        let p = e.period_at(t("2026-04-30T16:00:00Z")).unwrap(); // May 1st in Tokyo
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2026-04-30"), d("2026-05-31"))
        );
        assert_eq!(p.start, t("2026-04-29T15:00:00Z"));
        assert!(
            e.period_at(t("2026-01-30T12:00:00Z")).is_none(),
            "before starts_on"
        );
    }

    #[test]
    fn quarters_years_and_fixed_terms_have_their_bounds() {
        let q = ent(PeriodKind::Quarter, "2026-01-01", "UTC");
        let p = q.period_at(t("2026-08-15T00:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2026-07-01"), d("2026-10-01"))
        );
        let y = ent(PeriodKind::Year, "2026-03-10", "UTC");
        let p = y.period_at(t("2026-08-15T00:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2026-03-10"), d("2027-01-01"))
        );
        let mut f = ent(PeriodKind::FixedTerm, "2026-02-10", "UTC");
        f.ends_on = Some(d("2026-05-10"));
        let p = f.period_at(t("2026-04-01T00:00:00Z")).unwrap();
        assert_eq!(
            (p.start_date, p.end_date),
            (d("2026-02-10"), d("2026-05-10"))
        );
        assert!(f.period_at(t("2026-05-10T00:00:00Z")).is_none());
    }

    #[test]
    fn balances_project_the_run_rate_and_report_overage() {
        let e = ent(PeriodKind::CalendarMonth, "2026-01-01", "UTC");
        let p = e.period_at(t("2026-11-16T00:00:00Z")).unwrap();
        let b = balance(&e, p, Decimal::from(60), None, t("2026-11-16T00:00:00Z")).unwrap();
        assert_eq!(b.projected, Decimal::from(120));
        assert_eq!(b.remaining, Decimal::from(40));
        assert_eq!(crossings(&e, &b), vec![]);
        let p = e.period_at(t("2026-11-16T00:00:00Z")).unwrap();
        let b = balance(
            &e,
            p.clone(),
            Decimal::from(105),
            None,
            t("2026-11-16T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(b.overage, Decimal::from(5));
        assert_eq!(b.remaining, Decimal::from(-5));
        assert_eq!(
            crossings(&e, &b),
            vec![Crossing::Threshold(80), Crossing::Threshold(100)]
        );
        let hard = Entitlement {
            overage: Overage::Hard,
            ..e.clone()
        };
        assert_eq!(
            crossings(&hard, &b),
            vec![
                Crossing::Threshold(80),
                Crossing::Threshold(100),
                Crossing::NegativeBalance
            ]
        );
        let b = balance(&e, p, Decimal::from(-3), None, t("2026-11-16T00:00:00Z")).unwrap();
        assert_eq!(crossings(&e, &b), vec![Crossing::NegativeUsage]);
    }

    #[test]
    fn rollover_adds_the_previous_periods_unused_allowance() {
        let mut e = ent(PeriodKind::CalendarMonth, "2026-01-01", "UTC");
        e.rollover = true;
        let p = e.period_at(t("2026-11-16T00:00:00Z")).unwrap();
        let b = balance(
            &e,
            p,
            Decimal::from(90),
            Some(Decimal::from(70)),
            t("2026-11-16T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(b.limit, Decimal::from(130));
        assert_eq!(crossings(&e, &b), vec![]);
    }

    #[test]
    fn overlapping_entitlements_share_a_meter_stage_and_dates() {
        let a = ent(PeriodKind::CalendarMonth, "2026-01-01", "UTC");
        let mut b = ent(PeriodKind::Year, "2026-06-01", "UTC");
        b.id = EntitlementId::parse("e2").unwrap();
        assert!(a.overlaps(&b));
        let mut c = b.clone();
        c.stage = Stage::Billed;
        assert!(!a.overlaps(&c));
        let mut early = a.clone();
        early.ends_on = Some(d("2026-06-01"));
        assert!(!early.overlaps(&b));
    }

    #[test]
    fn a_limit_beyond_the_maximum_is_refused_with_its_own_code() {
        let id = EntitlementId::parse("e1").unwrap();
        let now = t("2026-11-25T00:00:00Z");
        let code = |limit: &str| {
            let body = format!(r#"{{"account":"a","meter":"m","limit":{limit},"period":"year"}}"#);
            entitlement_from_body(id.clone(), body.as_bytes(), now, None)
                .map(|e| e.limit)
                .map_err(|e| e.code)
        };
        assert_eq!(code("1e27"), Err("limit_out_of_range"));
        assert_eq!(code("1000000000000001"), Err("limit_out_of_range"));
        assert_eq!(code("0.0000000001"), Err("limit_out_of_range"));
        assert_eq!(code("1e15"), Ok(MAX_LIMIT));
        assert_eq!(code("1e40"), Err("invalid_limit"));
        assert_eq!(MAX_LIMIT, Decimal::from(1_000_000_000_000_000_i64));
    }

    #[test]
    fn balances_of_huge_stored_numbers_report_overflow_instead_of_panicking() {
        // An entitlement stored before limits were bounded, and usage near the
        // largest representable sum.
        let mut e = ent(PeriodKind::CalendarMonth, "2026-01-01", "UTC");
        e.limit = Decimal::from_scientific("1e27").unwrap();
        e.thresholds = vec![80, 100, 1000];
        e.rollover = true;
        let now = t("2026-11-16T00:00:00Z");
        let p = e.period_at(now).unwrap();
        let b = balance(&e, p.clone(), Decimal::from(5), None, now).unwrap();
        assert_eq!(crossings(&e, &b), vec![], "1e27 × 1000 % never reached");
        let huge = Decimal::MAX - Decimal::from(10);
        assert!(balance(&e, p.clone(), huge, None, now).is_err());
        assert!(balance(&e, p.clone(), Decimal::from(1), Some(-huge), now).is_err());
        // The crossing test itself is exact and total, whatever it is given.
        let b = Balance {
            period: p,
            limit: e.limit,
            rollover_in: Decimal::ZERO,
            used: huge,
            remaining: Decimal::ZERO,
            overage: Decimal::ZERO,
            projected: huge,
            percent: Decimal::ZERO,
        };
        assert_eq!(
            crossings(&e, &b),
            vec![
                Crossing::Threshold(80),
                Crossing::Threshold(100),
                Crossing::Threshold(1000)
            ]
        );
    }

    #[test]
    fn bodies_with_bad_periods_are_refused_with_codes() {
        let id = EntitlementId::parse("e1").unwrap();
        let now = t("2026-11-25T00:00:00Z");
        let code = |body: &str| {
            entitlement_from_body(id.clone(), body.as_bytes(), now, None)
                .map(|_| ())
                .unwrap_err()
                .code
        };
        assert_eq!(
            code(r#"{"account":"a","meter":"m","limit":10,"period":"weekly"}"#),
            "invalid_period"
        );
        assert_eq!(
            code(
                r#"{"account":"a","meter":"m","limit":10,"period":"fixed_term","starts_on":"2026-01-01"}"#
            ),
            "invalid_period"
        );
        assert_eq!(
            code(r#"{"account":"a","meter":"m","limit":10,"period":"anniversary_month"}"#),
            "invalid_period"
        );
        assert_eq!(
            code(
                r#"{"account":"a","meter":"m","limit":10,"period":"year","time_zone":"Mars/Base"}"#
            ),
            "invalid_time_zone"
        );
        assert_eq!(
            code(r#"{"account":"a","meter":"m","limit":0,"period":"year"}"#),
            "invalid_limit"
        );
        assert_eq!(
            code(r#"{"account":"a","limit":1,"period":"year"}"#),
            "missing_meter"
        );
        let ok = entitlement_from_body(id, br#"{"account":"a","meters":["m","n"],"limit":100,"period":"calendar_month","thresholds":[100,50,80]}"#, now, None).unwrap();
        assert_eq!(ok.thresholds, vec![50, 80, 100]);
        assert_eq!(
            ok.starts_on,
            d("2026-11-01"),
            "the current period's first day"
        );
    }

    mod props {
        use super::*;
        use crate::ids::ServiceLine;
        use crate::keys::Scope;
        use crate::rollup::{Bucket, RollupKey};
        use proptest::prelude::*;

        const ZONES: [&str; 5] = [
            "UTC",
            "America/New_York",
            "Europe/Berlin",
            "Asia/Tokyo",
            "Australia/Sydney",
        ];

        fn rows(cells: &[(u32, usize, i64)]) -> Vec<RollupRow> {
            let mut by_day: BTreeMap<u32, [Bucket; 24]> = BTreeMap::new();
            for &(day, hour, q) in cells {
                let b = &mut by_day.entry(day).or_insert([Bucket::default(); 24])[hour];
                b.quantity += Decimal::from(q);
                b.events += 1;
            }
            by_day
                .into_iter()
                .map(|(day, hours)| RollupRow {
                    key: RollupKey {
                        scope: Scope::Account(AccountId::parse("acme").unwrap()),
                        day: d("2028-01-01") + Duration::days(i64::from(day)),
                        meter: MeterName::parse("api_calls").unwrap(),
                        stage: Stage::Delivered,
                        service_line: ServiceLine::default_line(),
                    },
                    total: Bucket::default(),
                    hours,
                })
                .collect()
        }

        use std::collections::BTreeMap;

        proptest! {
            /// Periods tile time: consecutive periods are contiguous, and the usage
            /// summed per period adds up to all usage, in any zone and for any
            /// anniversary day (leap February included).
            #[test]
            fn usage_split_by_periods_adds_up_to_the_total(
                cells in proptest::collection::vec((0u32..140, 0usize..24, -50i64..50), 0..200),
                anchor in 1u32..=31,
                zone in 0usize..ZONES.len(),
                kind in 0usize..3,
            ) {
                let period = [PeriodKind::AnniversaryMonth, PeriodKind::CalendarMonth, PeriodKind::Quarter][kind];
                let start = NaiveDate::from_ymd_opt(2027, 12, anchor).unwrap();
                let mut e = ent(period, "2027-12-01", ZONES[zone]);
                e.starts_on = start;
                let rows = rows(&cells);
                let first = t("2028-01-01T00:00:00Z");
                let last = first + Duration::days(141);
                let mut p = e.period_at(first).unwrap();
                let mut sum = Decimal::ZERO;
                loop {
                    prop_assert!(p.start < p.end);
                    sum += usage_in(&rows, &e, p.start, p.end).unwrap();
                    if p.end > last {
                        break;
                    }
                    let next = e.period_at(p.end).unwrap();
                    prop_assert_eq!(next.start, p.end);
                    p = next;
                }
                let total: Decimal = cells.iter().map(|c| Decimal::from(c.2)).sum();
                prop_assert_eq!(sum, total);
            }
        }
    }
}
