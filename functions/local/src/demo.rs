//! Synthetic data for the demo (`usage-local demo`) and the backtest
//! (`usage-local backtest`, `make backtest`), from [`domain::health::synth`].

use crate::stack::Stack;
use anyhow::{Context, Result};
use chrono::{Duration, Utc};
use domain::health::backtest;
use domain::health::config::{HealthConfig, SegmentConfig};
use domain::health::store::HealthStore;
use domain::health::synth::{Synth, SynthConfig, METERS};
use domain::ids::TenantId;
use std::collections::BTreeMap;

/// Runs the backtest on `accounts` generated accounts and renders the report.
pub fn backtest(
    accounts: usize,
    seed: u64,
    cutoffs: usize,
    horizon_days: i64,
    fit: Option<&FitOptions>,
    cfg: &HealthConfig,
) -> Result<String> {
    let end = Utc::now().date_naive();
    let span = 180 + 30 * cutoffs as i64 + horizon_days;
    let synth = Synth::new(SynthConfig {
        accounts,
        seed,
        start: end - Duration::days(span),
        end,
        churn_rate: 0.25,
    });
    let by_id = synth.by_id();
    let outcomes = synth.outcomes();
    let dates: Vec<_> = (0..cutoffs.max(1))
        .map(|i| end - Duration::days(horizon_days + 30 * i as i64))
        .collect();
    let started = std::time::Instant::now();
    let preds = backtest::replay(&outcomes, &dates, horizon_days, cfg, |s, d| {
        by_id
            .get(&s.account)
            .map(|a| synth.series(a, d))
            .unwrap_or_else(|| domain::health::model::Series::empty(d))
    });
    let report = backtest::report(&preds);
    let mut out = format!(
        "Backtest: {accounts} generated accounts (seed {seed}), {} cut-offs {} .. {}, churn within {horizon_days} days, {} predictions in {:.1} s\n\n",
        dates.len(),
        dates.last().map(|d| d.to_string()).unwrap_or_default(),
        dates.first().map(|d| d.to_string()).unwrap_or_default(),
        preds.len(),
        started.elapsed().as_secs_f64()
    );
    out.push_str(&backtest::render(&report));
    if let Some(fit) = fit {
        out.push_str(&fit_section(&preds, cfg, fit)?);
    }
    Ok(out)
}

/// How `--fit` runs: folds of the cross-validation (by account, seeded), the
/// tenant's stored config the fitted values go into, and where to write it.
#[derive(Debug, Clone, Default)]
pub struct FitOptions {
    pub folds: usize,
    pub seed: u64,
    pub stored: Option<HealthConfig>,
    pub write_to: Option<std::path::PathBuf>,
}

/// Weights and bands fitted by k-fold cross-validation: the held-out figures (each
/// account scored by what was fitted without it) next to the in-sample ones, and the
/// `PUT /v1/health/config` body fitted on everything (written to `write_to`).
pub fn fit_section(
    preds: &[backtest::Prediction],
    cfg: &HealthConfig,
    opts: &FitOptions,
) -> Result<String> {
    use domain::health::fit;
    let started = std::time::Instant::now();
    let Some(cv) = fit::cross_validate(preds, cfg, opts.folds, opts.seed) else {
        return Ok("\nNo churners (or no stayers) in the window: nothing to fit.\n".to_owned());
    };
    let body = fit::fitted_config(opts.stored.as_ref(), &cv.fitted);
    body.validate()
        .map_err(|e| anyhow::anyhow!("fitted config rejected: {}", e.message))?;
    let json = serde_json::to_string_pretty(&body)?;
    let mut out = format!(
        "\nFit: weights, frequency weight and bands per segment, {}-fold cross-validation by account (seed {}), {:.1} s\n\nHeld out (each account scored by the fit made without it):\n",
        cv.folds,
        cv.seed,
        started.elapsed().as_secs_f64()
    );
    out.push_str(&backtest::render(&backtest::report(&cv.held_out)));
    out.push_str("\nIn sample (fitted and measured on the same accounts; optimistic):\n");
    out.push_str(&backtest::render(&backtest::report(&cv.in_sample)));
    out.push_str("\nFitted on all accounts:\n");
    for (seg, p) in &cv.fitted {
        out.push_str(&format!(
            "  {:<11} weights usage {} / milestones {} / friction {} / engagement {}, frequency x{}, red below {}, green from {}\n",
            seg.map_or("all", |s| s.as_str()),
            p.weights.usage_trend,
            p.weights.milestones,
            p.weights.friction,
            p.weights.engagement,
            p.frequency_weight,
            p.bands.yellow_min,
            p.bands.green_min
        ));
    }
    match &opts.write_to {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
            out.push_str(&format!(
                "\nWrote the config to {} (PUT /v1/health/config with it as the body).\n",
                path.display()
            ));
        }
        None => out.push_str(&format!("\nPUT /v1/health/config\n{json}\n")),
    }
    Ok(out)
}

