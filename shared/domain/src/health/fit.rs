//! Fitting the score to a tenant's outcomes: component weights, the frequency
//! metric's weight within engagement and the band thresholds, per segment and
//! overall, judged by k-fold cross-validation with folds by account (an account's
//! predictions at every cut-off fall in one fold, so nothing about it is learnt
//! from itself). Pure: works on [`Prediction`]s, which carry each metric's
//! normalised value and each component's flag points, so re-scoring with other
//! weights is exactly what [`super::model::score`] computes.

use super::backtest::Prediction;
use super::config::{Bands, HealthConfig, Weights};
use super::model::{Band, Component, Metric};
use crate::ids::Segment;
use std::collections::BTreeMap;

/// What a fit chooses for one segment (or for all).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub weights: Weights,
    /// Weight of `key_active_days` (frequency) within engagement; the other
    /// metrics keep the config's weights.
    pub frequency_weight: f64,
    pub bands: Bands,
}

/// Fewer churners (or stayers) than this in a segment's training data: the segment
/// takes the overall fit.
pub const MIN_CLASS_FOR_SEGMENT_FIT: usize = 30;

fn component_weight(w: &Weights, c: Component) -> f64 {
    match c {
        Component::UsageTrend => w.usage_trend,
        Component::Milestones => w.milestones,
        Component::Friction => w.friction,
        Component::Engagement => w.engagement,
    }
}

/// The score `p` would have had with `weights` and `frequency_weight` (the config's
/// other metric weights unchanged), before rounding; `None` if no weighted
/// component is present.
pub fn rescore(
    p: &Prediction,
    cfg: &HealthConfig,
    weights: &Weights,
    frequency_weight: f64,
) -> Option<f64> {
    let seg = cfg.segment(p.subject.segment);
    let mut total = 0.0;
    let mut total_w = 0.0;
    for c in Component::ALL {
        let metrics: Vec<(Metric, f64)> = p
            .metrics
            .iter()
            .filter(|(m, _)| m.component() == c)
            .map(|(m, v)| (*m, *v))
            .collect();
        if metrics.is_empty() {
            continue;
        }
        let mw = |m: Metric| {
            if m == Metric::KeyActiveDays {
                frequency_weight
            } else {
                seg.metric_weight(m)
            }
        };
        let mut wsum: f64 = metrics.iter().map(|(m, _)| mw(*m)).sum();
        let equal = wsum <= 0.0;
        if equal {
            wsum = metrics.len() as f64;
        }
        let base = metrics
            .iter()
            .map(|(m, v)| if equal { 1.0 } else { mw(*m) } * v)
            .sum::<f64>()
            / wsum;
        let pen = p.penalties.get(&c).copied().unwrap_or(0.0);
        let cw = component_weight(weights, c);
        total += cw * (base - pen).clamp(0.0, 100.0);
        total_w += cw;
    }
    (total_w > 0.0).then(|| (total / total_w).clamp(0.0, 100.0))
}

/// A prediction reduced to what re-scoring needs: per component, the weighted sum
/// and weight of its metrics other than frequency, the frequency value, the flag
/// points; so a grid of thousands of weightings stays fast.
/// Per component: weighted sum and weight of the other metrics, frequency, flag points.
type Part = (f64, f64, Option<f64>, f64);

struct Compact {
    parts: [Option<Part>; 4],
    churned: bool,
}

impl Compact {
    fn of(p: &Prediction, cfg: &HealthConfig) -> Self {
        let seg = cfg.segment(p.subject.segment);
        let mut parts = [None; 4];
        for (i, c) in Component::ALL.into_iter().enumerate() {
            let mut any = false;
            let (mut sum, mut w, mut freq) = (0.0, 0.0, None);
            for (m, v) in p.metrics.iter().filter(|(m, _)| m.component() == c) {
                any = true;
                if *m == Metric::KeyActiveDays {
                    freq = Some(*v);
                } else {
                    sum += seg.metric_weight(*m) * v;
                    w += seg.metric_weight(*m);
                }
            }
            if any {
                parts[i] = Some((sum, w, freq, p.penalties.get(&c).copied().unwrap_or(0.0)));
            }
        }
        Self {
            parts,
            churned: p.churned,
        }
    }

    /// Same as [`rescore`] whenever the metric weights are not all zero.
    fn score(&self, weights: &Weights, fw: f64) -> Option<f64> {
        let (mut total, mut total_w) = (0.0, 0.0);
        for (i, c) in Component::ALL.into_iter().enumerate() {
            let Some((sum, w, freq, pen)) = self.parts[i] else {
                continue;
            };
            let (sum, w) = match freq {
                Some(f) => (sum + fw * f, w + fw),
                None => (sum, w),
            };
            if w <= 0.0 {
                continue;
            }
            let cw = component_weight(weights, c);
            total += cw * (sum / w - pen).clamp(0.0, 100.0);
            total_w += cw;
        }
        (total_w > 0.0).then(|| (total / total_w).clamp(0.0, 100.0))
    }
}

