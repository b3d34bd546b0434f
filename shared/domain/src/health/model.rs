//! The health model, pure: daily series -> raw metrics (a [`Measurement`]) -> segment
//! baselines (median / MAD of the segment's population) -> normalised components,
//! score, band and reason codes ordered by impact. See docs/adr/0006.

use super::config::{Fallback, HealthConfig, Milestone};
use crate::ids::{AccountId, MeterName, Segment, Stage};
use crate::rollup::RollupRow;
use chrono::{Duration, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Days of history one score looks at (two 30-day trend windows plus onboarding and
/// weekly-consistency context).
pub const WINDOW_DAYS: usize = 90;

/// Daily delivered quantities per meter over the [`WINDOW_DAYS`] days before `as_of`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub start: NaiveDate,
    pub meters: BTreeMap<MeterName, Vec<f64>>,
}

impl Series {
    /// Inclusive day range read for a score as of `as_of` (which itself is excluded:
    /// the run scores complete days).
    pub fn window(as_of: NaiveDate) -> (NaiveDate, NaiveDate) {
        (
            as_of - Duration::days(WINDOW_DAYS as i64),
            as_of - Duration::days(1),
        )
    }

    pub fn empty(as_of: NaiveDate) -> Self {
        Self {
            start: Self::window(as_of).0,
            meters: BTreeMap::new(),
        }
    }

    /// Folds day rollups (any service line, `delivered` stage) into daily series.
    pub fn from_rows(as_of: NaiveDate, rows: &[RollupRow]) -> Self {
        let mut s = Self::empty(as_of);
        for r in rows {
            if r.key.stage != Stage::Delivered {
                continue;
            }
            let idx = (r.key.day - s.start).num_days();
            if !(0..WINDOW_DAYS as i64).contains(&idx) {
                continue;
            }
            let q = r.total.quantity.to_f64().unwrap_or(0.0);
            s.meters
                .entry(r.key.meter.clone())
                .or_insert_with(|| vec![0.0; WINDOW_DAYS])[idx as usize] += q;
        }
        s
    }

    /// Every meter's vector at exactly [`WINDOW_DAYS`] days (a hand-built series may
    /// not be), non-finite quantities as zero.
    fn normalised(&self) -> Self {
        let mut s = self.clone();
        for v in s.meters.values_mut() {
            v.resize(WINDOW_DAYS, 0.0);
            for x in v.iter_mut().filter(|x| !x.is_finite()) {
                *x = 0.0;
            }
        }
        s
    }

    fn is_normal(&self) -> bool {
        self.meters
            .values()
            .all(|v| v.len() == WINDOW_DAYS && v.iter().all(|x| x.is_finite()))
    }

    pub fn add(&mut self, meter: &MeterName, day: NaiveDate, quantity: f64) {
        let idx = (day - self.start).num_days();
        if (0..WINDOW_DAYS as i64).contains(&idx) {
            self.meters
                .entry(meter.clone())
                .or_insert_with(|| vec![0.0; WINDOW_DAYS])[idx as usize] += quantity;
        }
    }

    /// Sum of `meter` over the days `[WINDOW-from_end, WINDOW-to_end)` counted back
    /// from the end of the window (`sum_back(m, 30, 0)` = last 30 days).
    fn sum_back(&self, meter: &MeterName, from_end: usize, to_end: usize) -> f64 {
        match self.meters.get(meter) {
            None => 0.0,
            Some(v) => v[WINDOW_DAYS - from_end..WINDOW_DAYS - to_end].iter().sum(),
        }
    }

    fn day_total(&self, idx: usize, skip: &[&MeterName]) -> f64 {
        self.meters
            .iter()
            .filter(|(m, _)| !skip.contains(m))
            .map(|(_, v)| v[idx])
            .sum()
    }
}

pub use super::metric::{Component, Metric};

impl Component {
    pub const ALL: [Component; 4] = [
        Component::UsageTrend,
        Component::Milestones,
        Component::Friction,
        Component::Engagement,
    ];
    fn weight(self, w: &super::config::Weights) -> f64 {
        match self {
            Component::UsageTrend => w.usage_trend,
            Component::Milestones => w.milestones,
            Component::Friction => w.friction,
            Component::Engagement => w.engagement,
        }
    }
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::UsageTrend,
        Metric::UsageLevel,
        Metric::MilestonesOnTime,
        Metric::TimeToValue,
        Metric::TicketsPerUser,
        Metric::ReopenRate,
        Metric::EscalationsPerUser,
        Metric::TicketTrend,
        Metric::Utilisation,
        Metric::WeeklyConsistency,
        Metric::KeyRecency,
        Metric::KeyActiveDays,
    ];

    pub fn component(self) -> Component {
        match self {
            Metric::UsageTrend | Metric::UsageLevel => Component::UsageTrend,
            Metric::MilestonesOnTime | Metric::TimeToValue => Component::Milestones,
            Metric::TicketsPerUser
            | Metric::ReopenRate
            | Metric::EscalationsPerUser
            | Metric::TicketTrend => Component::Friction,
            Metric::Utilisation
            | Metric::WeeklyConsistency
            | Metric::KeyRecency
            | Metric::KeyActiveDays => Component::Engagement,
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::UsageTrend
                | Metric::UsageLevel
                | Metric::MilestonesOnTime
                | Metric::Utilisation
                | Metric::WeeklyConsistency
                | Metric::KeyActiveDays
        )
    }

    /// Built-in baseline (median, scale) for when no population is large enough.
    pub fn default_stat(self) -> Stat {
        let (median, scale) = match self {
            Metric::UsageTrend | Metric::UsageLevel => (0.0, 0.2),
            Metric::MilestonesOnTime => (0.67, 0.3),
            Metric::TimeToValue => (0.9, 0.4),
            Metric::TicketsPerUser => (0.3, 0.3),
            Metric::ReopenRate => (0.1, 0.1),
            Metric::EscalationsPerUser => (0.02, 0.05),
            Metric::TicketTrend => (0.0, 0.4),
            Metric::Utilisation => (0.7, 0.2),
            Metric::WeeklyConsistency => (0.9, 0.15),
            Metric::KeyRecency => (std::f64::consts::LN_2, 0.6),
            Metric::KeyActiveDays => (4.0, 0.4),
        };
        Stat {
            median,
            scale,
            p10: median - 1.28 * scale,
            p90: median + 1.28 * scale,
            n: 0,
        }
    }

    /// Smallest scale a population may have: a segment where everyone is identical
    /// must not turn tiny differences into huge z-scores.
    fn min_scale(self) -> f64 {
        match self {
            Metric::UsageTrend | Metric::UsageLevel => 0.08,
            Metric::MilestonesOnTime => 0.15,
            Metric::TimeToValue => 0.15,
            Metric::TicketsPerUser => 0.1,
            Metric::ReopenRate => 0.05,
            Metric::EscalationsPerUser => 0.02,
            Metric::TicketTrend => 0.15,
            Metric::Utilisation => 0.08,
            Metric::WeeklyConsistency => 0.125,
            Metric::KeyRecency => 0.5,
            Metric::KeyActiveDays => 0.3,
        }
    }
}