/// Days before `today` the demo's recent onboarding cohort started.
pub const RECENT_COHORT_DAYS: i64 = 45;

/// The demo tenant: established accounts (onboarded 200 days before `today`, past
/// their ramp-up), every fourth one decaying for the last 45 days, and in each segment
/// with two or more steady accounts one recent account (onboarded 45 days ago); and its
/// config (small-segment friendly, one milestone per segment).
pub fn demo_data(accounts: usize, today: chrono::NaiveDate) -> (Synth, HealthConfig) {
    let mut synth = Synth::new(SynthConfig {
        accounts,
        seed: 7,
        start: today - Duration::days(200),
        end: today,
        churn_rate: 0.0,
    });
    for (i, a) in synth.accounts.iter_mut().enumerate() {
        a.subject.onboarding_date = Some(today - Duration::days(200));
        a.gaps.clear();
        if i % 4 == 1 {
            a.truth.decay_start = Some(today - Duration::days(45));
            a.truth.churn_date = Some(today + Duration::days(15));
        }
    }
    // A second, recent onboarding cohort per segment (for adoption by tier): the last
    // steady account of each segment with two or more steady ones starts 45 days ago,
    // its usage ramping up from then.
    let mut by_segment: BTreeMap<domain::ids::Segment, Vec<usize>> = BTreeMap::new();
    for (i, a) in synth.accounts.iter().enumerate() {
        if a.truth.decay_start.is_none() {
            by_segment.entry(a.subject.segment).or_default().push(i);
        }
    }
    for steady in by_segment.values().filter(|v| v.len() >= 2) {
        if let Some(a) = steady.last().and_then(|i| synth.accounts.get_mut(*i)) {
            a.subject.onboarding_date = Some(today - Duration::days(RECENT_COHORT_DAYS));
        }
    }
    let mut cfg = HealthConfig {
        min_segment_population: 3,
        ..HealthConfig::default()
    };
    for c in cfg.segments.values_mut() {
        *c = SegmentConfig {
            milestones: Some(c.milestones().iter().take(1).cloned().collect()),
            ..c.clone()
        };
    }
    (synth, cfg)
}

/// What `load` created: the tenant's admin key, a read-only key for the cockpit, and
/// the accounts generated to decay.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: String,
    pub read_key: String,
    pub decaying: Vec<String>,
}

