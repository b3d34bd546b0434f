//! Storage of health scoring behind one small trait: configuration, score runs
//! (header, shard measurements, baselines), latest records, history and the risk
//! index. DynamoDB adapter: `aws/src/dynamo/health.rs`; in-memory: [`super::memory`].

use super::config::HealthConfig;
use super::model::{Band, Baseline, Measurement};
use super::record::{AccountInfo, HealthRecord};
use crate::ids::{AccountId, Segment, TenantId};
use crate::ports::error::{Page, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    pub run: String,
    pub as_of: NaiveDate,
    pub shards: u32,
    pub accounts: usize,
    pub started_at: DateTime<Utc>,
}

/// One measured account of a shard, with the profile facts alerts and CRM need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub measurement: Measurement,
    pub info: AccountInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardItem {
    pub shard: u32,
    pub accounts: Vec<Measured>,
}

/// A row of `GET /v1/accounts?band=...`: sorted by score, riskiest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskEntry {
    pub account: AccountId,
    pub segment: Segment,
    pub band: Band,
    pub score: f64,
    pub as_of: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Top reasons as `code: detail`.
    pub reasons: Vec<String>,
}

impl RiskEntry {
    pub fn of(r: &HealthRecord) -> Option<Self> {
        Some(Self {
            account: r.account.clone(),
            segment: r.segment,
            band: r.band?,
            score: r.score?,
            as_of: r.as_of,
            name: r.info.name.clone(),
            owner: r.info.owner.clone(),
            reasons: r
                .reasons
                .iter()
                .take(3)
                .map(|x| format!("{}: {}", x.code, x.detail))
                .collect(),
        })
    }
}

/// Where a record sits in the risk index (to move it when its score changes).
#[derive(Debug, Clone, PartialEq)]
pub struct RiskSlot {
    pub segment: Segment,
    pub band: Band,
    pub score: f64,
}

impl RiskSlot {
    pub fn of(r: &HealthRecord) -> Option<Self> {
        Some(Self {
            segment: r.segment,
            band: r.band?,
            score: r.score?,
        })
    }
}

/// A new record to store and the slot its previous record occupied.
#[derive(Debug, Clone)]
pub struct Save<'a> {
    pub record: &'a HealthRecord,
    pub previous_slot: Option<RiskSlot>,
}

#[async_trait]
pub trait HealthStore: Send + Sync {
    async fn get_health_config(&self, t: &TenantId) -> Result<Option<HealthConfig>, StoreError>;
    async fn put_health_config(&self, t: &TenantId, cfg: &HealthConfig) -> Result<(), StoreError>;
    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError>;

    async fn put_run(&self, t: &TenantId, run: &RunHeader) -> Result<(), StoreError>;
    async fn put_shard(&self, t: &TenantId, run: &str, shard: &ShardItem)
        -> Result<(), StoreError>;
    async fn get_shard(
        &self,
        t: &TenantId,
        run: &str,
        shard: u32,
    ) -> Result<Option<ShardItem>, StoreError>;
    async fn count_shards(&self, t: &TenantId, run: &str) -> Result<usize, StoreError>;
    async fn list_shards(&self, t: &TenantId, run: &str) -> Result<Vec<ShardItem>, StoreError>;
    async fn put_baselines(
        &self,
        t: &TenantId,
        run: &str,
        b: &BTreeMap<Segment, Baseline>,
    ) -> Result<(), StoreError>;
    async fn get_baselines(
        &self,
        t: &TenantId,
        run: &str,
    ) -> Result<Option<BTreeMap<Segment, Baseline>>, StoreError>;

    /// Latest records of many accounts (missing accounts are absent).
    async fn latest(
        &self,
        t: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, HealthRecord>, StoreError>;
    /// Stores history, moves risk-index entries, then replaces the latest records
    /// (last, so a retry still sees the previous record).
    async fn save_records(&self, t: &TenantId, saves: &[Save<'_>]) -> Result<(), StoreError>;
    /// Daily records of one account, oldest first.
    async fn history(
        &self,
        t: &TenantId,
        a: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<HealthRecord>, StoreError>;
    /// Accounts of the given bands (all when empty) and segment (all when `None`),
    /// lowest score first.
    async fn list_risk(
        &self,
        t: &TenantId,
        segment: Option<Segment>,
        bands: &[Band],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RiskEntry>, StoreError>;
}