/// Robust statistics of one metric in a population.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub median: f64,
    /// 1.4826 × MAD (a standard deviation for normal data), at least the metric's floor.
    pub scale: f64,
    pub p10: f64,
    pub p90: f64,
    /// Population size (0 for the built-in defaults).
    pub n: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    Segment,
    AllSegments,
    Defaults,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricBaseline {
    pub stat: Stat,
    pub source: BaselineSource,
}

/// Where a segment's band thresholds came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandSource {
    /// Fixed in the tenant's config (e.g. fitted by a backtest).
    TenantConfig,
    /// Percentiles of the segment's scores this run.
    SegmentPercentiles,
    /// Percentiles of the whole tenant's scores (segment below `min_band_population`).
    TenantPercentiles,
    /// The fixed default bands (too few scored accounts to calibrate).
    #[default]
    Defaults,
}

/// What one segment's accounts are normalised against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub segment: Segment,
    /// Scoreable accounts in the segment this run.
    pub population: usize,
    pub metrics: BTreeMap<Metric, MetricBaseline>,
    /// The band thresholds the segment's scores are read against.
    #[serde(default)]
    pub bands: super::config::Bands,
    #[serde(default)]
    pub bands_source: BandSource,
}

impl Baseline {
    pub fn get(&self, m: Metric) -> MetricBaseline {
        self.metrics.get(&m).copied().unwrap_or(MetricBaseline {
            stat: m.default_stat(),
            source: BaselineSource::Defaults,
        })
    }
}

/// The median of `v` (sorted in place); `None` when empty or containing NaN.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = p * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Median, scaled MAD and p10/p90 of a population of one metric.
pub fn robust_stat(metric: Metric, values: &[f64]) -> Option<Stat> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    let med = median(&mut v)?;
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev).unwrap_or(0.0);
    Some(Stat {
        median: med,
        scale: (1.4826 * mad).max(metric.min_scale()),
        p10: percentile(&v, 0.1),
        p90: percentile(&v, 0.9),
        n: v.len(),
    })
}

/// Baselines for every segment from one run's measurements. A metric measured on
/// fewer than `min_segment_population` accounts of a segment falls back per config.
/// Bands are then calibrated on the scores (see [`calibrate_bands`]).
pub fn baselines<'a>(
    measurements: impl IntoIterator<Item = &'a Measurement>,
    cfg: &HealthConfig,
) -> BTreeMap<Segment, Baseline> {
    let measurements: Vec<&Measurement> = measurements.into_iter().collect();
    let mut out = metric_baselines(&measurements, cfg);
    calibrate_bands(&mut out, &measurements, cfg);
    out
}

/// Segments with fixed bands in the config keep them. Others: red at or below the
/// `band_percentiles.red` percentile of the segment's scores, green above the
/// `yellow` percentile; a segment with fewer than `min_band_population` scored
/// accounts uses the tenant's whole distribution, and a tenant with fewer the fixed
/// defaults (65 / 45).
pub fn calibrate_bands(
    baselines: &mut BTreeMap<Segment, Baseline>,
    measurements: &[&Measurement],
    cfg: &HealthConfig,
) {
    let mut by_seg: BTreeMap<Segment, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::new();
    for m in measurements {
        let Some(b) = baselines.get(&m.segment) else {
            continue;
        };
        if let Some(sc) = score(m, b, cfg) {
            by_seg.entry(m.segment).or_default().push(sc.score);
            all.push(sc.score);
        }
    }
    all.sort_by(f64::total_cmp);
    for v in by_seg.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    let p = cfg.band_percentiles;
    let min = cfg.min_band_population.max(1);
    // Scores are rounded to 0.1: a line 0.1 above a percentile makes every score at
    // or below it red, so ties at the bottom (sparse data) still band.
    let lines = |v: &[f64]| {
        let red = r1(percentile(v, p.red)) + 0.1;
        let green = (r1(percentile(v, p.yellow)) + 0.1).max(red + 0.1);
        super::config::Bands {
            green_min: green,
            yellow_min: red,
        }
    };
    for (seg, b) in baselines.iter_mut() {
        let (bands, source) = match cfg.segment(*seg).bands {
            Some(fixed) => (fixed, BandSource::TenantConfig),
            None => match by_seg.get(seg).filter(|v| v.len() >= min) {
                Some(v) => (lines(v), BandSource::SegmentPercentiles),
                None if all.len() >= min => (lines(&all), BandSource::TenantPercentiles),
                None => (super::config::Bands::default(), BandSource::Defaults),
            },
        };
        b.bands = bands;
        b.bands_source = source;
    }
}