/// Loads demo accounts and usage into the running local stack under `tenant`.
pub async fn load(stack: &Stack, tenant: &TenantId, accounts: usize) -> Result<Loaded> {
    use domain::ports::AccountStore;
    let backfill = domain::horizon::Horizon::parse(100, lambda::config::ledger_retention()?)
        .context("the demo's 100-day backfill horizon")?;
    let created = stack
        .ensure_tenant(tenant, "Health demo", backfill)
        .await
        .context("creating the demo tenant")?;
    let key = stack.store.create_api_key(tenant, "demo").await?;
    let read_key = crate::cockpit::read_key(stack, tenant, "demo cockpit").await?;
    let today = Utc::now().date_naive();
    let (synth, cfg) = demo_data(accounts, today);
    stack.store.put_health_config(tenant, &cfg).await?;
    let now = Utc::now();
    let mut events = Vec::new();
    for (i, a) in synth.accounts.iter().enumerate() {
        let profile = domain::account::AccountProfile {
            account: a.subject.account.clone(),
            name: a.name.clone(),
            segment: a.subject.segment,
            owner_email: Some(format!("csm-{}@example.com", a.subject.segment.as_str())),
            onboarding_date: a.subject.onboarding_date,
            // Renewals spread over the next year, so the portfolio shows days to each.
            renewal_date: Some(today + Duration::days(20 + (i as i64 * 47) % 340)),
            crm_ids: Default::default(),
            crm_properties: Default::default(),
            created_at: now,
            updated_at: now,
        };
        stack.store.put_account(tenant, &profile).await?;
        for back in 1..=62 {
            let day = today - Duration::days(back);
            for (m, q) in METERS.iter().zip(synth.day(a, day)) {
                if q > 0.0 && *m != "tickets_reopened" && *m != "tickets_escalated" {
                    events.push(serde_json::json!({
                        "id": format!("demo-{}-{m}-{day}", a.subject.account),
                        "account": a.subject.account, "meter": m, "quantity": q,
                        "timestamp": format!("{day}T12:00:00Z"),
                    }));
                }
            }
        }
    }
    crate::cockpit::demo_entitlements(stack, &key, &synth, today).await?;
    let total = events.len();
    for chunk in events.chunks(1000) {
        let req = lambda_http::http::Request::builder()
            .method("POST")
            .uri("/v1/events")
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(lambda_http::Body::Text(
                serde_json::Value::Array(chunk.to_vec()).to_string(),
            ))?;
        let resp = stack.ingest.handle(req).await;
        anyhow::ensure!(resp.status() == 202, "ingest answered {}", resp.status());
    }
    let base = format!(
        "http://{}",
        std::env::var("LOCAL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into())
    );
    let decaying: Vec<String> = synth
        .accounts
        .iter()
        .filter(|a| a.truth.decay_start.is_some())
        .map(|a| a.subject.account.to_string())
        .collect();
    println!(
        "{} tenant {tenant}: {} accounts, {total} usage events queued (the runner's rollup counts them).\n\
         Decaying (for you to check, never read by the scorer): {}\n\n\
         export KEY={key}\n\
         # once the runner's console is quiet (rollup done):\n\
         curl -s -X POST {base}/local/jobs/score -H \"Authorization: Bearer $KEY\"\n\
         curl -s \"{base}/v1/accounts?band=red\" -H \"Authorization: Bearer $KEY\"\n\n\
         CS cockpit: open {base}/app and sign in with this read-only key:\n  {read_key}",
        if created { "Created" } else { "Reused" },
        synth.accounts.len(),
        decaying.join(", ")
    );
    Ok(Loaded {
        key,
        read_key,
        decaying,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::health::model::{self, Band, Series};

    #[test]
    fn the_demo_data_puts_its_decaying_accounts_first_and_red() {
        let today = Utc::now().date_naive();
        let (synth, cfg) = demo_data(8, today);
        // What the rollups will hold: the 62 days the demo sends, four meters.
        let sent = [
            "api_calls",
            "tickets_resolved",
            "seats_active",
            "tickets_opened",
        ];
        let ms: Vec<_> = synth
            .accounts
            .iter()
            .map(|a| {
                let mut s = Series::empty(today);
                for back in 1..=62 {
                    let day = today - Duration::days(back);
                    for (m, q) in synth.meters().iter().zip(synth.day(a, day)) {
                        if sent.contains(&m.as_str()) && q > 0.0 {
                            s.add(m, day, q);
                        }
                    }
                }
                model::measure(&a.subject, &s, today, &cfg, &BTreeMap::new())
            })
            .collect();
        let b = model::baselines(&ms, &cfg);
        let mut scored: Vec<(f64, Band, bool)> = ms
            .iter()
            .zip(&synth.accounts)
            .filter_map(|(m, a)| {
                model::score(m, &b[&m.segment], &cfg)
                    .map(|s| (s.score, s.band, a.truth.decay_start.is_some()))
            })
            .collect();
        scored.sort_by(|x, y| x.0.total_cmp(&y.0));
        let decaying = scored.iter().filter(|s| s.2).count();
        assert_eq!(decaying, 2, "{scored:?}");
        assert!(
            scored[..decaying].iter().all(|s| s.2 && s.1 == Band::Red),
            "{scored:?}"
        );
    }
}
