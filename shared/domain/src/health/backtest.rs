//! Backtest: replay scoring at past cut-off dates and compare with known outcomes
//! (churned within the horizon or not). Reports ROC AUC of the score as a churn
//! ranking, precision / recall of the red band, and the median lead time between the
//! first red score and the churn date, per segment; optionally grid-searches the
//! component weights that rank churners best. Pure: the caller supplies each
//! account's series as of a day and its outcome.

use super::config::{HealthConfig, Weights};
use super::model::{self, Band, Component, Metric, Series, Subject, WINDOW_DAYS};
use crate::ids::Segment;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// What really happened to an account (evaluation only; never given to the scorer).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub churn_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub subject: Subject,
    pub cutoff: NaiveDate,
    pub score: f64,
    pub band: Band,
    pub components: BTreeMap<Component, f64>,
    /// Each metric normalised against the segment (0-100, 50 = segment median).
    pub metrics: BTreeMap<Metric, f64>,
    /// Flag points taken off each component before its clamp to 0-100 (so a fit can
    /// re-score exactly with other weights).
    pub penalties: BTreeMap<Component, f64>,
    /// Days since the last key-feature use (`None`: none in the window) and days with
    /// key-feature use: the recency and frequency baselines the score must beat.
    pub days_since_key_use: Option<u32>,
    pub key_active_days: u32,
    /// Churned within the horizon after the cutoff.
    pub churned: bool,
    pub days_to_churn: Option<i64>,
}

/// Scores every account still a customer at each cutoff (accounts that already
/// churned are not customers any more; insufficient-data accounts are skipped).
pub fn replay<F>(
    accounts: &[(Subject, Outcome)],
    cutoffs: &[NaiveDate],
    horizon_days: i64,
    cfg: &HealthConfig,
    series_of: F,
) -> Vec<Prediction>
where
    F: Fn(&Subject, NaiveDate) -> Series,
{
    let mut out = Vec::new();
    for &cutoff in cutoffs {
        let live: Vec<&(Subject, Outcome)> = accounts
            .iter()
            .filter(|(_, o)| o.churn_date.is_none_or(|c| c > cutoff))
            .collect();
        let measured: Vec<(model::Measurement, &Outcome)> = live
            .iter()
            .map(|(s, o)| {
                let series = series_of(s, cutoff);
                (model::measure(s, &series, cutoff, cfg, &BTreeMap::new()), o)
            })
            .collect();
        let baselines = model::baselines(measured.iter().map(|(m, _)| m), cfg);
        for ((m, o), (s, _)) in measured.iter().zip(live.iter()) {
            let Some(b) = baselines.get(&m.segment) else {
                continue;
            };
            let Some(sc) = model::score(m, b, cfg) else {
                continue;
            };
            let days_to_churn = o.churn_date.map(|c| (c - cutoff).num_days());
            out.push(Prediction {
                subject: s.clone(),
                cutoff,
                score: sc.score,
                band: sc.band,
                components: sc.components.iter().map(|(c, v)| (*c, v.score)).collect(),
                metrics: sc
                    .components
                    .values()
                    .flat_map(|c| c.metrics.iter().map(|(k, v)| (*k, v.normalised)))
                    .collect(),
                penalties: sc.components.iter().map(|(c, v)| (*c, v.penalty)).collect(),
                days_since_key_use: m.signals.days_since_key_use,
                key_active_days: m.signals.key_active_days,
                churned: days_to_churn.is_some_and(|d| d > 0 && d <= horizon_days),
                days_to_churn,
            });
        }
    }
    out
}

