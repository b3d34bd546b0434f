//! Storage the audit needs, behind small traits (DynamoDB adapter in
//! `aws/src/dynamo/audit.rs`, in-memory versions for tests and the benchmark).

use super::counters::Counts;
use super::kpi::SampledEvent;
use super::report::AuditReport;
use crate::ids::{AccountId, MeterName, TenantId};
use crate::ports::error::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;

/// Writes the counters. Request counts are plain `ADD`s; chunk counts are applied
/// once per chunk (a marker in the same transaction), so redeliveries add nothing.
#[async_trait]
pub trait QualityRecorder: Send + Sync {
    async fn record_request(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
        counts: &BTreeMap<String, Counts>,
    ) -> Result<(), StoreError>;
    async fn record_chunk(
        &self,
        tenant: &TenantId,
        chunk: &str,
        day: NaiveDate,
        counts: &BTreeMap<MeterName, Counts>,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Adds a chunk's critical-meter series once per chunk (markers under the chunk).
    async fn record_series(
        &self,
        tenant: &TenantId,
        chunk: &str,
        series: &super::series::Series,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// Last time each account sent a (critical) meter; keeps the latest.
    async fn record_activity(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        seen: &[(AccountId, DateTime<Utc>)],
    ) -> Result<(), StoreError>;
}

/// What the audit job reads besides definitions and rollups.
#[async_trait]
pub trait AuditReader: Send + Sync {
    /// Every tenant (from the tenant index, never a Scan).
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError>;
    /// Counters per meter (stored name), summed over receipt days `from..=to`.
    async fn quality(
        &self,
        tenant: &TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<String, Counts>, StoreError>;
    async fn activity(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
    ) -> Result<Vec<(AccountId, DateTime<Utc>)>, StoreError>;
    /// One account's critical-meter series for event days `from..=to`.
    async fn critical_series(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<super::series::CriticalRow>, StoreError>;
    /// Sampled ledger events of one event day (see `AUDIT_SAMPLE_MODULUS`).
    async fn sampled_events(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError>;
    /// HubSpot changes no rule mapped on one day.
    async fn unmapped_changes(&self, tenant: &TenantId, day: NaiveDate) -> Result<u64, StoreError>;
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    async fn put_report(&self, report: &AuditReport) -> Result<(), StoreError>;
    async fn latest_report(&self, tenant: &TenantId) -> Result<Option<AuditReport>, StoreError>;
    /// One page of the runs with `from <= run_at <= to`, oldest first: at most
    /// `limit`, after `cursor` (an opaque cursor this store returned as `next` for the
    /// same range).
    async fn reports(
        &self,
        tenant: &TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<crate::ports::error::Page<AuditReport>, StoreError>;
}

/// Default drift sample: the events of one account in 32 (≈ +0.03 WRU per event).
pub const DEFAULT_AUDIT_SAMPLE: u32 = 32;

/// Whether an account's events are copied to the drift sample: a stable hash of the
/// account modulo `modulus` (1 samples every account, 0 none).
pub fn sampled(account: &AccountId, modulus: u32) -> bool {
    if modulus == 0 {
        return false;
    }
    // FNV-1a: stable across processes and versions.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in account.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h.is_multiple_of(u64::from(modulus))
}

/// Messages waiting in a dead-letter queue.
#[async_trait]
pub trait QueueDepth: Send + Sync {
    async fn depth(&self) -> Result<u64, StoreError>;
}

/// Which meters of a tenant are critical, from its definitions, remembered for a
/// minute per tenant (the rollup asks once per chunk).
pub struct CriticalMeters {
    directory: std::sync::Arc<dyn crate::ports::Directory>,
    ttl: std::time::Duration,
    cache: std::sync::Mutex<std::collections::HashMap<TenantId, (std::time::Instant, MeterSet)>>,
}

/// A shared set of meter names.
pub type MeterSet = std::sync::Arc<std::collections::HashSet<MeterName>>;

impl CriticalMeters {
    pub fn new(directory: std::sync::Arc<dyn crate::ports::Directory>) -> Self {
        Self {
            directory,
            ttl: std::time::Duration::from_secs(60),
            cache: Default::default(),
        }
    }

    pub async fn of(&self, tenant: &TenantId) -> Result<MeterSet, StoreError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, set)) = cache.get(tenant) {
                if at.elapsed() < self.ttl {
                    return Ok(set.clone());
                }
            }
        }
        let set: std::collections::HashSet<MeterName> = self
            .directory
            .tenant_policy(tenant)
            .await?
            .map(|p| {
                p.governance
                    .schemas
                    .into_iter()
                    .filter(|(_, s)| s.critical)
                    .map(|(m, _)| m)
                    .collect()
            })
            .unwrap_or_default();
        let set = std::sync::Arc::new(set);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(tenant.clone(), (std::time::Instant::now(), set.clone()));
        }
        Ok(set)
    }
}
