//! Volume anomalies on an hourly series of event counts, against a seasonal robust
//! baseline: the median and MAD of the same hour of the week over the previous weeks
//! (at least 3), or of the same hour of the day over the previous week while less
//! history exists. An hour is unusual when it is more than `k` robust deviations
//! (1.4826 × MAD, at least √median and at least 1, the Poisson noise of a count) from
//! its median. Findings: spikes (also in the current, partial hour), drops and
//! silences (complete hours only), each with its expected range and since when.

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};

/// Hours at the end of the series that are evaluated on each run.
pub const EVAL_HOURS: usize = 6;
/// Weeks of history the hour-of-week baseline looks at.
pub const BASELINE_WEEKS: usize = 4;

/// Event counts per hour, `values[i]` for the hour starting `start + i h`.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlySeries {
    pub start: DateTime<Utc>,
    pub values: Vec<f64>,
}

impl HourlySeries {
    pub fn zeros(start: DateTime<Utc>, hours: usize) -> Self {
        let start = start.duration_trunc(Duration::hours(1)).unwrap_or(start);
        Self {
            start,
            values: vec![0.0; hours],
        }
    }
    /// Adds `v` to the hour containing `at` (ignored outside the series).
    pub fn add(&mut self, at: DateTime<Utc>, v: f64) {
        let i = (at - self.start).num_hours();
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| self.values.get_mut(i)) {
            *slot += v;
        }
    }
    pub fn hour(&self, i: usize) -> DateTime<Utc> {
        self.start + Duration::hours(i as i64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Spike,
    Drop,
    Silence,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spike => "spike",
            Self::Drop => "drop",
            Self::Silence => "silence",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    HourOfWeek,
    HourOfDay,
}

/// One anomaly: a run of unusual hours ending now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub kind: FindingKind,
    /// First hour of the run.
    pub since: DateTime<Utc>,
    /// Hours in the run.
    pub hours: u32,
    /// Events observed over the run.
    pub observed: f64,
    /// Median events expected over the run.
    pub expected: f64,
    /// Range of one normal hour at the run's last hour.
    pub expected_low: f64,
    pub expected_high: f64,
    pub baseline: BaselineKind,
}

impl Anomaly {
    /// One sentence for people.
    pub fn explain(&self, subject: &str) -> String {
        let since = self.since.format("%Y-%m-%d %H:00 UTC");
        match self.kind {
            FindingKind::Spike => format!(
                "{subject}: {} events in {} hour(s) since {since}, expected about {} (a normal hour is {}-{})",
                fmt(self.observed), self.hours, fmt(self.expected), fmt(self.expected_low), fmt(self.expected_high)
            ),
            FindingKind::Drop => format!(
                "{subject}: only {} events in {} hour(s) since {since}, expected about {} (a normal hour is {}-{})",
                fmt(self.observed), self.hours, fmt(self.expected), fmt(self.expected_low), fmt(self.expected_high)
            ),
            FindingKind::Silence => format!(
                "{subject}: no events since {since} ({} hour(s)), expected about {} in that time",
                self.hours, fmt(self.expected)
            ),
        }
    }
}