fn metric_baselines(
    measurements: &[&Measurement],
    cfg: &HealthConfig,
) -> BTreeMap<Segment, Baseline> {
    let mut by_seg: BTreeMap<Segment, BTreeMap<Metric, Vec<f64>>> = BTreeMap::new();
    let mut all: BTreeMap<Metric, Vec<f64>> = BTreeMap::new();
    let mut population: BTreeMap<Segment, usize> = BTreeMap::new();
    for m in measurements.iter() {
        if m.insufficient.is_some() {
            continue;
        }
        *population.entry(m.segment).or_default() += 1;
        for (metric, v) in &m.metrics {
            by_seg
                .entry(m.segment)
                .or_default()
                .entry(*metric)
                .or_default()
                .push(*v);
            all.entry(*metric).or_default().push(*v);
        }
    }
    let min = cfg.min_segment_population;
    let tenant: BTreeMap<Metric, Stat> = all
        .iter()
        .filter(|(_, v)| v.len() >= min)
        .filter_map(|(m, v)| robust_stat(*m, v).map(|s| (*m, s)))
        .collect();
    Segment::ALL
        .into_iter()
        .filter(|s| *s != Segment::Unassigned)
        .map(|seg| {
            let own = by_seg.get(&seg);
            let metrics = Metric::ALL
                .into_iter()
                .map(|metric| {
                    let values = own.and_then(|o| o.get(&metric));
                    let chosen = match values.filter(|v| v.len() >= min) {
                        Some(v) => robust_stat(metric, v).map(|stat| MetricBaseline {
                            stat,
                            source: BaselineSource::Segment,
                        }),
                        None => None,
                    };
                    let chosen = chosen.or_else(|| match cfg.fallback {
                        Fallback::AllSegments => tenant.get(&metric).map(|s| MetricBaseline {
                            stat: *s,
                            source: BaselineSource::AllSegments,
                        }),
                        Fallback::Defaults => None,
                    });
                    (
                        metric,
                        chosen.unwrap_or(MetricBaseline {
                            stat: metric.default_stat(),
                            source: BaselineSource::Defaults,
                        }),
                    )
                })
                .collect();
            (
                seg,
                Baseline {
                    segment: seg,
                    population: population.get(&seg).copied().unwrap_or(0),
                    metrics,
                    bands: super::config::Bands::default(),
                    bands_source: BandSource::Defaults,
                },
            )
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterTrend {
    pub meter: MeterName,
    pub last_30d: f64,
    pub prior_30d: f64,
    /// Median weekly total of the last 4 weeks and of the 8 weeks before.
    #[serde(default)]
    pub median_week: f64,
    #[serde(default)]
    pub prior_median_week: f64,
}

impl MeterTrend {
    pub fn change(&self) -> Option<f64> {
        (self.prior_30d > 0.0).then(|| (self.last_30d - self.prior_30d) / self.prior_30d)
    }
    pub fn level_change(&self) -> Option<f64> {
        (self.prior_median_week > 0.0)
            .then(|| (self.median_week - self.prior_median_week) / self.prior_median_week)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overdue {
    pub name: String,
    pub meter: MeterName,
    pub due_days: u32,
    pub age_days: u32,
}

/// Facts behind the metrics, kept for reason texts and flags.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Signals {
    pub trends: Vec<MeterTrend>,
    /// Days since the last day with any usage; `None` when none in the window.
    pub days_since_activity: Option<u32>,
    pub active_days: u32,
    /// Week total of the burst, the median week, and the gap after it (days).
    pub burst_then_gap: Option<(f64, f64, u32)>,
    pub unadopted_key_meters: Vec<MeterName>,
    pub overdue: Vec<Overdue>,
    /// Milestones reached and when (carried over between runs).
    pub achieved: BTreeMap<String, NaiveDate>,
    pub active_users_avg: Option<f64>,
    pub active_users_peak: Option<f64>,
    /// Licensed seats the utilisation was measured against (else the peak).
    pub licensed_seats: Option<f64>,
    pub tickets_30d: f64,
    pub tickets_prior_30d: f64,
    pub weeks_active: u32,
    /// Days since the last key-feature use (1 = yesterday); `None`: none in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_since_key_use: Option<u32>,
    /// Days with key-feature use, out of `observed_days`.
    #[serde(default)]
    pub key_active_days: u32,
    #[serde(default)]
    pub observed_days: u32,
}

/// An account's raw metrics for one run (what shard workers compute and the
/// baseline is built from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub account: AccountId,
    pub segment: Segment,
    /// Why the account cannot be scored, if it cannot.
    pub insufficient: Option<String>,
    pub metrics: BTreeMap<Metric, f64>,
    pub signals: Signals,
}

/// Who is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub account: AccountId,
    pub segment: Segment,
    #[serde(default)]
    pub onboarding_date: Option<NaiveDate>,
    /// Licensed seats (the profile's `crm_properties.seats`, e.g. synced from HubSpot):
    /// "active vs seats" uses them; without them, the 90-day peak of active users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<f64>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Raw metrics of one account from its series. `achieved` carries milestone dates
/// found by earlier runs (history older than the window is not re-read).
pub fn measure(
    subject: &Subject,
    series: &Series,
    as_of: NaiveDate,
    cfg: &HealthConfig,
    achieved: &BTreeMap<String, NaiveDate>,
) -> Measurement {
    let fixed;
    let series = if series.is_normal() {
        series
    } else {
        fixed = series.normalised();
        &fixed
    };
    let seg_cfg = cfg.segment(subject.segment);
    let mut metrics = BTreeMap::new();
    let mut sig = Signals {
        achieved: achieved.clone(),
        ..Signals::default()
    };
    let ticket_meters = [
        &cfg.tickets_meter,
        &cfg.reopened_meter,
        &cfg.escalated_meter,
    ];
    // Activity: any non-ticket meter counts.
    let daily: Vec<f64> = (0..WINDOW_DAYS)
        .map(|i| series.day_total(i, &ticket_meters))
        .collect();
    sig.active_days = daily.iter().filter(|q| **q > 0.0).count() as u32;
    sig.days_since_activity = daily
        .iter()
        .rposition(|q| *q > 0.0)
        .map(|i| (WINDOW_DAYS - 1 - i) as u32 + 1);
    let first_active = daily.iter().position(|q| *q > 0.0);

    // Insufficient data: too new, or too little usage to say anything.
    let age = subject.onboarding_date.map(|d| (as_of - d).num_days());
    let insufficient = match age {
        Some(a) if a < cfg.min_account_age_days as i64 => Some(format!(
            "onboarded {a} days ago; scoring starts after {} days",
            cfg.min_account_age_days
        )),
        _ if sig.active_days < cfg.min_active_days => Some(format!(
            "{} active days in the last {WINDOW_DAYS}; at least {} needed",
            sig.active_days, cfg.min_active_days
        )),
        None if first_active
            .is_some_and(|i| WINDOW_DAYS - i < cfg.min_account_age_days as usize) =>
        {
            Some(format!(
                "first usage {} days ago and no onboarding date; scoring starts after {} days",
                WINDOW_DAYS - first_active.unwrap_or(0),
                cfg.min_account_age_days
            ))
        }
        _ => None,
    };

    // Usage trend on key meters.
    let mut changes = Vec::new();
    let mut levels = Vec::new();
    // Weeks before onboarding (or the first activity) are not quiet weeks.
    let onboard_idx = subject
        .onboarding_date
        .map(|o| (o - series.start).num_days().clamp(0, WINDOW_DAYS as i64) as usize);
    let known_from = onboard_idx.or(first_active).unwrap_or(0);
    for m in &cfg.key_meters {
        let week = |w: usize| series.sum_back(m, 7 * (w + 1), 7 * w);
        let lived = |w: &usize| WINDOW_DAYS - 7 * (w + 1) >= known_from;
        let mut recent: Vec<f64> = (0..4).filter(lived).map(week).collect();
        let mut prior: Vec<f64> = (4..12).filter(lived).map(week).collect();
        let t = MeterTrend {
            meter: m.clone(),
            last_30d: series.sum_back(m, 30, 0),
            prior_30d: series.sum_back(m, 60, 30),
            median_week: median(&mut recent).unwrap_or(0.0),
            prior_median_week: median(&mut prior).unwrap_or(0.0),
        };
        if let Some(c) = t.change() {
            changes.push(c.clamp(-1.0, 3.0));
        }
        if let Some(c) = t.level_change() {
            levels.push(c.clamp(-1.0, 3.0));
        }
        if series.sum_back(m, WINDOW_DAYS, 0) <= 0.0 {
            sig.unadopted_key_meters.push(m.clone());
        }
        sig.trends.push(t);
    }
    if !changes.is_empty() {
        metrics.insert(Metric::UsageTrend, mean(&changes));
    }
    if !levels.is_empty() {
        metrics.insert(Metric::UsageLevel, mean(&levels));
    }

    // Milestones: cumulative quantity since onboarding (or the window start).
    if let Some(onboarded) = subject.onboarding_date {
        let elapsed = (as_of - onboarded).num_days().max(0);
        let mut due = 0usize;
        let mut on_time = 0usize;
        let mut velocity = Vec::new();
        for ms in seg_cfg.milestones() {
            let reached = sig
                .achieved
                .get(&ms.name)
                .copied()
                .or_else(|| reached_on(series, ms, onboarded));
            if let Some(d) = reached {
                sig.achieved.insert(ms.name.clone(), d);
            }
            let days_to = reached.map(|d| (d - onboarded).num_days().max(0));
            let is_due = elapsed >= ms.due_days as i64;
            if is_due {
                due += 1;
                if days_to.is_some_and(|d| d <= ms.due_days as i64) {
                    on_time += 1;
                }
                if days_to.is_none() {
                    sig.overdue.push(Overdue {
                        name: ms.name.clone(),
                        meter: ms.meter.clone(),
                        due_days: ms.due_days,
                        age_days: elapsed.max(0) as u32,
                    });
                }
            }
            if is_due || days_to.is_some() {
                let d = days_to.unwrap_or(elapsed) as f64;
                velocity.push((d / ms.due_days as f64).min(4.0));
            }
        }
        if due > 0 {
            metrics.insert(Metric::MilestonesOnTime, on_time as f64 / due as f64);
        }
        if !velocity.is_empty() {
            metrics.insert(Metric::TimeToValue, mean(&velocity));
        }
    }

    // Friction.
    let users = series.meters.get(&cfg.active_users_meter);
    let users_30 = users.map(|v| mean(&v[WINDOW_DAYS - 30..]));
    let per_user = users_30.filter(|u| *u > 0.0).unwrap_or(1.0).max(1.0);
    sig.tickets_30d = series.sum_back(&cfg.tickets_meter, 30, 0);
    sig.tickets_prior_30d = series.sum_back(&cfg.tickets_meter, 60, 30);
    if sig.active_days > 0 {
        metrics.insert(Metric::TicketsPerUser, sig.tickets_30d / per_user);
        let esc = series.sum_back(&cfg.escalated_meter, 30, 0);
        metrics.insert(Metric::EscalationsPerUser, esc / per_user);
    }
    if sig.tickets_30d > 0.0 {
        let reopened = series.sum_back(&cfg.reopened_meter, 30, 0);
        metrics.insert(Metric::ReopenRate, (reopened / sig.tickets_30d).min(2.0));
    }
    if sig.tickets_30d + sig.tickets_prior_30d > 0.0 {
        metrics.insert(
            Metric::TicketTrend,
            ((sig.tickets_30d - sig.tickets_prior_30d) / sig.tickets_prior_30d.max(1.0))
                .clamp(-1.0, 5.0),
        );
    }

    // Engagement.
    if let Some(u) = users {
        let peak = u.iter().copied().fold(0.0, f64::max);
        let avg = mean(&u[WINDOW_DAYS - 14..]);
        match subject.seats.filter(|s| s.is_finite() && *s >= 1.0) {
            Some(seats) => {
                sig.active_users_avg = Some(avg);
                sig.licensed_seats = Some(seats);
                metrics.insert(Metric::Utilisation, (avg / seats).min(1.0));
            }
            None if peak > 0.0 => {
                sig.active_users_avg = Some(avg);
                sig.active_users_peak = Some(peak);
                metrics.insert(Metric::Utilisation, (avg / peak).min(1.0));
            }
            None => {}
        }
    }
    let key_daily: Vec<f64> = (0..WINDOW_DAYS)
        .map(|i| {
            cfg.key_meters
                .iter()
                .filter_map(|m| series.meters.get(m))
                .map(|v| v[i])
                .sum()
        })
        .collect();
    let weeks: Vec<f64> = (0..8)
        .map(|w| {
            let end = WINDOW_DAYS - 7 * w;
            key_daily[end - 7..end].iter().sum()
        })
        .collect(); // weeks[0] = the most recent week
    sig.weeks_active = weeks.iter().filter(|w| **w > 0.0).count() as u32;
    if sig.active_days > 0 {
        metrics.insert(Metric::WeeklyConsistency, sig.weeks_active as f64 / 8.0);
    }
    // Recency and frequency of key-feature use: on real purchase and usage logs each
    // ranks churners better than the 30-day trend alone.
    let observed = match (subject.onboarding_date, first_active) {
        (Some(o), _) => (as_of - o).num_days().clamp(1, WINDOW_DAYS as i64) as usize,
        (None, Some(i)) => WINDOW_DAYS - i,
        (None, None) => WINDOW_DAYS,
    };
    sig.observed_days = observed as u32;
    sig.key_active_days = key_daily[WINDOW_DAYS - observed..]
        .iter()
        .filter(|q| **q > 0.0)
        .count() as u32;
    sig.days_since_key_use = key_daily
        .iter()
        .rposition(|q| *q > 0.0)
        .map(|i| (WINDOW_DAYS - i) as u32);
    if sig.active_days > 0 {
        let days = sig.days_since_key_use.unwrap_or(WINDOW_DAYS as u32 + 1);
        metrics.insert(Metric::KeyRecency, f64::from(days).ln_1p());
        let per_window = f64::from(sig.key_active_days) * WINDOW_DAYS as f64 / observed as f64;
        metrics.insert(Metric::KeyActiveDays, per_window.ln_1p());
    }
    // Burst then gap: a week at least 3x the median active week, followed by 10+
    // silent days up to now.
    let gap = key_daily.iter().rev().take_while(|q| **q <= 0.0).count() as u32;
    if gap >= 10 {
        let mut active: Vec<f64> = weeks.iter().copied().filter(|w| *w > 0.0).collect();
        let peak = active.iter().copied().fold(0.0, f64::max);
        if active.len() >= 2 {
            if let Some(med) = median(&mut active) {
                if med > 0.0 && peak >= 3.0 * med {
                    sig.burst_then_gap = Some((peak, med, gap));
                }
            }
        }
    }

    Measurement {
        account: subject.account.clone(),
        segment: subject.segment,
        insufficient,
        metrics,
        signals: sig,
    }
}

fn reached_on(series: &Series, ms: &Milestone, onboarded: NaiveDate) -> Option<NaiveDate> {
    let v = series.meters.get(&ms.meter)?;
    let mut total = 0.0;
    for (i, q) in v.iter().enumerate() {
        let day = series.start + Duration::days(i as i64);
        if day < onboarded {
            continue;
        }
        total += q;
        if total > 0.0 && total >= ms.quantity {
            return Some(day);
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    Red,
    Yellow,
    Green,
}

impl Band {
    pub const ALL: [Band; 3] = [Band::Red, Band::Yellow, Band::Green];
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Red => "red",
            Band::Yellow => "yellow",
            Band::Green => "green",
        }
    }
    pub fn parse(v: &str) -> Option<Band> {
        Self::ALL.into_iter().find(|b| b.as_str() == v)
    }
    pub fn of(score: f64, bands: &super::config::Bands) -> Band {
        if score >= bands.green_min {
            Band::Green
        } else if score >= bands.yellow_min {
            Band::Yellow
        } else {
            Band::Red
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub value: f64,
    /// 0-100; 50 is the segment median.
    pub normalised: f64,
    pub segment_median: f64,
    pub source: BaselineSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentValue {
    /// 0-100.
    pub score: f64,
    /// Share of the total score (weights of missing components are redistributed).
    pub weight: f64,
    pub metrics: BTreeMap<Metric, MetricValue>,
    /// Points taken off for flags (no activity, burst then gap, ...).
    pub penalty: f64,
}

/// One reason: a code, the points it moved the score by (negative hurts) relative to
/// a segment-median account, and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub impact: f64,
    pub detail: String,
    /// The named numbers the detail states, as shown (e.g. `change_pct: -42`,
    /// `window_days: 30`), so a client need not parse the text.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numbers: BTreeMap<String, f64>,
}

/// Named numbers behind one statement.
type Nums = Vec<(&'static str, f64)>;
/// A statement and its numbers.
type Said = (String, Nums);
/// A flag: its code, its points and what it says.
type Flag = (&'static str, f64, Said);

/// A percentage as [`pct`] shows it (`-0.42` -> `-42`).
fn pct_n(x: f64) -> f64 {
    // `+ 0.0` turns a negative zero (a tiny decline rounded away) into zero.
    (x * 100.0).round() + 0.0
}
fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub score: f64,
    pub band: Band,
    pub components: BTreeMap<Component, ComponentValue>,
    pub reasons: Vec<Reason>,
    pub expansion: bool,
}

/// `+12 %` / `−42 %` (true minus sign, as CSMs read it).
pub fn pct(x: f64) -> String {
    let p = pct_n(x);
    if p < 0.0 {
        format!("\u{2212}{} %", -p)
    } else {
        format!("+{p} %")
    }
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

const PEN_UNADOPTED: f64 = 20.0;
const PEN_OVERDUE: f64 = 15.0;
const PEN_NO_ACTIVITY: f64 = 50.0;
/// Days without usage that raise `no_activity_14d` (where that is unusual).
const SILENT_DAYS: u32 = 14;
const PEN_BURST_GAP: f64 = 30.0;
const PEN_FRICTION_RISING: f64 = 30.0;
const PEN_USAGE_COLLAPSE: f64 = 40.0;
/// Both the 30-day trend and the median week at or below this: a collapse, not noise.
const COLLAPSE: f64 = -0.4;

/// Scores a measured account against its segment baseline. `None` for accounts
/// with insufficient data or nothing measurable.
pub fn score(m: &Measurement, baseline: &Baseline, cfg: &HealthConfig) -> Option<Scored> {
    if m.insufficient.is_some() {
        return None;
    }
    let seg = cfg.segment(m.segment);
    let sig = &m.signals;
    let mut per_comp: BTreeMap<Component, BTreeMap<Metric, MetricValue>> = BTreeMap::new();
    for (metric, value) in &m.metrics {
        if !value.is_finite() {
            continue;
        }
        let b = baseline.get(*metric);
        let z = (value - b.stat.median) / b.stat.scale;
        let dir = if metric.higher_is_better() { 1.0 } else { -1.0 };
        let normalised = 50.0 + 50.0 * (dir * z / 2.0).tanh();
        per_comp.entry(metric.component()).or_default().insert(
            *metric,
            MetricValue {
                value: *value,
                normalised,
                segment_median: b.stat.median,
                source: b.source,
            },
        );
    }
    // Flags, as penalties on a component (codes and points).
    // Flags that read silence or a quiet month as alarming (no activity for 14 days, a
    // collapse, a burst then a gap) apply where use is regular: where the segment's
    // median account used a key feature within the last 14 days. In a segment that
    // buys every few months, quiet weeks are the norm; the recency and frequency
    // metrics still rank them (on the CDNOW purchase log these flags cost 0.01 AUC).
    let regular_use = baseline.get(Metric::KeyRecency).stat.median < f64::from(SILENT_DAYS).ln_1p();
    let mut penalties: BTreeMap<Component, Vec<Flag>> = BTreeMap::new();
    let usage_change = m.metrics.get(&Metric::UsageTrend).copied();
    if !sig.unadopted_key_meters.is_empty() && per_comp.contains_key(&Component::UsageTrend) {
        let names: Vec<&str> = sig
            .unadopted_key_meters
            .iter()
            .map(|m| m.as_str())
            .collect();
        penalties.entry(Component::UsageTrend).or_default().push((
            "key_feature_not_adopted",
            (PEN_UNADOPTED * names.len() as f64).min(40.0),
            unadopted_detail(&names, sig),
        ));
    }
    if !sig.overdue.is_empty() && per_comp.contains_key(&Component::Milestones) {
        penalties.entry(Component::Milestones).or_default().push((
            "milestone_overdue",
            (PEN_OVERDUE * sig.overdue.len() as f64).min(45.0),
            overdue_detail(&sig.overdue),
        ));
    }
    // Key usage collapsing (30-day total and median week both down 40 %+) is a loss of
    // engagement too, whatever the segment does.
    let level = m.metrics.get(&Metric::UsageLevel).copied();
    if let (Some(u), Some(l)) = (usage_change, level) {
        if u <= COLLAPSE && l <= COLLAPSE && regular_use {
            penalties.entry(Component::Engagement).or_default().push((
                "usage_down_30d",
                PEN_USAGE_COLLAPSE,
                (
                    format!(
                        "key usage collapsing: {} over 30 d and {} on the median week",
                        pct(u),
                        pct(l)
                    ),
                    vec![
                        ("collapse_30d_pct", pct_n(u)),
                        ("collapse_median_week_pct", pct_n(l)),
                        ("window_days", 30.0),
                    ],
                ),
            ));
        }
    }
    if let Some(d) = sig
        .days_since_activity
        .filter(|d| *d >= SILENT_DAYS && regular_use)
    {
        penalties.entry(Component::Engagement).or_default().push((
            "no_activity_14d",
            PEN_NO_ACTIVITY,
            (
                format!("no usage for {d} days"),
                vec![("days_without_usage", f64::from(d))],
            ),
        ));
    }
    if let Some((peak, med, gap)) = sig.burst_then_gap.filter(|_| regular_use) {
        penalties.entry(Component::Engagement).or_default().push((
            "burst_then_gap",
            PEN_BURST_GAP,
            (
                format!(
                    "a week of {} key-meter units ({:.1}x the median week) then {gap} silent days",
                    r1(peak),
                    peak / med.max(f64::MIN_POSITIVE)
                ),
                vec![
                    ("burst_week", r1(peak)),
                    ("times_median_week", r1(peak / med.max(f64::MIN_POSITIVE))),
                    ("silent_days", f64::from(gap)),
                ],
            ),
        ));
    }
    let ticket_change = m.metrics.get(&Metric::TicketTrend).copied();
    if let (Some(t), Some(u)) = (ticket_change, usage_change) {
        if t >= 0.25 && u <= -0.1 && sig.tickets_30d >= 2.0 {
            penalties.entry(Component::Friction).or_default().push((
                "ticket_friction_rising",
                PEN_FRICTION_RISING,
                (
                    format!(
                        "tickets {} ({} vs {}) while key usage {} vs prior 30 d",
                        pct(t),
                        sig.tickets_30d,
                        sig.tickets_prior_30d,
                        pct(u)
                    ),
                    vec![
                        ("tickets_change_pct", pct_n(t)),
                        ("tickets_30d", sig.tickets_30d),
                        ("tickets_prior_30d", sig.tickets_prior_30d),
                        ("usage_change_pct", pct_n(u)),
                    ],
                ),
            ));
        }
    }

    let present: Vec<Component> = Component::ALL
        .into_iter()
        .filter(|c| per_comp.contains_key(c))
        .collect();
    let total_w: f64 = present.iter().map(|c| c.weight(&seg.weights)).sum();
    if present.is_empty() || total_w <= 0.0 {
        return None;
    }
    let mut components = BTreeMap::new();
    let mut reasons: BTreeMap<String, (f64, Vec<Said>)> = BTreeMap::new();
    let mut add_reason = |code: &str, impact: f64, said: Said| {
        let e = reasons.entry(code.to_owned()).or_insert((0.0, Vec::new()));
        e.0 += impact;
        if !e.1.iter().any(|d| d.0 == said.0) {
            e.1.push(said);
        }
    };
    let mut total = 0.0;
    for c in &present {
        let share = c.weight(&seg.weights) / total_w;
        let metrics = per_comp.remove(c).unwrap_or_default();
        // The weighted mean of the component's metrics (equal weights if the config
        // zeroes them all).
        let mut mw: BTreeMap<Metric, f64> = metrics
            .keys()
            .map(|k| (*k, seg.metric_weight(*k)))
            .collect();
        if mw.values().sum::<f64>() <= 0.0 {
            mw.values_mut().for_each(|w| *w = 1.0);
        }
        let n = mw.values().sum::<f64>().max(f64::MIN_POSITIVE);
        let base = metrics
            .iter()
            .map(|(k, v)| mw.get(k).copied().unwrap_or(1.0) * v.normalised)
            .sum::<f64>()
            / n;
        let pens = penalties.remove(c).unwrap_or_default();
        let penalty: f64 = pens.iter().map(|p| p.1).sum();
        let score = (base - penalty).clamp(0.0, 100.0);
        total += share * score;
        for (metric, v) in &metrics {
            let impact = share * mw.get(metric).copied().unwrap_or(1.0) * (v.normalised - 50.0) / n;
            match metric_reason(*metric, v, impact, m, cfg) {
                Some((code, detail, nums)) => add_reason(code, impact, (detail, nums)),
                None => add_reason(
                    "other_factors",
                    impact,
                    (
                        format!(
                            "{metric:?} {:.2}, segment median {:.2}",
                            v.value, v.segment_median
                        ),
                        vec![
                            ("value", r2(v.value)),
                            ("segment_median", r2(v.segment_median)),
                        ],
                    ),
                ),
            }
        }
        // Penalties scaled to what the clamp actually took off.
        let taken = (base - score).max(0.0);
        for (code, p, detail) in pens {
            let part = if penalty > 0.0 {
                taken * p / penalty
            } else {
                0.0
            };
            add_reason(code, -share * part, detail);
        }
        components.insert(
            *c,
            ComponentValue {
                score: r1(score),
                weight: (share * 1000.0).round() / 1000.0,
                metrics,
                penalty,
            },
        );
    }
    let score = total.clamp(0.0, 100.0);
    let band = Band::of(score, &seg.bands.unwrap_or(baseline.bands));
    let utilisation = m.metrics.get(&Metric::Utilisation).copied();
    let usage_z = components
        .get(&Component::UsageTrend)
        .and_then(|c| c.metrics.get(&Metric::UsageTrend))
        .map(|v| v.normalised);
    let friction_ok = components
        .get(&Component::Friction)
        .is_none_or(|c| c.score >= 50.0);
    let expansion = usage_change.is_some_and(|u| u >= 0.2)
        && usage_z.is_some_and(|s| s >= 70.0)
        && utilisation.is_none_or(|u| u >= 0.85)
        && friction_ok
        && band != Band::Red;
    if expansion {
        let best = sig
            .trends
            .iter()
            .filter_map(|t| t.change().map(|c| (c, t)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let mut nums = Nums::new();
        let mut detail = match best {
            Some((c, t)) => {
                nums.push(("change_pct", pct_n(c)));
                nums.push(("window_days", 30.0));
                format!("{} {} vs prior 30 d", t.meter, pct(c))
            }
            None => "key usage growing".to_owned(),
        };
        if let Some(u) = utilisation {
            nums.push(("seats_active_pct", pct_n(u)));
            detail.push_str(&format!(
                ", {} of seats active",
                pct(u).trim_start_matches('+')
            ));
        }
        detail.push_str(", friction at or below the segment median");
        add_reason("expansion_signal", 0.0, (detail, nums));
    }
    // Each statement is made once, in the reason it moves most.
    let mut ordered: Vec<(String, (f64, Vec<Said>))> = reasons.into_iter().collect();
    ordered.sort_by(|a, b| b.1 .0.abs().total_cmp(&a.1 .0.abs()).then(a.0.cmp(&b.0)));
    let mut said = std::collections::BTreeSet::new();
    let (major, minor): (Vec<_>, Vec<_>) = ordered
        .into_iter()
        .partition(|(code, (impact, _))| impact.abs() >= 0.5 || code == "expansion_signal");
    let mut reasons: Vec<Reason> = major
        .into_iter()
        .map(|(code, (impact, details))| {
            let (detail, numbers) = unique_parts(&details, &mut said);
            Reason {
                code,
                impact: r1(impact),
                detail,
                numbers,
            }
        })
        .collect();
    // The small movers together, so the impacts always add up to the distance from a
    // segment-median account (score 50).
    let rest: f64 = minor.iter().map(|(_, (impact, _))| impact).sum();
    if r1(rest) != 0.0 {
        let codes: Vec<&str> = minor.iter().map(|(c, _)| c.as_str()).collect();
        let detail = format!(
            "{} smaller factors (under 0.5 points each): {}",
            minor.len(),
            codes.join(", ")
        );
        match reasons.iter_mut().find(|r| r.code == "other_factors") {
            Some(r) => {
                r.impact = r1(r.impact + rest);
                r.detail = format!("{}; {detail}", r.detail);
                r.numbers
                    .insert("smaller_factors".into(), minor.len() as f64);
            }
            None => reasons.push(Reason {
                code: "other_factors".into(),
                impact: r1(rest),
                detail,
                numbers: [("smaller_factors".to_owned(), minor.len() as f64)].into(),
            }),
        }
    }
    // Harmful reasons first, largest first; then helpful ones, largest first.
    reasons.sort_by(|a, b| {
        let ka = (a.impact >= 0.0, -a.impact.abs());
        let kb = (b.impact >= 0.0, -b.impact.abs());
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(a.code.cmp(&b.code))
    });
    Some(Scored {
        score: r1(score),
        band,
        components,
        reasons,
        expansion,
    })
}

fn overdue_detail(overdue: &[Overdue]) -> (String, Nums) {
    let nums = overdue
        .first()
        .map(|o| {
            vec![
                ("due_day", f64::from(o.due_days)),
                ("day_now", f64::from(o.age_days)),
            ]
        })
        .unwrap_or_default();
    let text = overdue
        .iter()
        .map(|o| {
            let what = if o.name.starts_with("first_") {
                "first use".to_owned()
            } else {
                o.meter.to_string()
            };
            format!(
                "{} ({what}) due by day {}, not reached at day {}",
                o.name, o.due_days, o.age_days
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    (text, nums)
}

fn unadopted_detail(names: &[&str], sig: &Signals) -> (String, Nums) {
    let mut s = format!(
        "no use of key features ({}) in the last {WINDOW_DAYS} d",
        names.join(", ")
    );
    let mut nums = vec![("window_days", WINDOW_DAYS as f64)];
    if sig.active_days > 0 {
        nums.push(("other_meters_active_days", f64::from(sig.active_days)));
        s.push_str(&format!(
            ", though active on other meters on {} of {WINDOW_DAYS} days",
            sig.active_days
        ));
    }
    (s, nums)
}

/// The `; `-separated statements of a detail, a trailing `segment median …` clause kept
/// with the statement it qualifies: two metrics whose medians print alike (tickets and
/// escalations per user both at 1.21) are still two statements, each with its median.
fn statements(text: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices("; ") {
        let next = &text[at + 2..];
        if next.starts_with("segment median") {
            continue;
        }
        out.push(&text[start..at]);
        start = at + 2;
    }
    out.push(&text[start..]);
    out
}

/// Joins the statements of `details` (each may hold several, `; `-separated),
/// dropping any already `said` here or in an earlier reason, with the numbers of the
/// statements kept (the first value of a name wins).
fn unique_parts(
    details: &[Said],
    said: &mut std::collections::BTreeSet<String>,
) -> (String, BTreeMap<String, f64>) {
    let mut out: Vec<&str> = Vec::new();
    let mut numbers = BTreeMap::new();
    for (text, nums) in details {
        let mut kept = false;
        for part in statements(text) {
            if said.insert(part.to_owned()) {
                out.push(part);
                kept = true;
            }
        }
        if kept {
            for (k, v) in nums {
                numbers.entry((*k).to_owned()).or_insert(*v);
            }
        }
    }
    (out.join("; "), numbers)
}

fn metric_reason(
    metric: Metric,
    v: &MetricValue,
    impact: f64,
    m: &Measurement,
    cfg: &HealthConfig,
) -> Option<(&'static str, String, Nums)> {
    let sig = &m.signals;
    let hurts = impact < 0.0;
    let med = v.segment_median;
    Some(match metric {
        Metric::UsageTrend => {
            let changes = sig.trends.iter().filter_map(|t| t.change().map(|c| (c, t)));
            let (code, pick) = if hurts {
                ("usage_down_30d", changes.min_by(|a, b| a.0.total_cmp(&b.0)))
            } else {
                ("usage_up_30d", changes.max_by(|a, b| a.0.total_cmp(&b.0)))
            };
            let (c, t) = pick?;
            (
                code,
                format!(
                    "{} {} vs prior 30 d ({} vs {}); segment median {}",
                    t.meter,
                    pct(c),
                    r1(t.last_30d),
                    r1(t.prior_30d),
                    pct(med)
                ),
                vec![
                    ("change_pct", pct_n(c)),
                    ("window_days", 30.0),
                    ("last_30d", r1(t.last_30d)),
                    ("prior_30d", r1(t.prior_30d)),
                    ("segment_median_change_pct", pct_n(med)),
                ],
            )
        }
        Metric::UsageLevel => {
            let pick = sig
                .trends
                .iter()
                .filter_map(|t| t.level_change().map(|c| (c, t)));
            let pick = if hurts {
                pick.min_by(|a, b| a.0.total_cmp(&b.0))
            } else {
                pick.max_by(|a, b| a.0.total_cmp(&b.0))
            };
            let (c, t) = pick?;
            (
                if hurts {
                    "usage_down_30d"
                } else {
                    "usage_up_30d"
                },
                format!(
                    "{} median week {} vs the 8 weeks before ({} vs {}); segment median {}",
                    t.meter,
                    pct(c),
                    r1(t.median_week),
                    r1(t.prior_median_week),
                    pct(med)
                ),
                vec![
                    ("median_week_change_pct", pct_n(c)),
                    ("median_week", r1(t.median_week)),
                    ("prior_median_week", r1(t.prior_median_week)),
                    ("segment_median_week_change_pct", pct_n(med)),
                ],
            )
        }
        Metric::MilestonesOnTime | Metric::TimeToValue if hurts => match sig.overdue.is_empty() {
            false => {
                let (text, nums) = overdue_detail(&sig.overdue);
                ("milestone_overdue", text, nums)
            }
            true => {
                let ttv = m
                    .metrics
                    .get(&Metric::TimeToValue)
                    .copied()
                    .unwrap_or(v.value);
                (
                    "slow_time_to_value",
                    format!(
                        "milestones reached at {:.1}x their due days; segment median {:.1}x",
                        ttv, med
                    ),
                    vec![
                        ("times_due_days", r1(ttv)),
                        ("segment_median_times_due_days", r1(med)),
                    ],
                )
            }
        },
        Metric::MilestonesOnTime | Metric::TimeToValue => (
            "milestones_on_track",
            format!("{} of milestones reached", sig.achieved.len()),
            vec![("milestones_reached", sig.achieved.len() as f64)],
        ),
        Metric::TicketsPerUser if hurts => (
            "high_ticket_rate",
            format!(
                "{:.2} tickets per active user in 30 d ({} tickets); segment median {:.2}",
                v.value, sig.tickets_30d, med
            ),
            vec![
                ("tickets_per_user", r2(v.value)),
                ("tickets_30d", sig.tickets_30d),
                ("segment_median_per_user", r2(med)),
            ],
        ),
        Metric::ReopenRate if hurts => (
            "high_reopen_rate",
            format!(
                "{} of tickets reopened in 30 d; segment median {}",
                pct(v.value).trim_start_matches('+'),
                pct(med).trim_start_matches('+')
            ),
            vec![
                ("reopened_pct", pct_n(v.value)),
                ("segment_median_pct", pct_n(med)),
            ],
        ),
        Metric::EscalationsPerUser if hurts => (
            "escalations",
            format!(
                "{:.2} escalations ({}) per active user in 30 d; segment median {:.2}",
                v.value, cfg.escalated_meter, med
            ),
            vec![
                ("escalations_per_user", r2(v.value)),
                ("segment_median_per_user", r2(med)),
            ],
        ),
        Metric::TicketTrend if hurts => (
            "tickets_rising",
            format!(
                "{} tickets {} vs prior 30 d ({} vs {}); segment median {}",
                cfg.tickets_meter,
                pct(v.value),
                sig.tickets_30d,
                sig.tickets_prior_30d,
                pct(med)
            ),
            vec![
                ("tickets_change_pct", pct_n(v.value)),
                ("tickets_30d", sig.tickets_30d),
                ("tickets_prior_30d", sig.tickets_prior_30d),
                ("segment_median_change_pct", pct_n(med)),
            ],
        ),
        Metric::TicketsPerUser
        | Metric::ReopenRate
        | Metric::EscalationsPerUser
        | Metric::TicketTrend => (
            "low_friction",
            "support load below the segment".into(),
            Nums::new(),
        ),
        Metric::Utilisation => {
            let users = sig.active_users_avg.unwrap_or(0.0);
            let seats = sig.licensed_seats.or(sig.active_users_peak).unwrap_or(0.0);
            (
                if hurts {
                    "low_active_users"
                } else {
                    "high_adoption"
                },
                format!(
                    "{:.0} of {:.0} {} seats active (14-day average, {}); segment median {}",
                    users,
                    seats,
                    if sig.licensed_seats.is_some() {
                        "licensed"
                    } else {
                        "peak"
                    },
                    pct(v.value).trim_start_matches('+'),
                    pct(med).trim_start_matches('+')
                ),
                vec![
                    ("active_users", users.round()),
                    ("seats", seats.round()),
                    ("seats_active_pct", pct_n(v.value)),
                    ("segment_median_pct", pct_n(med)),
                ],
            )
        }
        Metric::KeyRecency => {
            let days = sig.days_since_key_use;
            let median_days = med.exp_m1().round();
            let code = if !hurts {
                "recent_use"
            } else if days.is_none_or(|d| d >= 14) {
                "no_activity_14d"
            } else {
                "last_use_late"
            };
            match days {
                Some(d) => (
                    code,
                    format!(
                        "last key-feature use {d} days ago; segment median {median_days} days"
                    ),
                    vec![
                        ("days_since_key_use", f64::from(d)),
                        ("segment_median_days", median_days),
                    ],
                ),
                None => (
                    code,
                    format!(
                        "no key-feature use in the last {WINDOW_DAYS} d; segment median {median_days} days since the last"
                    ),
                    vec![
                        ("window_days", WINDOW_DAYS as f64),
                        ("segment_median_days", median_days),
                    ],
                ),
            }
        }
        Metric::KeyActiveDays => {
            let median_days =
                (med.exp_m1() * f64::from(sig.observed_days) / WINDOW_DAYS as f64).round();
            (
                if hurts {
                    "activity_days_low"
                } else {
                    "activity_days_high"
                },
                format!(
                    "key features used on {} of the last {} days; segment median {median_days}",
                    sig.key_active_days, sig.observed_days,
                ),
                vec![
                    ("active_days", f64::from(sig.key_active_days)),
                    ("observed_days", f64::from(sig.observed_days)),
                    ("segment_median_days", median_days),
                ],
            )
        }
        // Weeks count key-feature use only: an account busy on other meters is not
        // "inactive", it does not use the key features (and the reason says so).
        Metric::WeeklyConsistency if sig.weeks_active == 0 => {
            let names: Vec<&str> = cfg.key_meters.iter().map(|m| m.as_str()).collect();
            let (text, nums) = unadopted_detail(&names, sig);
            ("key_feature_not_adopted", text, nums)
        }
        Metric::WeeklyConsistency => {
            let median_weeks = (med * 8.0).round();
            (
                if hurts {
                    "inconsistent_usage"
                } else {
                    "consistent_usage"
                },
                format!(
                    "key features ({}) used in {} of the last 8 weeks; segment median {median_weeks}",
                    cfg.key_meters
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    sig.weeks_active,
                ),
                vec![
                    ("weeks_active", f64::from(sig.weeks_active)),
                    ("weeks", 8.0),
                    ("segment_median_weeks", median_weeks),
                ],
            )
        }
    })
}
