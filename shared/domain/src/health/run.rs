//! A score run, fanned out: the scheduled start enumerates a tenant's accounts and
//! enqueues shards; shard workers measure their accounts; the worker that completes
//! the last shard computes the segment baselines from every measurement and enqueues
//! the score phase; score workers normalise, store records, raise alerts and write
//! back to the CRM. Every step is idempotent under SQS redelivery (docs/adr/0006).

use super::bands::{BandSummaryStore, DailyBands};
use super::config::HealthConfig;
use super::model::{self, Series, Subject};
use super::record::{self, AccountInfo};
use super::store::{HealthStore, Measured, RiskSlot, RunHeader, Save, ShardItem};
use super::writeback::{CrmSink, CrmUpdate};
use crate::account::AccountProfile;
use crate::ids::{AccountId, Segment, TenantId};
use crate::keys::Scope;
use crate::ports::{
    AccountStore, DefinitionStore, MarkerClaim, MarkerKind, MarkerStore, StoreError, UsageReader,
};
use crate::queue::EventQueue;
use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queueing failed: {0}")]
    Queue(String),
    #[error("message is not a score shard: {0}")]
    Poison(String),
    #[error("run {run} has no {what} yet")]
    Missing { run: String, what: &'static str },
}

impl RunError {
    pub fn is_poison(&self) -> bool {
        matches!(self, RunError::Poison(_))
    }
}

impl crate::queue::MessageFailure for RunError {
    fn is_poison(&self) -> bool {
        RunError::is_poison(self)
    }
}

/// One account as a shard message carries it (so workers need no profile reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardAccount {
    pub subject: Subject,
    #[serde(default)]
    pub info: AccountInfo,
}

impl ShardAccount {
    pub fn of(p: &AccountProfile) -> Self {
        Self {
            subject: Subject {
                account: p.account.clone(),
                segment: p.segment,
                onboarding_date: p.onboarding_date,
                seats: p
                    .crm_properties
                    .get("seats")
                    .and_then(|c| c.value.trim().parse::<f64>().ok()),
            },
            info: AccountInfo {
                name: Some(p.name.clone()),
                owner: p.owner_email.clone(),
                onboarding_date: p.onboarding_date,
                hubspot_company_id: p.crm_ids.get("hubspot_company_id").cloned(),
                hubspot_portal_id: p.crm_ids.get("hubspot_portal_id").cloned(),
                hubspot_owner_id: p.crm_ids.get("hubspot_owner_id").cloned(),
                crm_url: crate::limits::crm_url(&p.crm_ids),
                renewal_date: p.renewal(),
            },
        }
    }
}

/// The body of a shard-queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum ShardMessage {
    Measure {
        tenant: TenantId,
        run: String,
        as_of: NaiveDate,
        shard: u32,
        shards: u32,
        accounts: Vec<ShardAccount>,
    },
    Score {
        tenant: TenantId,
        run: String,
        as_of: NaiveDate,
        shard: u32,
        shards: u32,
    },
}