/// Area under the ROC curve of `risk` (higher = more likely positive); 0.5 is
/// chance. Ties count half (Mann-Whitney U). `None` without both classes.
pub fn roc_auc(points: &[(f64, bool)]) -> Option<f64> {
    let pos = points.iter().filter(|p| p.1).count();
    let neg = points.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = points.to_vec();
    sorted.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += avg_rank * sorted[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub predictions: usize,
    pub churners: usize,
    pub auc: Option<f64>,
    pub red_precision: Option<f64>,
    pub red_recall: Option<f64>,
    /// Median days from the first red score of a churner to its churn.
    pub median_lead_days: Option<f64>,
}

pub fn metrics(preds: &[&Prediction]) -> Metrics {
    let points: Vec<(f64, bool)> = preds.iter().map(|p| (100.0 - p.score, p.churned)).collect();
    let churners = preds.iter().filter(|p| p.churned).count();
    let red = preds.iter().filter(|p| p.band == Band::Red).count();
    let red_churned = preds
        .iter()
        .filter(|p| p.band == Band::Red && p.churned)
        .count();
    // Lead time per churning account: its earliest red cutoff before the churn.
    let mut first_red: BTreeMap<&str, i64> = BTreeMap::new();
    for p in preds.iter().filter(|p| p.churned && p.band == Band::Red) {
        if let Some(d) = p.days_to_churn {
            let e = first_red.entry(p.subject.account.as_str()).or_insert(d);
            *e = (*e).max(d);
        }
    }
    let mut leads: Vec<f64> = first_red.values().map(|d| *d as f64).collect();
    Metrics {
        predictions: preds.len(),
        churners,
        auc: roc_auc(&points),
        red_precision: (red > 0).then(|| red_churned as f64 / red as f64),
        red_recall: (churners > 0).then(|| red_churned as f64 / churners as f64),
        median_lead_days: model::median(&mut leads),
    }
}

/// Metrics for all accounts (`None`) and per segment.
pub fn report(preds: &[Prediction]) -> BTreeMap<Option<Segment>, Metrics> {
    let mut out = BTreeMap::new();
    out.insert(None, metrics(&preds.iter().collect::<Vec<_>>()));
    for seg in Segment::ALL {
        let p: Vec<&Prediction> = preds.iter().filter(|p| p.subject.segment == seg).collect();
        if !p.is_empty() {
            out.insert(Some(seg), metrics(&p));
        }
    }
    out
}

fn opt(v: Option<f64>, pct: bool) -> String {
    match v {
        None => "-".into(),
        Some(x) if pct => format!("{:.0} %", x * 100.0),
        Some(x) => format!("{x:.3}"),
    }
}

/// 95 % confidence interval of an AUC (Hanley & McNeil 1982 standard error).
pub fn auc_ci(auc: f64, positives: usize, negatives: usize) -> Option<(f64, f64)> {
    if positives == 0 || negatives == 0 {
        return None;
    }
    let (np, nn) = (positives as f64, negatives as f64);
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    let var = (auc * (1.0 - auc) + (np - 1.0) * (q1 - auc * auc) + (nn - 1.0) * (q2 - auc * auc))
        / (np * nn);
    let se = var.max(0.0).sqrt();
    Some(((auc - 1.96 * se).max(0.0), (auc + 1.96 * se).min(1.0)))
}

pub fn render(report: &BTreeMap<Option<Segment>, Metrics>) -> String {
    let mut s = format!(
        "{:<12} {:>11} {:>9} {:>7} {:>13} {:>13} {:>10} {:>16}\n",
        "segment",
        "predictions",
        "churners",
        "AUC",
        "AUC 95 % CI",
        "red precision",
        "red recall",
        "median lead (d)"
    );
    for (seg, m) in report {
        let ci = m
            .auc
            .and_then(|a| auc_ci(a, m.churners, m.predictions.saturating_sub(m.churners)))
            .map_or("-".to_owned(), |(lo, hi)| format!("{lo:.3}-{hi:.3}"));
        s.push_str(&format!(
            "{:<12} {:>11} {:>9} {:>7} {:>13} {:>13} {:>10} {:>16}\n",
            seg.map_or("all", |s| s.as_str()),
            m.predictions,
            m.churners,
            opt(m.auc, false),
            ci,
            opt(m.red_precision, true),
            opt(m.red_recall, true),
            m.median_lead_days.map_or("-".into(), |d| format!("{d:.0}")),
        ));
    }
    s
}

/// AUC of one ranking with its 95 % interval and how many predictions it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub name: String,
    pub auc: Option<f64>,
    pub ci: Option<(f64, f64)>,
    pub predictions: usize,
}

