//! Adoption by tier (issue #12): within one segment, the days each monthly onboarding
//! cohort took to reach the tier's milestones (median and 75th percentile), the
//! tier's primary KPI against its benchmark, and the accounts lagging their
//! milestones. Pure: the API reads profiles, latest health records and the segment's
//! rollups and hands them here.
//!
//! Percentiles are nearest-rank on whole days: the value at rank `ceil(p * n)` of the
//! sorted days, so every figure is a number of days some account really took.

use crate::health::config::Milestone;
use crate::ids::{AccountId, MeterName};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use std::collections::BTreeMap;

/// Days of usage (and of scores) the ratio and trend KPIs look back over.
pub const KPI_WINDOW_DAYS: i64 = 30;
/// Lagging accounts listed at most (the total is reported too).
pub const MAX_LAGGING: usize = 100;

pub mod kpi;
pub use kpi::TierKpi;

/// One account of the segment as the API found it: its onboarding day (the profile's
/// `onboarding_date`, else the day it was created), the milestones its latest health
/// record says it reached, and its recent scores (oldest first).
#[derive(Debug, Clone, PartialEq)]
pub struct Onboarded {
    pub account: AccountId,
    pub name: Option<String>,
    pub owner: Option<String>,
    pub onboarded: NaiveDate,
    pub reached: BTreeMap<String, NaiveDate>,
    pub scores: Vec<(NaiveDate, f64)>,
}