fn auc_of(preds: &[Compact], w: &Weights, fw: f64) -> Option<f64> {
    let points: Vec<(f64, bool)> = preds
        .iter()
        .map(|p| (100.0 - p.score(w, fw).unwrap_or(50.0), p.churned))
        .collect();
    super::backtest::roc_auc(&points)
}

const FREQUENCY_WEIGHTS: [f64; 3] = [1.0, 2.0, 3.0];

/// Weights with the best AUC on `preds`: a grid in steps of 10 (each weight at least
/// 5), refined by steps of 5 around the best, for each frequency weight.
fn fit_weights(preds: &[&Prediction], cfg: &HealthConfig) -> Option<(Weights, f64, f64)> {
    let preds: Vec<Compact> = preds.iter().map(|p| Compact::of(p, cfg)).collect();
    let preds = preds.as_slice();
    let mut best: Option<(Weights, f64, f64)> = None;
    let consider = |w: Weights, fw: f64, best: &mut Option<(Weights, f64, f64)>| {
        if let Some(auc) = auc_of(preds, &w, fw) {
            if best.is_none_or(|(_, _, b)| auc > b + 1e-12) {
                *best = Some((w, fw, auc));
            }
        }
    };
    let w = |u: i32, m: i32, f: i32, e: i32| Weights {
        usage_trend: f64::from(u),
        milestones: f64::from(m),
        friction: f64::from(f),
        engagement: f64::from(e),
    };
    for fw in FREQUENCY_WEIGHTS {
        for u in (5..=75).step_by(10) {
            for m in (5..=85 - u).step_by(10) {
                for f in (5..=95 - u - m).step_by(10) {
                    let e = 100 - u - m - f;
                    if e >= 5 {
                        consider(w(u, m, f, e), fw, &mut best);
                    }
                }
            }
        }
    }
    let (coarse, fw, _) = best?;
    let c = [
        coarse.usage_trend as i32,
        coarse.milestones as i32,
        coarse.friction as i32,
    ];
    for du in [-5, 0, 5] {
        for dm in [-5, 0, 5] {
            for df in [-5, 0, 5] {
                let (u, m, f) = (c[0] + du, c[1] + dm, c[2] + df);
                let e = 100 - u - m - f;
                if u >= 5 && m >= 5 && f >= 5 && e >= 5 {
                    consider(w(u, m, f, e), fw, &mut best);
                }
            }
        }
    }
    best
}

fn r1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Band lines from scored training points: red below the line that maximises the F1
/// score of "red" as a churn prediction (lines at the 1st..60th percentiles); green
/// from the higher of the median score of the accounts that stayed and the lowest
/// score above which the churn rate is at most half the overall rate (among at least
/// 5 % of the points; else the 75th percentile).
fn fit_bands(points: &[(f64, bool)]) -> Bands {
    let mut sorted: Vec<f64> = points.iter().map(|p| p.0).collect();
    sorted.sort_by(f64::total_cmp);
    let churners = points.iter().filter(|p| p.1).count();
    let mut best = (Bands::default().yellow_min, -1.0);
    for pct in 1..=60 {
        let Some(&at) = sorted.get(sorted.len() * pct / 100) else {
            continue;
        };
        let line = r1(r1(at) + 0.1);
        let red = points.iter().filter(|p| p.0 < line).count();
        let hit = points.iter().filter(|p| p.0 < line && p.1).count();
        if red == 0 || churners == 0 {
            continue;
        }
        let (prec, rec) = (hit as f64 / red as f64, hit as f64 / churners as f64);
        let f1 = if prec + rec > 0.0 {
            2.0 * prec * rec / (prec + rec)
        } else {
            0.0
        };
        if f1 > best.1 {
            best = (line, f1);
        }
    }
    let yellow_min = best.0.clamp(0.1, 99.8);
    let base_rate = churners as f64 / points.len().max(1) as f64;
    let mut desc: Vec<(f64, bool)> = points.to_vec();
    desc.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut n, mut hit, mut green) = (0usize, 0usize, None);
    for (i, (score, churned)) in desc.iter().enumerate() {
        n += 1;
        hit += usize::from(*churned);
        let last_of_tie = desc.get(i + 1).is_none_or(|next| next.0 < *score);
        if last_of_tie && n * 20 >= points.len() && (hit as f64 / n as f64) <= base_rate / 2.0 {
            green = Some(*score);
        }
    }
    let green = green.unwrap_or_else(|| {
        sorted
            .get(sorted.len() * 3 / 4)
            .copied()
            .unwrap_or(Bands::default().green_min)
    });
    let mut stayed: Vec<f64> = points.iter().filter(|p| !p.1).map(|p| p.0).collect();
    let green = super::model::median(&mut stayed).map_or(green, |m| green.max(m));
    Bands {
        yellow_min,
        green_min: r1(green).max(r1(yellow_min + 0.1)).min(100.0),
    }
}