/// AUC and interval of `risk` over `(risk, churned)` points.
pub fn ranked(name: &str, points: &[(f64, bool)]) -> Ranked {
    let pos = points.iter().filter(|p| p.1).count();
    let auc = roc_auc(points);
    Ranked {
        name: name.to_owned(),
        auc,
        ci: auc.and_then(|a| auc_ci(a, pos, points.len() - pos)),
        predictions: points.len(),
    }
}

/// The single-metric baselines the score has to beat, on the same predictions:
/// recency (days since the last key-feature use; none in the window ranks last) and
/// frequency (days with key-feature use).
pub fn baselines(preds: &[&Prediction]) -> [Ranked; 2] {
    let recency: Vec<(f64, bool)> = preds
        .iter()
        .map(|p| {
            let d = p.days_since_key_use.unwrap_or(WINDOW_DAYS as u32 + 1);
            (f64::from(d), p.churned)
        })
        .collect();
    let frequency: Vec<(f64, bool)> = preds
        .iter()
        .map(|p| (-f64::from(p.key_active_days), p.churned))
        .collect();
    [
        ranked("recency alone", &recency),
        ranked("frequency alone", &frequency),
    ]
}

/// How well each component and each metric (normalised against the segment) ranks
/// churners on the predictions that have it: which parts of the score carry signal.
pub fn part_aucs(preds: &[&Prediction]) -> Vec<Ranked> {
    let mut out = Vec::new();
    for c in Component::ALL {
        let pts: Vec<(f64, bool)> = preds
            .iter()
            .filter_map(|p| p.components.get(&c).map(|v| (100.0 - v, p.churned)))
            .collect();
        if !pts.is_empty() {
            out.push(ranked(&format!("component {c:?}"), &pts));
        }
    }
    for m in Metric::ALL {
        let pts: Vec<(f64, bool)> = preds
            .iter()
            .filter_map(|p| p.metrics.get(&m).map(|v| (100.0 - v, p.churned)))
            .collect();
        if !pts.is_empty() {
            out.push(ranked(&format!("metric {m:?}"), &pts));
        }
    }
    out
}

