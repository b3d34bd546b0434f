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
    /// Score change over the last 7 days: against the last score on or before the
    /// day a week earlier (`None`: no score that old among the recent ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_7d: Option<f64>,
    /// The last day the band changed, among the recent scores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band_changed_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_date: Option<NaiveDate>,
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
            change_7d: change_7d(r),
            band_changed_on: band_changed_on(r),
            renewal_date: r.info.renewal_date,
        })
    }
}

/// Today's score less the last recent score on or before 7 days earlier.
pub fn change_7d(r: &HealthRecord) -> Option<f64> {
    let score = r.score?;
    let week_ago = r.as_of - chrono::Duration::days(7);
    let then = r
        .recent
        .iter()
        .filter(|s| s.as_of <= week_ago)
        .max_by_key(|s| s.as_of)?;
    Some(score - then.score)
}

/// The last recent day whose band differs from the scored day before it (today's
/// band included, even if `recent` has not recorded it).
pub fn band_changed_on(r: &HealthRecord) -> Option<NaiveDate> {
    let mut days: Vec<(NaiveDate, Band)> = r.recent.iter().map(|s| (s.as_of, s.band)).collect();
    if let Some(band) = r.band {
        if !days.iter().any(|(d, _)| *d == r.as_of) {
            days.push((r.as_of, band));
        }
    }
    days.sort_by_key(|(d, _)| *d);
    days.windows(2)
        .rev()
        .find(|w| w[0].1 != w[1].1)
        .map(|w| w[1].0)
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
    /// The tenant's plays by tier ([`super::plays`]); `None`: none configured.
    async fn get_plays(&self, t: &TenantId) -> Result<Option<super::plays::Plays>, StoreError>;
    async fn put_plays(&self, t: &TenantId, plays: &super::plays::Plays) -> Result<(), StoreError>;
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

#[cfg(test)]
mod risk_entry_tests {
    use super::*;

    /// A scored record of 2026-11-20 with these recent (day of November, score, band).
    fn record(score: f64, band: &str, recent: &[(u32, f64, &str)]) -> HealthRecord {
        let recent: Vec<serde_json::Value> = recent
            .iter()
            .map(|(d, s, b)| serde_json::json!({"as_of": format!("2026-11-{d:02}"), "score": s, "band": b}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "account": "acme", "segment": "smb", "as_of": "2026-11-20", "state": "scored",
            "score": score, "band": band, "recent": recent,
            "info": {"renewal_date": "2027-01-31"},
            "computed_at": "2026-11-20T06:00:00Z"
        }))
        .expect("a record")
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("a day")
    }

    #[test]
    fn the_weekly_change_is_against_the_last_score_a_week_or_more_ago() {
        let r = record(
            40.0,
            "red",
            &[
                (10, 70.0, "green"),
                (13, 62.0, "yellow"),
                (14, 55.0, "yellow"),
                (20, 40.0, "red"),
            ],
        );
        assert_eq!(
            change_7d(&r),
            Some(40.0 - 62.0),
            "13 November, not the 14th"
        );
        assert_eq!(
            change_7d(&record(40.0, "red", &[(14, 55.0, "yellow")])),
            None
        );
        let e = RiskEntry::of(&r).expect("scored");
        assert_eq!(e.renewal_date, NaiveDate::from_ymd_opt(2027, 1, 31));
        assert_eq!(e.band_changed_on, Some(day(20)));
    }

    #[test]
    fn the_band_change_is_the_last_day_whose_band_differs_from_the_day_before() {
        let steady = record(80.0, "green", &[(10, 81.0, "green"), (15, 79.0, "green")]);
        assert_eq!(band_changed_on(&steady), None);
        let earlier = record(
            50.0,
            "yellow",
            &[
                (10, 80.0, "green"),
                (12, 55.0, "yellow"),
                (20, 50.0, "yellow"),
            ],
        );
        assert_eq!(band_changed_on(&earlier), Some(day(12)));
        // Today's band counts even before `recent` holds today.
        let today = record(30.0, "red", &[(19, 50.0, "yellow")]);
        assert_eq!(band_changed_on(&today), Some(day(20)));
    }
}