/// `YYYY-MM` of a day: its monthly onboarding cohort.
pub fn cohort_of(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

/// Nearest-rank percentile (`0 < p <= 1`) of sorted values; `None` when empty.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MilestoneStats {
    pub milestone: String,
    pub meter: MeterName,
    pub due_days: u32,
    /// Accounts of the cohort.
    pub accounts: usize,
    pub reached: usize,
    /// Reached by the due day.
    pub on_time: usize,
    /// Not reached and past the due day.
    pub overdue: usize,
    /// Days from onboarding to the milestone, over the accounts that reached it.
    pub median_days: Option<i64>,
    pub p75_days: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortStats {
    /// `YYYY-MM` of onboarding.
    pub cohort: String,
    pub accounts: usize,
    pub milestones: Vec<MilestoneStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lagging {
    pub account: AccountId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub cohort: String,
    pub onboarded: NaiveDate,
    pub milestone: String,
    pub due_days: u32,
    /// Days since onboarding.
    pub age_days: i64,
    /// `age_days - due_days`: how late the milestone is.
    pub days_behind: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiValue {
    pub kpi: &'static str,
    pub unit: &'static str,
    /// `None`: nothing to measure yet (no account reached a milestone, no tickets...).
    pub value: Option<f64>,
    pub benchmark: f64,
    pub higher_is_better: bool,
    /// `None` when there is no value.
    pub meets_benchmark: Option<bool>,
    pub meters: Vec<MeterName>,
    /// What the value was computed from (accounts, or events of the denominator).
    pub sample: u64,
}

/// Days from onboarding to a reached day (never negative: a milestone reached before
/// the recorded onboarding counts as day 0).
fn days_between(onboarded: NaiveDate, reached: NaiveDate) -> i64 {
    (reached - onboarded).num_days().max(0)
}

/// Per monthly onboarding cohort (oldest first), the days to each milestone.
pub fn cohorts(
    milestones: &[Milestone],
    accounts: &[Onboarded],
    today: NaiveDate,
) -> Vec<CohortStats> {
    let mut by_cohort: BTreeMap<String, Vec<&Onboarded>> = BTreeMap::new();
    for a in accounts {
        by_cohort.entry(cohort_of(a.onboarded)).or_default().push(a);
    }
    by_cohort
        .into_iter()
        .map(|(cohort, members)| CohortStats {
            cohort,
            accounts: members.len(),
            milestones: milestones
                .iter()
                .map(|ms| milestone_stats(ms, &members, today))
                .collect(),
        })
        .collect()
}

fn milestone_stats(ms: &Milestone, members: &[&Onboarded], today: NaiveDate) -> MilestoneStats {
    let due = i64::from(ms.due_days);
    let mut days = Vec::new();
    let mut overdue = 0;
    for a in members {
        match a.reached.get(&ms.name) {
            Some(d) => days.push(days_between(a.onboarded, *d)),
            None if (today - a.onboarded).num_days() > due => overdue += 1,
            None => {}
        }
    }
    days.sort_unstable();
    MilestoneStats {
        milestone: ms.name.clone(),
        meter: ms.meter.clone(),
        due_days: ms.due_days,
        accounts: members.len(),
        reached: days.len(),
        on_time: days.iter().filter(|d| **d <= due).count(),
        overdue,
        median_days: percentile(&days, 0.5),
        p75_days: percentile(&days, 0.75),
    }
}

/// Accounts past a milestone's due day without reaching it, most days behind first
/// (at most `limit`), and how many there are in all.
pub fn lagging(
    milestones: &[Milestone],
    accounts: &[Onboarded],
    today: NaiveDate,
    limit: usize,
) -> (Vec<Lagging>, usize) {
    let mut out = Vec::new();
    for a in accounts {
        let age = (today - a.onboarded).num_days();
        for ms in milestones {
            let due = i64::from(ms.due_days);
            if age > due && !a.reached.contains_key(&ms.name) {
                out.push(Lagging {
                    account: a.account.clone(),
                    name: a.name.clone(),
                    owner: a.owner.clone(),
                    cohort: cohort_of(a.onboarded),
                    onboarded: a.onboarded,
                    milestone: ms.name.clone(),
                    due_days: ms.due_days,
                    age_days: age,
                    days_behind: age - due,
                });
            }
        }
    }
    out.sort_by(|x, y| {
        y.days_behind
            .cmp(&x.days_behind)
            .then_with(|| x.account.as_str().cmp(y.account.as_str()))
            .then_with(|| x.milestone.cmp(&y.milestone))
    });
    let total = out.len();
    out.truncate(limit);
    (out, total)
}

/// Totals of the KPI's meters over its window (delivered stage), for the ratio KPIs.
pub type MeterTotals = BTreeMap<MeterName, f64>;

/// The tier's KPI from the accounts (time to first value, health trend) or the
/// segment's usage totals over the last [`KPI_WINDOW_DAYS`] (the ratios).
pub fn kpi(
    kpi: &TierKpi,
    milestones: &[Milestone],
    accounts: &[Onboarded],
    totals: &MeterTotals,
    today: NaiveDate,
) -> KpiValue {
    let total = |m: &MeterName| totals.get(m).copied().unwrap_or(0.0);
    let ratio = |num: &MeterName, den: &MeterName| {
        let d = total(den);
        let v = (d > 0.0).then(|| (total(num) / d * 1000.0).round() / 10.0);
        (v, d.max(0.0).round() as u64)
    };
    let (value, sample) = match kpi {
        TierKpi::TimeToFirstValue { meters, .. } => {
            let counted: Vec<&Milestone> = milestones
                .iter()
                .filter(|ms| meters.is_empty() || meters.contains(&ms.meter))
                .collect();
            let mut days: Vec<i64> = accounts
                .iter()
                .filter_map(|a| {
                    counted
                        .iter()
                        .filter_map(|ms| a.reached.get(&ms.name))
                        .min()
                        .map(|d| days_between(a.onboarded, *d))
                })
                .collect();
            days.sort_unstable();
            (percentile(&days, 0.5).map(|d| d as f64), days.len() as u64)
        }
        TierKpi::SlaHitRate {
            met_meter,
            total_meter,
            ..
        } => ratio(met_meter, total_meter),
        TierKpi::EscalationRate {
            escalated_meter,
            tickets_meter,
            ..
        } => ratio(escalated_meter, tickets_meter),
        TierKpi::HealthTrend { .. } => {
            let since = today - chrono::Duration::days(KPI_WINDOW_DAYS);
            let mut changes: Vec<i64> = accounts
                .iter()
                .filter_map(|a| {
                    let window: Vec<f64> = a
                        .scores
                        .iter()
                        .filter(|(d, _)| *d >= since)
                        .map(|(_, s)| *s)
                        .collect();
                    match (window.first(), window.last()) {
                        (Some(first), Some(last)) if window.len() >= 2 => {
                            // Tenths of a point, so the median stays exact.
                            Some(((last - first) * 10.0).round() as i64)
                        }
                        _ => None,
                    }
                })
                .collect();
            changes.sort_unstable();
            (
                percentile(&changes, 0.5).map(|t| t as f64 / 10.0),
                changes.len() as u64,
            )
        }
    };
    let benchmark = kpi.benchmark();
    KpiValue {
        kpi: kpi.name(),
        unit: kpi.unit(),
        value,
        benchmark,
        higher_is_better: kpi.higher_is_better(),
        meets_benchmark: value.map(|v| {
            if kpi.higher_is_better() {
                v >= benchmark
            } else {
                v <= benchmark
            }
        }),
        meters: kpi.meters(),
        sample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Segment;
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn ms(name: &str, due: u32) -> Milestone {
        Milestone {
            name: name.into(),
            meter: MeterName::parse("api_calls").unwrap(),
            quantity: 0.0,
            due_days: due,
        }
    }

    fn acct(id: &str, onboarded: &str, reached: &[(&str, &str)]) -> Onboarded {
        Onboarded {
            account: AccountId::parse(id).unwrap(),
            name: None,
            owner: None,
            onboarded: day(onboarded),
            reached: reached
                .iter()
                .map(|(n, d)| ((*n).to_owned(), day(d)))
                .collect(),
            scores: Vec::new(),
        }
    }

    #[test]
    fn cohorts_are_calendar_months_of_onboarding_with_median_and_p75_days() {
        let accounts = vec![
            acct("a1", "2026-01-05", &[("first", "2026-01-07")]), // 2 days
            acct("a2", "2026-01-20", &[("first", "2026-01-30")]), // 10 days
            acct("a3", "2026-01-31", &[("first", "2026-02-05")]), // 5 days
            acct("a4", "2026-01-10", &[]),                        // overdue
            acct("b1", "2026-02-01", &[("first", "2026-02-04")]), // 3 days
        ];
        let out = cohorts(&[ms("first", 14)], &accounts, day("2026-03-01"));
        assert_eq!(
            out.iter().map(|c| c.cohort.as_str()).collect::<Vec<_>>(),
            ["2026-01", "2026-02"]
        );
        let jan = &out[0].milestones[0];
        assert_eq!(
            (jan.accounts, jan.reached, jan.on_time, jan.overdue),
            (4, 3, 3, 1)
        );
        assert_eq!(
            jan.median_days,
            Some(5),
            "sorted 2, 5, 10: rank ceil(1.5) = 2"
        );
        assert_eq!(jan.p75_days, Some(10));
        assert_eq!(out[1].milestones[0].median_days, Some(3));
    }

    #[test]
    fn lagging_accounts_are_those_past_the_due_day_most_behind_first() {
        let accounts = vec![
            acct("late", "2026-01-01", &[]),
            acct("later", "2025-12-01", &[]),
            acct("fresh", "2026-02-25", &[]),
            acct("done", "2025-12-01", &[("first", "2025-12-03")]),
        ];
        let (rows, total) = lagging(&[ms("first", 14)], &accounts, day("2026-03-01"), 1);
        assert_eq!(total, 2, "'fresh' is not due yet, 'done' reached it");
        assert_eq!(rows[0].account.as_str(), "later");
        assert_eq!(rows[0].age_days, 90);
        assert_eq!(rows[0].days_behind, 76);
    }

    #[test]
    fn ratio_kpis_come_from_the_mapped_meters_and_face_their_benchmark() {
        let m = |s: &str| MeterName::parse(s).unwrap();
        let k = TierKpi::EscalationRate {
            escalated_meter: m("esc"),
            tickets_meter: m("tix"),
            benchmark_percent: 5.0,
        };
        let totals: MeterTotals = [(m("esc"), 3.0), (m("tix"), 40.0)].into_iter().collect();
        let v = kpi(&k, &[], &[], &totals, day("2026-03-01"));
        assert_eq!(v.value, Some(7.5));
        assert_eq!(
            v.meets_benchmark,
            Some(false),
            "lower is better: 7.5 % > 5 %"
        );
        assert_eq!(v.sample, 40);
        let none = kpi(&k, &[], &[], &MeterTotals::new(), day("2026-03-01"));
        assert_eq!((none.value, none.meets_benchmark), (None, None));
    }

    #[test]
    fn time_to_first_value_is_the_median_days_to_the_first_mapped_milestone() {
        let accounts = vec![
            acct(
                "a",
                "2026-01-01",
                &[("first", "2026-01-04"), ("second", "2026-01-02")],
            ),
            acct("b", "2026-01-01", &[("first", "2026-01-09")]),
            acct("c", "2026-01-01", &[]),
        ];
        let k = TierKpi::TimeToFirstValue {
            meters: vec![],
            benchmark_days: 7.0,
        };
        let v = kpi(
            &k,
            &[ms("first", 14), ms("second", 30)],
            &accounts,
            &MeterTotals::new(),
            day("2026-03-01"),
        );
        assert_eq!(
            v.value,
            Some(1.0),
            "a: 1 day (second), b: 8 days; nearest-rank median of 2 is the first"
        );
        assert_eq!(v.sample, 2);
        assert_eq!(v.meets_benchmark, Some(true));
    }

    #[test]
    fn a_health_trend_is_the_median_score_change_over_30_days() {
        let mut a = acct("a", "2025-01-01", &[]);
        a.scores = vec![
            (day("2026-01-01"), 90.0),
            (day("2026-02-10"), 70.0),
            (day("2026-02-28"), 60.5),
        ];
        let k = TierKpi::HealthTrend {
            benchmark_points: 0.0,
        };
        let v = kpi(&k, &[], &[a], &MeterTotals::new(), day("2026-03-01"));
        assert_eq!(
            v.value,
            Some(-9.5),
            "only the scores of the last 30 days count"
        );
        assert_eq!(v.meets_benchmark, Some(false));
    }

    #[test]
    fn a_kpi_benchmark_out_of_range_is_refused() {
        assert!(TierKpi::HealthTrend {
            benchmark_points: f64::NAN
        }
        .validate("k")
        .is_err());
        assert!(TierKpi::TimeToFirstValue {
            meters: vec![],
            benchmark_days: -1.0
        }
        .validate("k")
        .is_err());
        assert!(TierKpi::default_for(
            Segment::MidMarket,
            &MeterName::parse("t").unwrap(),
            &MeterName::parse("e").unwrap()
        )
        .unwrap()
        .validate("k")
        .is_ok());
    }

    fn arb_accounts() -> impl Strategy<Value = Vec<Onboarded>> {
        prop::collection::vec((0i64..120, prop::option::of(0i64..90), 0usize..3), 0..40).prop_map(
            |rows| {
                rows.into_iter()
                    .enumerate()
                    .map(|(i, (on, reached, _))| {
                        let onboarded = day("2026-01-01") + chrono::Duration::days(on);
                        Onboarded {
                            account: AccountId::parse(&format!("acct-{i}")).unwrap(),
                            name: None,
                            owner: None,
                            onboarded,
                            reached: reached
                                .map(|r| {
                                    ("first".to_owned(), onboarded + chrono::Duration::days(r))
                                })
                                .into_iter()
                                .collect(),
                            scores: Vec::new(),
                        }
                    })
                    .collect()
            },
        )
    }

    proptest! {
        #[test]
        fn a_percentile_is_one_of_the_values_with_enough_of_them_at_or_below_it(
            mut v in prop::collection::vec(-1000i64..1000, 1..200),
            p in 0.01f64..=1.0,
        ) {
            v.sort_unstable();
            let x = percentile(&v, p).unwrap();
            prop_assert!(v.contains(&x));
            let at_or_below = v.iter().filter(|y| **y <= x).count() as f64;
            let below = v.iter().filter(|y| **y < x).count() as f64;
            prop_assert!(at_or_below >= p * v.len() as f64 - 1e-9);
            prop_assert!(below < p * v.len() as f64 + 1e-9);
        }

        #[test]
        fn cohort_figures_do_not_depend_on_account_order_and_add_up(
            accounts in arb_accounts(),
            seed in any::<u64>(),
        ) {
            let today = day("2026-06-01");
            let mss = [ms("first", 14)];
            let mut shuffled = accounts.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            let a = cohorts(&mss, &accounts, today);
            prop_assert_eq!(&a, &cohorts(&mss, &shuffled, today));
            prop_assert_eq!(a.iter().map(|c| c.accounts).sum::<usize>(), accounts.len());
            for c in &a {
                let m = &c.milestones[0];
                prop_assert!(m.reached + m.overdue <= m.accounts);
                prop_assert!(m.on_time <= m.reached);
                prop_assert_eq!(m.median_days.is_some(), m.reached > 0);
                if let (Some(med), Some(p75)) = (m.median_days, m.p75_days) {
                    prop_assert!(med <= p75);
                    prop_assert!(med >= 0);
                }
            }
            let (_, lag_total) = lagging(&mss, &accounts, today, MAX_LAGGING);
            prop_assert_eq!(lag_total, a.iter().map(|c| c.milestones[0].overdue).sum::<usize>());
        }
    }
}