fn fmt(v: f64) -> String {
    if (v - v.round()).abs() < 0.05 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and robust scale of hour `i` from its seasonal peers. Hours before the
/// series' first event (`first`) are unknown history, not zeros: a meter defined last
/// week has no hour-of-week baseline yet.
fn baseline(values: &[f64], first: usize, i: usize) -> Option<(f64, f64, BaselineKind)> {
    let peers = |step: usize, max: usize| -> Vec<f64> {
        (1..=max)
            .filter_map(|j| i.checked_sub(step * j))
            .filter(|p| *p >= first)
            .map(|p| values[p])
            .collect()
    };
    let (mut samples, kind) = {
        let week = peers(168, BASELINE_WEEKS);
        if week.len() >= 3 {
            (week, BaselineKind::HourOfWeek)
        } else {
            let day = peers(24, 7);
            if day.len() < 3 {
                return None;
            }
            (day, BaselineKind::HourOfDay)
        }
    };
    let m = median(&mut samples);
    let mut dev: Vec<f64> = samples.iter().map(|v| (v - m).abs()).collect();
    let mad = median(&mut dev);
    let scale = (1.4826 * mad).max(m.max(1.0).sqrt()).max(1.0);
    Some((m, scale, kind))
}

/// Finds the anomalies ending at `now` in `series` (which must reach the hour of `now`).
/// `k` is the definition's sensitivity ([`crate::governance::Sensitivity::k`]).
pub fn detect(series: &HourlySeries, now: DateTime<Utc>, k: f64) -> Vec<Anomaly> {
    let values = &series.values;
    let current = (now - series.start).num_hours();
    let Ok(current) = usize::try_from(current) else {
        return Vec::new();
    };
    if current >= values.len() || current == 0 {
        return Vec::new();
    }
    let last_complete = current - 1;
    let first_eval = (current + 1).saturating_sub(EVAL_HOURS);
    let Some(first) = values.iter().position(|v| *v != 0.0) else {
        return Vec::new();
    };
    let baseline = |i: usize| baseline(values, first, i);
    let mut out = Vec::new();

    // Spikes: the run of hours above range ending at the current (partial) hour or at
    // the last complete hour.
    let above = |i: usize| baseline(i).is_some_and(|(m, s, _)| values[i] > m + k * s);
    let end = if above(current) {
        Some(current)
    } else if above(last_complete) {
        Some(last_complete)
    } else {
        None
    };
    if let Some(end) = end {
        let mut start = end;
        while start > first_eval && above(start - 1) {
            start -= 1;
        }
        out.push(run(series, first, FindingKind::Spike, start, end));
    }

    // Silence: complete hours without events back from the last complete hour, while
    // their medians add up to an amount a Poisson count would almost never miss.
    if values[last_complete] == 0.0 {
        let mut start = last_complete;
        while start > 0 && values[start - 1] == 0.0 {
            start -= 1;
        }
        let expected: f64 = (start..=last_complete)
            .filter_map(|i| baseline(i).map(|b| b.0))
            .sum();
        if expected >= 3.0 * k {
            out.push(run(
                series,
                first,
                FindingKind::Silence,
                start,
                last_complete,
            ));
            return out;
        }
    }

    // Drops: complete hours below range (but not empty) ending at the last complete hour.
    let below =
        |i: usize| baseline(i).is_some_and(|(m, s, _)| m - k * s > 0.0 && values[i] < m - k * s);
    if below(last_complete) {
        let mut start = last_complete;
        while start > first_eval && below(start - 1) {
            start -= 1;
        }
        out.push(run(series, first, FindingKind::Drop, start, last_complete));
    }
    out
}

fn run(
    series: &HourlySeries,
    first: usize,
    kind: FindingKind,
    start: usize,
    end: usize,
) -> Anomaly {
    let values = &series.values;
    let observed = values[start..=end].iter().sum();
    let expected = (start..=end)
        .filter_map(|i| baseline(values, first, i).map(|b| b.0))
        .sum();
    let k_last = baseline(values, first, end);
    let (m, s, kind_b) = k_last.unwrap_or((0.0, 1.0, BaselineKind::HourOfDay));
    Anomaly {
        kind,
        since: series.hour(start),
        hours: (end - start + 1) as u32,
        observed,
        expected,
        expected_low: (m - 4.0 * s).max(0.0),
        expected_high: m + 4.0 * s,
        baseline: kind_b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike};
    use proptest::prelude::*;

    /// A business-like week: busy working hours, quiet nights, light weekends, with
    /// deterministic noise of up to ±`noise` (fraction).
    fn seasonal(start: DateTime<Utc>, hours: usize, noise: f64, seed: u64) -> HourlySeries {
        let mut s = HourlySeries::zeros(start, hours);
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        for i in 0..hours {
            let t = s.hour(i);
            let weekend = t.weekday().number_from_monday() >= 6;
            let base: f64 = match t.hour() {
                8..=18 => 120.0,
                6 | 7 | 19 | 20 => 40.0,
                _ => 8.0,
            } * if weekend { 0.3 } else { 1.0 };
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = ((x >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0;
            s.values[i] = (base * (1.0 + noise * r)).round().max(0.0);
        }
        s
    }

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-10-26T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// `now` 20 minutes into hour `i`.
    fn at(s: &HourlySeries, i: usize) -> DateTime<Utc> {
        s.hour(i) + Duration::minutes(20)
    }

    #[test]
    fn a_normal_week_raises_no_alarm_at_any_hour() {
        let s = seasonal(start(), 24 * 7 * 5, 0.15, 7);
        for i in (24 * 7 * 4)..s.values.len() {
            let mut partial = s.clone();
            partial.values.truncate(i + 1);
            let found = detect(&partial, at(&partial, i), 4.0);
            assert!(found.is_empty(), "hour {i} ({}): {found:?}", s.hour(i));
        }
    }

    #[test]
    fn a_spike_in_working_hours_is_found_with_its_expected_range() {
        let mut s = seasonal(start(), 24 * 7 * 4 + 24 * 2 + 12, 0.1, 3);
        let now_i = s.values.len() - 1;
        s.values[now_i - 1] = 900.0;
        s.values[now_i] = 700.0;
        let f = detect(&s, at(&s, now_i), 4.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::Spike);
        assert_eq!(f[0].since, s.hour(now_i - 1));
        assert_eq!(f[0].hours, 2);
        assert_eq!(f[0].observed, 1600.0);
        assert_eq!(f[0].baseline, BaselineKind::HourOfWeek);
        assert!(f[0].expected_high < 700.0 && f[0].expected_low > 0.0);
        assert!(f[0]
            .explain("api_calls")
            .contains("since 2026-11-25 10:00 UTC"));
    }

    #[test]
    fn a_drop_to_a_fraction_of_normal_is_found() {
        let mut s = seasonal(start(), 24 * 7 * 4 + 24 * 2 + 15, 0.1, 5);
        let now_i = s.values.len() - 1;
        for i in now_i - 3..now_i {
            s.values[i] = 10.0;
        }
        let f = detect(&s, at(&s, now_i), 4.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::Drop);
        assert_eq!(f[0].since, s.hour(now_i - 3));
        assert_eq!(f[0].hours, 3);
    }

    #[test]
    fn a_silence_is_dated_from_its_first_empty_hour() {
        let mut s = seasonal(start(), 24 * 7 * 4 + 24 * 2 + 14, 0.1, 9);
        let now_i = s.values.len() - 1;
        for v in &mut s.values[now_i - 4..] {
            *v = 0.0;
        }
        let f = detect(&s, at(&s, now_i), 4.0);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, FindingKind::Silence);
        assert_eq!(f[0].since, s.hour(now_i - 4));
        assert_eq!(f[0].hours, 4);
        assert_eq!(f[0].observed, 0.0);
    }

    #[test]
    fn quiet_night_hours_without_events_are_not_a_silence() {
        // Nights average 8 events an hour at the weekend times 0.3: about 2.4 an hour.
        let mut s = seasonal(start(), 24 * 7 * 4 + 24 * 5 + 3, 0.1, 11); // Saturday 03:00
        let now_i = s.values.len() - 1;
        s.values[now_i - 1] = 0.0;
        assert!(detect(&s, at(&s, now_i), 4.0).is_empty());
    }

    #[test]
    fn with_one_week_of_history_the_hour_of_day_baseline_is_used() {
        let mut s = HourlySeries::zeros(start(), 24 * 8 + 5);
        for v in &mut s.values {
            *v = 10.0;
        }
        let now_i = s.values.len() - 1;
        s.values[now_i] = 500.0;
        let f = detect(&s, at(&s, now_i), 4.0);
        assert_eq!(f[0].kind, FindingKind::Spike);
        assert_eq!(f[0].baseline, BaselineKind::HourOfDay);
        for v in &mut s.values[now_i - 3..] {
            *v = 0.0;
        }
        let f = detect(&s, at(&s, now_i), 4.0);
        assert_eq!(f[0].kind, FindingKind::Silence);
    }

    #[test]
    fn hours_before_the_first_event_are_no_history() {
        // Three weeks of nothing, then four days of 10 an hour: the hour-of-week
        // baseline would see zeros and call every normal hour a spike.
        let mut s = HourlySeries::zeros(start(), 24 * 7 * 3 + 24 * 4 + 5);
        let first = 24 * 7 * 3;
        for v in &mut s.values[first..] {
            *v = 10.0;
        }
        let now_i = s.values.len() - 1;
        assert!(detect(&s, at(&s, now_i), 4.0).is_empty());
        s.values[now_i] = 80.0;
        let f = detect(&s, at(&s, now_i), 4.0);
        assert_eq!(f[0].baseline, BaselineKind::HourOfDay);
    }

    #[test]
    fn higher_sensitivity_reports_what_lower_sensitivity_tolerates() {
        let mut s = seasonal(start(), 24 * 7 * 4 + 24 * 2 + 12, 0.0, 1);
        let now_i = s.values.len() - 1;
        s.values[now_i] = 120.0 + 5.0 * 120f64.sqrt();
        assert!(!detect(&s, at(&s, now_i), 3.0).is_empty());
        assert!(detect(&s, at(&s, now_i), 6.0).is_empty());
    }

    proptest! {
        #[test]
        fn detection_never_panics_and_ignores_history_too_short_to_judge(
            values in proptest::collection::vec(0.0f64..1e6, 0..80), minute in 0i64..600
        ) {
            let s = HourlySeries { start: start(), values };
            let found = detect(&s, start() + Duration::minutes(minute * 60), 4.0);
            if s.values.len() < 24 * 3 + 1 { prop_assert!(found.is_empty()); }
        }
    }
}