fn fit_params(preds: &[&Prediction], cfg: &HealthConfig) -> Option<Params> {
    let (weights, frequency_weight, _) = fit_weights(preds, cfg)?;
    let points: Vec<(f64, bool)> = preds
        .iter()
        .filter_map(|p| rescore(p, cfg, &weights, frequency_weight).map(|s| (r1(s), p.churned)))
        .collect();
    Some(Params {
        weights,
        frequency_weight,
        bands: fit_bands(&points),
    })
}

/// Params for all accounts (`None`) and for each segment with enough of both
/// classes in `preds`.
pub fn fit(preds: &[&Prediction], cfg: &HealthConfig) -> BTreeMap<Option<Segment>, Params> {
    let mut out = BTreeMap::new();
    if let Some(p) = fit_params(preds, cfg) {
        out.insert(None, p);
    }
    for seg in Segment::ALL {
        let part: Vec<&Prediction> = preds
            .iter()
            .copied()
            .filter(|p| p.subject.segment == seg)
            .collect();
        if part.len() == preds.len() {
            // The only segment: its fit is the overall one.
            if let Some(p) = out.get(&None).copied() {
                out.insert(Some(seg), p);
            }
            continue;
        }
        let churners = part.iter().filter(|p| p.churned).count();
        if churners >= MIN_CLASS_FOR_SEGMENT_FIT
            && part.len() - churners >= MIN_CLASS_FOR_SEGMENT_FIT
        {
            if let Some(p) = fit_params(&part, cfg) {
                out.insert(Some(seg), p);
            }
        }
    }
    out
}

/// `p` as the fitted params would have scored and banded it (its segment's, else
/// the overall ones); unchanged if there are none.
pub fn apply(
    p: &Prediction,
    cfg: &HealthConfig,
    fitted: &BTreeMap<Option<Segment>, Params>,
) -> Prediction {
    let mut out = p.clone();
    let Some(params) = fitted
        .get(&Some(p.subject.segment))
        .or_else(|| fitted.get(&None))
    else {
        return out;
    };
    if let Some(s) = rescore(p, cfg, &params.weights, params.frequency_weight) {
        out.score = r1(s);
        out.band = Band::of(out.score, &params.bands);
    }
    out
}

/// The fold of an account: FNV-1a of its id and the seed, modulo `folds`.
pub fn fold_of(account: &str, seed: u64, folds: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in account.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % folds.max(1) as u64) as usize
}

#[derive(Debug, Clone)]
pub struct CrossValidated {
    pub folds: usize,
    pub seed: u64,
    /// Every prediction scored and banded by the params fitted on the other folds.
    pub held_out: Vec<Prediction>,
    /// Every prediction scored and banded by the params fitted on all of them.
    pub in_sample: Vec<Prediction>,
    /// Fitted on all predictions: what to `PUT`.
    pub fitted: BTreeMap<Option<Segment>, Params>,
}

/// K-fold cross-validation by account; `None` without both churners and stayers.
pub fn cross_validate(
    preds: &[Prediction],
    cfg: &HealthConfig,
    folds: usize,
    seed: u64,
) -> Option<CrossValidated> {
    let folds = folds.max(2);
    let all: Vec<&Prediction> = preds.iter().collect();
    let fitted = fit(&all, cfg);
    fitted.get(&None)?;
    let fold: Vec<usize> = preds
        .iter()
        .map(|p| fold_of(p.subject.account.as_str(), seed, folds))
        .collect();
    let mut held_out: Vec<Option<Prediction>> = vec![None; preds.len()];
    for k in 0..folds {
        let train: Vec<&Prediction> = preds
            .iter()
            .zip(&fold)
            .filter(|(_, f)| **f != k)
            .map(|(p, _)| p)
            .collect();
        let params = fit(&train, cfg);
        for (i, p) in preds.iter().enumerate() {
            if fold[i] == k {
                held_out[i] = Some(apply(p, cfg, &params));
            }
        }
    }
    Some(CrossValidated {
        folds,
        seed,
        held_out: held_out.into_iter().flatten().collect(),
        in_sample: preds.iter().map(|p| apply(p, cfg, &fitted)).collect(),
        fitted,
    })
}