/// The difference `AUC(a) − AUC(b)` of two rankings of the same predictions, with a
/// 95 % interval from a bootstrap over accounts (`reps` resamples of the accounts with
/// replacement, each bringing all its predictions; a fixed-seed generator, so the
/// figures repeat). `None` without both classes.
pub fn paired_auc_difference(
    preds: &[&Prediction],
    a: impl Fn(&Prediction) -> f64,
    b: impl Fn(&Prediction) -> f64,
    reps: usize,
    seed: u64,
) -> Option<(f64, f64, f64)> {
    let pa: Vec<(f64, bool)> = preds.iter().map(|p| (a(p), p.churned)).collect();
    let pb: Vec<(f64, bool)> = preds.iter().map(|p| (b(p), p.churned)).collect();
    let diff = roc_auc(&pa)? - roc_auc(&pb)?;
    let mut by_account: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in preds.iter().enumerate() {
        by_account
            .entry(p.subject.account.as_str())
            .or_default()
            .push(i);
    }
    let groups: Vec<&Vec<usize>> = by_account.values().collect();
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut diffs = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (mut ra, mut rb) = (Vec::with_capacity(pa.len()), Vec::with_capacity(pb.len()));
        for _ in 0..groups.len() {
            let g = groups[(next() % groups.len() as u64) as usize];
            ra.extend(g.iter().map(|i| pa[*i]));
            rb.extend(g.iter().map(|i| pb[*i]));
        }
        if let (Some(x), Some(y)) = (roc_auc(&ra), roc_auc(&rb)) {
            diffs.push(x - y);
        }
    }
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| {
        diffs
            .get(((diffs.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    Some((diff, at(0.025)?, at(0.975)?))
}

pub fn render_ranked(rows: &[Ranked]) -> String {
    let mut s = String::new();
    for r in rows {
        s.push_str(&format!(
            "  {:<28} AUC {} ({}; {} predictions)\n",
            r.name,
            opt(r.auc, false),
            r.ci.map_or("-".to_owned(), |(lo, hi)| format!(
                "95 % CI {lo:.3}-{hi:.3}"
            )),
            r.predictions
        ));
    }
    s
}

/// Grid search (steps of 5 points, each weight at least 5) for the component
/// weights whose weighted component score ranks churners best (highest AUC).
pub fn fit_weights(preds: &[Prediction]) -> Option<(Weights, f64)> {
    let mut best: Option<(Weights, f64)> = None;
    for u in (5..=85).step_by(5) {
        for m in (5..=85 - u).step_by(5) {
            for f in (5..=90usize.saturating_sub(u + m)).step_by(5) {
                let e = 100 - u - m - f;
                if e < 5 {
                    continue;
                }
                let w = Weights {
                    usage_trend: u as f64,
                    milestones: m as f64,
                    friction: f as f64,
                    engagement: e as f64,
                };
                let points: Vec<(f64, bool)> = preds
                    .iter()
                    .map(|p| {
                        let mut total = 0.0;
                        let mut wsum = 0.0;
                        for (c, wv) in [
                            (Component::UsageTrend, w.usage_trend),
                            (Component::Milestones, w.milestones),
                            (Component::Friction, w.friction),
                            (Component::Engagement, w.engagement),
                        ] {
                            if let Some(v) = p.components.get(&c) {
                                total += wv * v;
                                wsum += wv;
                            }
                        }
                        (100.0 - total / wsum.max(1.0), p.churned)
                    })
                    .collect();
                if let Some(auc) = roc_auc(&points) {
                    if best.is_none_or(|(_, b)| auc > b) {
                        best = Some((w, auc));
                    }
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::synth::{Synth, SynthConfig};
    use chrono::Duration;

    #[test]
    fn the_auc_interval_contains_the_auc_and_narrows_with_more_accounts() {
        let (lo, hi) = auc_ci(0.8, 20, 200).unwrap();
        assert!(lo < 0.8 && 0.8 < hi, "{lo} {hi}");
        let (lo2, hi2) = auc_ci(0.8, 200, 2000).unwrap();
        assert!(hi2 - lo2 < (hi - lo) / 2.0, "{lo2} {hi2} vs {lo} {hi}");
        assert_eq!(auc_ci(0.8, 0, 10), None);
    }

    #[test]
    fn auc_is_one_for_a_perfect_ranking_half_for_ties_and_zero_reversed() {
        let perfect = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
        assert_eq!(roc_auc(&perfect), Some(1.0));
        let reversed: Vec<(f64, bool)> = perfect.iter().map(|(r, y)| (-r, *y)).collect();
        assert_eq!(roc_auc(&reversed), Some(0.0));
        assert_eq!(roc_auc(&[(0.5, true), (0.5, false)]), Some(0.5));
        assert_eq!(roc_auc(&[(0.5, true)]), None);
    }

    #[test]
    fn the_backtest_on_generated_data_ranks_decaying_churners_well_above_chance() {
        let end = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let synth = Synth::new(SynthConfig {
            accounts: 400,
            seed: 42,
            start: end - Duration::days(365),
            end,
            churn_rate: 0.25,
        });
        let accounts = synth.outcomes();
        let by_id = synth.by_id();
        let cutoffs: Vec<NaiveDate> = (1..=4).map(|i| end - Duration::days(60 * i)).collect();
        let preds = replay(&accounts, &cutoffs, 60, &HealthConfig::default(), |s, d| {
            synth.series(by_id[&s.account], d)
        });
        let r = report(&preds);
        let all = &r[&None];
        assert!(all.churners >= 20, "{all:?}");
        let auc = all.auc.unwrap();
        assert!(auc > 0.65, "AUC {auc}\n{}", render(&r));
        assert!(all.red_recall.unwrap() > 0.4, "{}", render(&r));
        assert!(all.median_lead_days.unwrap() > 7.0, "{}", render(&r));
        let (w, fitted) = fit_weights(&preds).unwrap();
        assert!(fitted >= auc - 0.02, "{w:?} {fitted} vs {auc}");
    }
}
