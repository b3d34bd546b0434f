//! `usage-local backtest --events FILE --accounts FILE --outcomes FILE`: the real
//! scorer replayed at past cut-offs on a tenant's own history. Events are in the
//! import format (JSONL or CSV), profiles JSONL (`account`, `segment`,
//! `onboarding_date`), outcomes CSV `account,churned,churn_date`. The outcomes file
//! defines churn; the scorer never sees it.

use crate::import::{csv_records, jsonl_records, Format};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::definition::Definition;
use domain::health::backtest::{self, Outcome};
use domain::health::config::HealthConfig;
use domain::health::model::{Series, Subject, WINDOW_DAYS};
use domain::ids::{AccountId, MeterName, Segment};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Daily quantities per account and meter.
pub type History = BTreeMap<AccountId, BTreeMap<MeterName, BTreeMap<NaiveDate, f64>>>;

pub struct Inputs {
    pub history: History,
    pub accounts: Vec<(Subject, Outcome)>,
    pub meters: BTreeSet<MeterName>,
    pub last_day: NaiveDate,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads events (import format), profiles and outcomes. Events of accounts without a
/// profile are ignored; profiles without an outcome line count as not churned.
pub fn load(events: &Path, accounts: &Path, outcomes: &Path) -> Result<Inputs> {
    let text = read(events)?;
    let records = match Format::detect(None, &events.to_string_lossy()) {
        Some(Format::Csv) => csv_records(&text)?,
        _ => jsonl_records(&text),
    };
    let mut history: History = BTreeMap::new();
    let mut meters = BTreeSet::new();
    let mut last_day: Option<NaiveDate> = None;
    let mut bad = 0usize;
    for r in records {
        let parsed = r
            .json
            .map_err(|e| anyhow!(e))
            .and_then(|j| Ok(serde_json::from_str::<serde_json::Value>(&j)?));
        let ok = parsed.ok().and_then(|v| {
            let account = AccountId::parse(v.get("account")?.as_str()?).ok()?;
            let meter = MeterName::parse(v.get("meter")?.as_str()?).ok()?;
            let q = match v.get("quantity") {
                None => 1.0,
                Some(q) => q
                    .as_f64()
                    .or_else(|| q.as_str().and_then(|s| s.parse().ok()))?,
            };
            let ts = DateTime::parse_from_rfc3339(v.get("timestamp")?.as_str()?).ok()?;
            Some((account, meter, q, ts.with_timezone(&Utc).date_naive()))
        });
        match ok {
            Some((account, meter, q, day)) if q.is_finite() => {
                meters.insert(meter.clone());
                last_day = Some(last_day.map_or(day, |l| l.max(day)));
                *history
                    .entry(account)
                    .or_default()
                    .entry(meter)
                    .or_default()
                    .entry(day)
                    .or_default() += q;
            }
            _ => bad += 1,
        }
    }
    if bad > 0 {
        tracing::warn!(
            skipped = bad,
            "events without account, meter, quantity or timestamp skipped"
        );
    }
    let last_day = last_day.ok_or_else(|| anyhow!("{}: no usable events", events.display()))?;

    let churn = read_outcomes(outcomes)?;

    let mut subjects = Vec::new();
    for (i, line) in read(accounts)?.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("accounts line {}", i + 1))?;
        let account = v
            .get("account")
            .and_then(|a| a.as_str())
            .and_then(|a| AccountId::parse(a).ok())
            .ok_or_else(|| anyhow!("accounts line {}: no valid 'account'", i + 1))?;
        let segment = v
            .get("segment")
            .and_then(|s| s.as_str())
            .and_then(Segment::parse)
            .unwrap_or(Segment::Smb);
        let onboarding_date = v
            .get("onboarding_date")
            .and_then(|d| d.as_str())
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let seats = v
            .pointer("/crm_properties/seats/value")
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse().ok());
        let outcome = Outcome {
            churn_date: churn.get(&account).copied().flatten(),
        };
        subjects.push((
            Subject {
                account,
                segment,
                onboarding_date,
                seats,
            },
            outcome,
        ));
    }
    Ok(Inputs {
        history,
        accounts: subjects,
        meters,
        last_day,
    })
}

