//! `usage-local [--aws] backtest --tenant T --outcomes FILE`: the file backtest's
//! report from a tenant's STORED usage: its profiles (AccountStore), its day rollups
//! (UsageReader, `delivered` stage, as the score job reads them) and the config the
//! score job would resolve (stored health config + meter registry). Run it every
//! month against the month's outcomes to check the scores still rank churners.

use crate::backtest_files::{read_outcomes, History, Inputs};
use anyhow::{anyhow, Result};
use chrono::{Duration, NaiveDate};
use domain::health::backtest::Outcome;
use domain::health::config::HealthConfig;
use domain::health::model::WINDOW_DAYS;
use domain::health::run::scorable_accounts;
use domain::health::store::HealthStore;
use domain::ids::{Stage, TenantId};
use domain::keys::Scope;
use domain::ports::{AccountStore, DefinitionStore, UsageReader};
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeSet;
use std::path::Path;

/// Days of history read before the earliest default cut-off: 6 cut-offs 30 days
/// apart, each with its 90-day window (see [`crate::backtest_files::run`]).
const DEFAULT_SPAN_DAYS: i64 = 150 + WINDOW_DAYS as i64;

/// Loads the tenant's profiles and rollups from `to` back to the earliest cut-off's
/// window (`cutoffs`, or the defaults ending `horizon_days` before `to`), the
/// outcomes from the file, and the config the score job resolves.
pub async fn load<S>(
    store: &S,
    tenant: &TenantId,
    outcomes: &Path,
    cutoffs: &[NaiveDate],
    horizon_days: i64,
    to: NaiveDate,
) -> Result<(Inputs, HealthConfig)>
where
    S: AccountStore + UsageReader + DefinitionStore + HealthStore,
{
    let churn = read_outcomes(outcomes)?;
    let from = match cutoffs.iter().min() {
        Some(first) => *first - Duration::days(WINDOW_DAYS as i64),
        None => to - Duration::days(horizon_days + DEFAULT_SPAN_DAYS),
    };
    let profiles = scorable_accounts(store, tenant).await?;
    let mut history = History::new();
    let mut meters = BTreeSet::new();
    let mut last_day: Option<NaiveDate> = None;
    let mut rows_read = 0usize;
    for p in &profiles {
        let account = &p.subject.account;
        let rows = store
            .read_rollups(tenant, &Scope::Account(account.clone()), from, to, None)
            .await?;
        rows_read += rows.len();
        for r in rows.iter().filter(|r| r.key.stage == Stage::Delivered) {
            let q = r.total.quantity.to_f64().unwrap_or(0.0);
            if q == 0.0 {
                continue;
            }
            meters.insert(r.key.meter.clone());
            last_day = Some(last_day.map_or(r.key.day, |l| l.max(r.key.day)));
            *history
                .entry(account.clone())
                .or_default()
                .entry(r.key.meter.clone())
                .or_default()
                .entry(r.key.day)
                .or_default() += q;
        }
    }
    tracing::info!(
        tenant = %tenant,
        accounts = profiles.len(),
        rollups = rows_read,
        %from,
        %to,
        "stored usage read for the backtest"
    );
    let last_day =
        last_day.ok_or_else(|| anyhow!("tenant {tenant}: no usage from {from} to {to}"))?;
    let stored = store.get_health_config(tenant).await?;
    let definitions = store.list_definitions(tenant).await?;
    let cfg = HealthConfig::resolve(stored.as_ref(), &definitions).config;
    let accounts = profiles
        .into_iter()
        .map(|p| {
            let churn_date = churn.get(&p.subject.account).copied().flatten();
            (p.subject, Outcome { churn_date })
        })
        .collect();
    Ok((
        Inputs {
            history,
            accounts,
            meters,
            last_day,
        },
        cfg,
    ))
}