/// `stored` (the tenant's config, or nothing) with the fitted weights, frequency
/// weight and fixed bands in every scored segment (a segment without its own fit
/// takes the overall one): the `PUT /v1/health/config` body.
pub fn fitted_config(
    stored: Option<&HealthConfig>,
    fitted: &BTreeMap<Option<Segment>, Params>,
) -> HealthConfig {
    let mut cfg = stored.cloned().unwrap_or_else(HealthConfig::unset);
    for seg in Segment::ALL {
        if seg == Segment::Unassigned {
            continue;
        }
        let Some(p) = fitted.get(&Some(seg)).or_else(|| fitted.get(&None)) else {
            continue;
        };
        let sc = cfg.segments.entry(seg).or_default();
        sc.weights = p.weights;
        sc.bands = Some(p.bands);
        sc.metric_weights
            .insert(Metric::KeyActiveDays, p.frequency_weight);
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::backtest::{replay, report};
    use crate::health::synth::{Synth, SynthConfig};
    use chrono::{Duration, NaiveDate};

    fn generated(accounts: usize) -> (Vec<Prediction>, HealthConfig) {
        let end = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let synth = Synth::new(SynthConfig {
            accounts,
            seed: 42,
            start: end - Duration::days(365),
            end,
            churn_rate: 0.25,
        });
        let by_id = synth.by_id();
        let accounts = synth.outcomes();
        let cutoffs: Vec<NaiveDate> = (1..=4).map(|i| end - Duration::days(60 * i)).collect();
        let cfg = HealthConfig::default();
        let preds = replay(&accounts, &cutoffs, 60, &cfg, |s, d| {
            synth.series(by_id[&s.account], d)
        });
        (preds, cfg)
    }

    #[test]
    fn re_scoring_with_the_weights_it_was_scored_with_gives_back_each_score() {
        let (preds, cfg) = generated(150);
        assert!(preds.len() > 100);
        for p in &preds {
            let seg = cfg.segment(p.subject.segment);
            let fw = seg.metric_weight(Metric::KeyActiveDays);
            let again = rescore(p, &cfg, &seg.weights, fw).unwrap();
            assert!((again - p.score).abs() <= 0.06, "{again} vs {}", p.score);
            let fast = Compact::of(p, &cfg).score(&seg.weights, fw).unwrap();
            assert!((fast - again).abs() < 1e-9, "{fast} vs {again}");
        }
    }

    #[test]
    fn folds_keep_every_prediction_of_an_account_together_and_do_not_change_between_runs() {
        let (preds, _) = generated(150);
        let mut fold_of_account: BTreeMap<&str, usize> = BTreeMap::new();
        let mut sizes = [0usize; 5];
        for p in &preds {
            let f = fold_of(p.subject.account.as_str(), 7, 5);
            assert_eq!(f, fold_of(p.subject.account.as_str(), 7, 5));
            assert_eq!(
                *fold_of_account
                    .entry(p.subject.account.as_str())
                    .or_insert(f),
                f
            );
            sizes[f] += 1;
        }
        assert!(sizes.iter().all(|s| *s * 10 > preds.len()), "{sizes:?}");
    }

    #[test]
    fn the_fitted_config_round_trips_through_the_config_parser_with_its_weights_and_bands() {
        let (preds, cfg) = generated(300);
        let cv = cross_validate(&preds, &cfg, 3, 42).expect("churners and stayers");
        assert_eq!(cv.held_out.len(), preds.len());
        let held = report(&cv.held_out)[&None].auc.unwrap();
        let inside = report(&cv.in_sample)[&None].auc.unwrap();
        assert!(held > 0.7, "held-out AUC {held}");
        assert!(
            inside >= held - 0.02,
            "in-sample {inside} vs held-out {held}"
        );
        let stored = HealthConfig {
            min_active_days: 3,
            ..HealthConfig::unset()
        };
        let body = serde_json::to_vec(&fitted_config(Some(&stored), &cv.fitted)).unwrap();
        let parsed = HealthConfig::from_body(&body).expect("a valid PUT body");
        assert_eq!(parsed, fitted_config(Some(&stored), &cv.fitted));
        assert_eq!(parsed.min_active_days, 3);
        let all = cv.fitted[&None];
        for seg in [Segment::Smb, Segment::Strategic] {
            let fitted = cv.fitted.get(&Some(seg)).unwrap_or(&all);
            let sc = parsed.segment(seg);
            assert_eq!(sc.weights, fitted.weights);
            assert_eq!(sc.bands, Some(fitted.bands));
            assert_eq!(
                sc.metric_weight(Metric::KeyActiveDays),
                fitted.frequency_weight
            );
        }
        let resolved = HealthConfig::resolve(Some(&parsed), &[]);
        assert_eq!(
            resolved.sources["segments.smb.bands"],
            crate::health::config::SettingSource::TenantConfig
        );
    }
}