/// Outcomes CSV `account,churned,churn_date`: each account's churn date (`None`:
/// not churned).
pub fn read_outcomes(outcomes: &Path) -> Result<BTreeMap<AccountId, Option<NaiveDate>>> {
    let mut churn: BTreeMap<AccountId, Option<NaiveDate>> = BTreeMap::new();
    let outcomes_text = read(outcomes)?;
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(outcomes_text.as_bytes());
    for (i, row) in rd.records().enumerate() {
        let row = row?;
        let account = AccountId::parse(row.get(0).unwrap_or_default().trim())
            .map_err(|e| anyhow!("outcomes line {}: {e}", i + 2))?;
        let churned = matches!(
            row.get(1).unwrap_or_default().trim(),
            "true" | "1" | "yes" | "TRUE" | "True"
        );
        let date = row.get(2).map(str::trim).filter(|s| !s.is_empty());
        let date = match (churned, date) {
            (true, Some(d)) => Some(
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .with_context(|| format!("outcomes line {}: churn_date", i + 2))?,
            ),
            (true, None) => bail!("outcomes line {}: churned without a churn_date", i + 2),
            (false, _) => None,
        };
        churn.insert(account, date);
    }
    Ok(churn)
}

/// Without a config, every meter in the file is a key feature (as if the registry
/// flagged them), so the registry-driven defaults apply.
pub fn default_config(meters: &BTreeSet<MeterName>, stored: Option<&HealthConfig>) -> HealthConfig {
    let now = Utc::now();
    let registry: Vec<Definition> = meters
        .iter()
        .map(|m| {
            let mut d = Definition::new(m.clone(), now);
            d.key_feature = true;
            d
        })
        .collect();
    HealthConfig::resolve(stored, &registry).config
}

/// Replays the scorer and renders the report (and, with `fit`, the fitted config).
pub fn run(
    inputs: &Inputs,
    cfg: &HealthConfig,
    cutoffs: &[NaiveDate],
    horizon_days: i64,
    fit: Option<&crate::demo::FitOptions>,
) -> Result<String> {
    let cutoffs: Vec<NaiveDate> = if cutoffs.is_empty() {
        (0..6)
            .map(|i| inputs.last_day - Duration::days(horizon_days + 30 * i))
            .collect()
    } else {
        cutoffs.to_vec()
    };
    let started = std::time::Instant::now();
    let empty = BTreeMap::new();
    let series_of = |s: &Subject, d: NaiveDate| {
        let mut series = Series::empty(d);
        let from = d - Duration::days(WINDOW_DAYS as i64);
        for (meter, days) in inputs.history.get(&s.account).unwrap_or(&empty) {
            for (day, q) in days.range(from..d) {
                series.add(meter, *day, *q);
            }
        }
        series
    };
    let preds = backtest::replay(&inputs.accounts, &cutoffs, horizon_days, cfg, series_of);
    let report = backtest::report(&preds);
    let mut out = format!(
        "Backtest: {} accounts, {} cut-offs {} .. {}, churn within {horizon_days} days (as the outcomes file says), {} predictions in {:.1} s\nKey meters: {}\n\n",
        inputs.accounts.len(),
        cutoffs.len(),
        cutoffs.iter().min().map(|d| d.to_string()).unwrap_or_default(),
        cutoffs.iter().max().map(|d| d.to_string()).unwrap_or_default(),
        preds.len(),
        started.elapsed().as_secs_f64(),
        cfg.key_meters.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
    );
    out.push_str(&backtest::render(&report));
    let all: Vec<&backtest::Prediction> = preds.iter().collect();
    out.push_str("\nThe score and the single-metric baselines on the same predictions:\n");
    let mut rows = vec![backtest::ranked(
        "health score",
        &all.iter()
            .map(|p| (100.0 - p.score, p.churned))
            .collect::<Vec<_>>(),
    )];
    rows.extend(backtest::baselines(&all));
    out.push_str(&backtest::render_ranked(&rows));
    let score_risk = |p: &backtest::Prediction| 100.0 - p.score;
    let recency = |p: &backtest::Prediction| {
        f64::from(p.days_since_key_use.unwrap_or(WINDOW_DAYS as u32 + 1))
    };
    let frequency = |p: &backtest::Prediction| -f64::from(p.key_active_days);
    for (name, d) in [
        (
            "recency",
            backtest::paired_auc_difference(&all, score_risk, recency, 200, 1),
        ),
        (
            "frequency",
            backtest::paired_auc_difference(&all, score_risk, frequency, 200, 1),
        ),
    ] {
        if let Some((diff, lo, hi)) = d {
            out.push_str(&format!(
                "  score minus {name:<9}        AUC {diff:+.3} (95 % CI {lo:+.3} to {hi:+.3}; paired bootstrap over accounts, 200 resamples)\n"
            ));
        }
    }
    out.push_str("\nWhat each part of the score ranks on its own:\n");
    out.push_str(&backtest::render_ranked(&backtest::part_aucs(&all)));
    if let Some(fit) = fit {
        out.push_str(&crate::demo::fit_section(&preds, cfg, fit)?);
    }
    Ok(out)
}