/// Splits accounts into shards of at most `size`, in order: every account in
/// exactly one shard.
pub fn shard<T: Clone>(items: &[T], size: usize) -> Vec<Vec<T>> {
    items.chunks(size.max(1)).map(<[T]>::to_vec).collect()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunStarted {
    pub tenant: Option<TenantId>,
    pub run: String,
    pub accounts: usize,
    pub shards: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ShardOutcome {
    pub measured: usize,
    pub scored: usize,
    pub insufficient: usize,
    pub alerts: usize,
    /// This worker completed the last measurement and started the score phase.
    pub started_scoring: bool,
    pub crm_updated: usize,
    pub crm_failed: usize,
    /// Updates and tasks handed to the write-back queue.
    pub crm_queued: usize,
}

/// Every account of `tenant` the score run measures (all pages; accounts without a
/// segment are left out), as the run's shards carry them. The backtest on stored
/// usage reads the same set.
pub async fn scorable_accounts(
    store: &dyn AccountStore,
    tenant: &TenantId,
) -> Result<Vec<ShardAccount>, StoreError> {
    let mut accounts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_accounts(tenant, None, 200, cursor.as_deref())
            .await?;
        accounts.extend(
            page.items
                .iter()
                .filter(|p| p.segment != Segment::Unassigned)
                .map(ShardAccount::of),
        );
        match page.next {
            Some(n) => cursor = Some(n),
            None => return Ok(accounts),
        }
    }
}

pub struct HealthRunner {
    pub health: Arc<dyn HealthStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub usage: Arc<dyn UsageReader>,
    /// The meter registry: `key_feature` / `milestone` definitions drive the
    /// default config (see [`HealthConfig::resolve`]).
    pub definitions: Arc<dyn DefinitionStore>,
    pub markers: Arc<dyn MarkerStore>,
    /// Each day's band counts per segment (written when every shard is measured).
    pub band_summaries: Arc<dyn BandSummaryStore>,
    pub shards: Arc<dyn EventQueue>,
    pub alerts: Arc<dyn EventQueue>,
    pub crm: Option<Arc<dyn CrmSink>>,
    pub shard_size: usize,
    /// Accounts read in parallel within a shard.
    pub concurrency: usize,
}

async fn send_all(q: &dyn EventQueue, bodies: &[String]) -> Result<(), RunError> {
    for r in q.send(bodies).await {
        r.map_err(|e| RunError::Queue(e.to_string()))?;
    }
    Ok(())
}

fn to_json<T: Serialize>(v: &T) -> Result<String, RunError> {
    serde_json::to_string(v).map_err(|e| RunError::Queue(e.to_string()))
}

impl HealthRunner {
    /// The effective config: the stored one, the registry, then the defaults.
    async fn config(&self, t: &TenantId) -> Result<HealthConfig, RunError> {
        let stored = self.health.get_health_config(t).await?;
        let defs = self.definitions.list_definitions(t).await?;
        Ok(HealthConfig::resolve(stored.as_ref(), &defs).config)
    }

    /// The scheduled entry point: starts a run for every tenant.
    pub async fn start_all(&self, as_of: NaiveDate) -> Result<Vec<RunStarted>, RunError> {
        let mut out = Vec::new();
        for t in self.health.list_tenants().await? {
            out.push(self.start(&t, as_of, Utc::now()).await?);
        }
        Ok(out)
    }

    /// Enumerates the tenant's accounts (paged Queries, no Scan) and enqueues one
    /// measure message per shard.
    pub async fn start(
        &self,
        tenant: &TenantId,
        as_of: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<RunStarted, RunError> {
        let accounts = scorable_accounts(self.accounts.as_ref(), tenant).await?;
        let run = format!("{as_of}T{}", now.format("%H%M%S%3f"));
        let shards = shard(&accounts, self.shard_size);
        let header = RunHeader {
            run: run.clone(),
            as_of,
            shards: shards.len() as u32,
            accounts: accounts.len(),
            started_at: now,
        };
        self.health.put_run(tenant, &header).await?;
        let bodies = shards
            .into_iter()
            .enumerate()
            .map(|(i, accounts)| {
                to_json(&ShardMessage::Measure {
                    tenant: tenant.clone(),
                    run: run.clone(),
                    as_of,
                    shard: i as u32,
                    shards: header.shards,
                    accounts,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        send_all(self.shards.as_ref(), &bodies).await?;
        tracing::info!(tenant = %tenant, run = %run, accounts = header.accounts, shards = header.shards, "score run started");
        Ok(RunStarted {
            tenant: Some(tenant.clone()),
            run,
            accounts: header.accounts,
            shards: header.shards,
        })
    }

    /// Handles one shard message.
    pub async fn process(&self, body: &str) -> Result<ShardOutcome, RunError> {
        let msg: ShardMessage =
            serde_json::from_str(body).map_err(|e| RunError::Poison(e.to_string()))?;
        match msg {
            ShardMessage::Measure {
                tenant,
                run,
                as_of,
                shard,
                shards,
                accounts,
            } => {
                self.measure(&tenant, &run, as_of, shard, shards, &accounts)
                    .await
            }
            ShardMessage::Score {
                tenant,
                run,
                as_of,
                shard,
                ..
            } => self.score(&tenant, &run, as_of, shard).await,
        }
    }

    async fn measure(
        &self,
        tenant: &TenantId,
        run: &str,
        as_of: NaiveDate,
        shard: u32,
        shards: u32,
        accounts: &[ShardAccount],
    ) -> Result<ShardOutcome, RunError> {
        let cfg = self.config(tenant).await?;
        let ids: Vec<AccountId> = accounts.iter().map(|a| a.subject.account.clone()).collect();
        let previous = self.health.latest(tenant, &ids).await?;
        let (from, to) = Series::window(as_of);
        let cfg_ref = &cfg;
        let previous_ref = &previous;
        let measured: Vec<Measured> = stream::iter(accounts.iter().cloned())
            .map(move |a: ShardAccount| {
                let cfg = cfg_ref;
                let previous = previous_ref;
                async move {
                    let rows = self
                        .usage
                        .read_rollups(
                            tenant,
                            &Scope::Account(a.subject.account.clone()),
                            from,
                            to,
                            None,
                        )
                        .await?;
                    let series = Series::from_rows(as_of, &rows);
                    let achieved = previous
                        .get(&a.subject.account)
                        .map(|p| p.milestones_reached.clone())
                        .unwrap_or_default();
                    Ok::<_, RunError>(Measured {
                        measurement: model::measure(&a.subject, &series, as_of, cfg, &achieved),
                        info: a.info.clone(),
                    })
                }
            })
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await?;
        let n = measured.len();
        self.health
            .put_shard(
                tenant,
                run,
                &ShardItem {
                    shard,
                    accounts: measured,
                },
            )
            .await?;
        let mut out = ShardOutcome {
            measured: n,
            ..Default::default()
        };
        // Fan-in: whoever sees every shard measured starts the score phase, once.
        if self.health.count_shards(tenant, run).await? as u32 >= shards {
            let key = format!("health-run:{run}");
            let owner = format!("shard-{shard}");
            let expires = (Utc::now() + chrono::Duration::days(35)).timestamp();
            match self
                .markers
                .claim_marker(tenant, MarkerKind::Raised, &key, &owner, expires)
                .await?
            {
                MarkerClaim::New | MarkerClaim::Mine { done: false, .. } => {
                    let all = self.health.list_shards(tenant, run).await?;
                    let baselines = model::baselines(
                        all.iter()
                            .flat_map(|s| s.accounts.iter().map(|m| &m.measurement)),
                        &cfg,
                    );
                    self.health.put_baselines(tenant, run, &baselines).await?;
                    // The bands the score phase stores, counted now that the
                    // baselines are known (a redelivery rewrites the same day).
                    let summary = DailyBands::of_run(
                        as_of,
                        run,
                        all.iter()
                            .flat_map(|s| s.accounts.iter().map(|m| &m.measurement)),
                        &baselines,
                        &cfg,
                    );
                    self.band_summaries
                        .put_band_summary(tenant, &summary)
                        .await?;
                    let bodies = (0..shards)
                        .map(|i| {
                            to_json(&ShardMessage::Score {
                                tenant: tenant.clone(),
                                run: run.to_owned(),
                                as_of,
                                shard: i,
                                shards,
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    send_all(self.shards.as_ref(), &bodies).await?;
                    self.markers
                        .finish_marker(tenant, MarkerKind::Raised, &key)
                        .await?;
                    tracing::info!(tenant = %tenant, run = %run, shards, "all shards measured; scoring");
                    out.started_scoring = true;
                }
                MarkerClaim::Mine { done: true, .. } | MarkerClaim::Other => {}
            }
        }
        Ok(out)
    }

    async fn score(
        &self,
        tenant: &TenantId,
        run: &str,
        as_of: NaiveDate,
        shard: u32,
    ) -> Result<ShardOutcome, RunError> {
        let cfg = self.config(tenant).await?;
        let baselines = self
            .health
            .get_baselines(tenant, run)
            .await?
            .ok_or_else(|| RunError::Missing {
                run: run.to_owned(),
                what: "baselines",
            })?;
        let item = self
            .health
            .get_shard(tenant, run, shard)
            .await?
            .ok_or_else(|| RunError::Missing {
                run: run.to_owned(),
                what: "shard measurements",
            })?;
        let ids: Vec<AccountId> = item
            .accounts
            .iter()
            .map(|m| m.measurement.account.clone())
            .collect();
        let previous: HashMap<AccountId, record::HealthRecord> =
            self.health.latest(tenant, &ids).await?;
        let now = Utc::now();
        let mut out = ShardOutcome::default();
        let mut records = Vec::with_capacity(item.accounts.len());
        let mut alerts = Vec::new();
        for m in &item.accounts {
            let baseline = baselines.get(&m.measurement.segment);
            let scored = baseline.and_then(|b| model::score(&m.measurement, b, &cfg));
            let prev = previous.get(&m.measurement.account);
            let mut rec = record::build(
                &m.measurement,
                scored,
                baseline,
                m.info.clone(),
                as_of,
                prev,
                now,
            );
            if rec.score.is_some() {
                out.scored += 1;
            } else {
                out.insufficient += 1;
            }
            alerts.extend(record::decide_alerts(tenant, &mut rec, &cfg, now));
            records.push((rec, prev.and_then(RiskSlot::of)));
        }
        // Alerts first: a retry after a crash re-sends the same keys (notify
        // publishes each once), while records written first would hide the change.
        let bodies = alerts.iter().map(to_json).collect::<Result<Vec<_>, _>>()?;
        send_all(self.alerts.as_ref(), &bodies).await?;
        out.alerts = alerts.len();
        for a in &alerts {
            tracing::info!(tenant = %tenant, account = %a.account, alert = %a.key, kind = a.kind.as_str(), "health alert raised");
        }
        let saves: Vec<Save<'_>> = records
            .iter()
            .map(|(r, slot)| Save {
                record: r,
                previous_slot: slot.clone(),
            })
            .collect();
        self.health.save_records(tenant, &saves).await?;
        if let Some(crm) = &self.crm {
            let plays = self.health.get_plays(tenant).await?.unwrap_or_default();
            let (updates, tasks) = crm_work(&cfg, &plays, records.iter().map(|(r, _)| r));
            for (what, report) in [
                (
                    "updates",
                    (!updates.is_empty()).then(|| crm.push(tenant, &updates)),
                ),
                (
                    "tasks",
                    (!tasks.is_empty()).then(|| crm.create_tasks(tenant, &tasks)),
                ),
            ] {
                let Some(report) = report else { continue };
                let report = report.await;
                out.crm_updated += report.updated;
                out.crm_queued += report.queued;
                out.crm_failed += report.failed;
                if report.failed > 0 {
                    tracing::error!(tenant = %tenant, run = %run, what, failed = report.failed, error = ?report.last_error, "CRM write-back incomplete");
                }
            }
        }
        tracing::info!(tenant = %tenant, run = %run, shard, scored = out.scored, insufficient = out.insufficient, alerts = out.alerts, "shard scored");
        Ok(out)
    }
}

/// The CRM work of scored records: with `crm_writeback`, every record's score, band and
/// reasons; for tiers with a play ([`super::plays`]), the play's properties on the same
/// company update (written even without `crm_writeback`) and its task.
pub fn crm_work<'a>(
    cfg: &HealthConfig,
    plays: &super::plays::Plays,
    records: impl Iterator<Item = &'a record::HealthRecord>,
) -> (Vec<CrmUpdate>, Vec<super::plays::CrmTask>) {
    let mut updates = Vec::new();
    let mut tasks = Vec::new();
    for r in records {
        let decision = plays
            .tiers
            .get(&r.segment)
            .and_then(|play| super::plays::decide(play, r, cfg.segment(r.segment).milestones()));
        if let Some(d) = &decision {
            tracing::info!(account = %r.account, reason = %d.reason, task = d.task.is_some(), "play set off");
        }
        let play = decision.as_ref().and_then(|d| d.properties.clone());
        if cfg.crm_writeback || play.is_some() {
            if let Some(mut u) = CrmUpdate::of(r) {
                u.play = play;
                updates.push(u);
            }
        }
        tasks.extend(decision.and_then(|d| d.task));
    }
    (updates, tasks)
}
