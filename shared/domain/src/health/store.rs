//! Storage of health scoring behind one small trait: configuration, score runs
//! (header, shard measurements, baselines), latest records, history and the risk
//! index. DynamoDB adapter: `aws/src/dynamo/health.rs`; in-memory: [`super::memory`].

use super::config::HealthConfig;
use super::model::{Band, Baseline, Measurement};
use super::record::{AccountInfo, HealthRecord};
use crate::ids::{AccountId, Segment, TenantId};
use crate::keys;
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

/// Where a record sits in the risk index (to move it when its score, band, owner or
/// band-change day changes).
#[derive(Debug, Clone, PartialEq)]
pub struct RiskSlot {
    pub segment: Segment,
    pub band: Band,
    pub score: f64,
    /// The owner's e-mail, lowercase (the owner partition).
    pub owner: Option<String>,
    /// The day the band last changed (the band-change partition).
    pub changed_on: Option<NaiveDate>,
}

impl RiskSlot {
    pub fn of(r: &HealthRecord) -> Option<Self> {
        Some(Self {
            segment: r.segment,
            band: r.band?,
            score: r.score?,
            owner: r
                .info
                .owner
                .as_deref()
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(str::to_lowercase),
            changed_on: band_changed_on(r),
        })
    }

    /// Every (partition, sort key) an entry in this slot is written under: its
    /// (segment, band) partition, its owner's, and that of the day its band changed.
    pub fn index_keys(&self, t: &TenantId, a: &AccountId) -> Vec<(String, String)> {
        let sk = keys::health_risk_sk(self.score, a);
        let mut out = vec![(
            keys::health_risk_pk(t, self.segment, self.band.as_str()),
            sk.clone(),
        )];
        if let Some(o) = &self.owner {
            out.push((keys::health_risk_owner_pk(t, o), sk.clone()));
        }
        if let Some(d) = self.changed_on {
            out.push((keys::health_risk_changed_pk(t, d), sk));
        }
        out
    }
}

/// A new record to store and the slot its previous record occupied.
#[derive(Debug, Clone)]
pub struct Save<'a> {
    pub record: &'a HealthRecord,
    pub previous_slot: Option<RiskSlot>,
}

/// The risk-index writes of one saved record: the keys of its previous entries that
/// the new ones do not reuse (deleted), and the entry put under each of its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskMoves {
    pub delete: Vec<(String, String)>,
    pub put: Vec<(String, String)>,
    pub entry: Option<RiskEntry>,
}

impl Save<'_> {
    pub fn risk_moves(&self, t: &TenantId) -> RiskMoves {
        let a = &self.record.account;
        let put = RiskSlot::of(self.record)
            .map(|s| s.index_keys(t, a))
            .unwrap_or_default();
        let delete = self
            .previous_slot
            .as_ref()
            .map(|s| s.index_keys(t, a))
            .unwrap_or_default()
            .into_iter()
            .filter(|k| !put.contains(k))
            .collect();
        RiskMoves {
            delete,
            put,
            entry: RiskEntry::of(self.record),
        }
    }
}

/// Rows one partition Query asks for when the partition holds rows a listing does not
/// keep (they are filtered as read; DynamoDB answers at most 1 MB, ~1,500 entries).
pub const RISK_FILTERED_READ: usize = 1_000;
/// Queries one page reads from one partition at most; the cursor then says where to
/// go on (the page may be short).
pub const RISK_QUERIES_PER_PARTITION: usize = 4;

/// A risk listing. Without an owner or a band-change window it reads the (segment,
/// band) partitions; with an owner, that owner's partition; else with a window, one
/// partition per day of it. What the partition does not key on is filtered as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskSelect {
    pub segment: Option<Segment>,
    /// All when empty.
    pub bands: Vec<Band>,
    /// The owner's e-mail (any case).
    pub owner: Option<String>,
    /// Accounts whose band changed on this day or later.
    pub changed_since: Option<NaiveDate>,
}

/// The partitions a listing reads, and whether they hold rows it does not keep.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskRead {
    pub partitions: Vec<String>,
    pub filtered: bool,
}

impl RiskSelect {
    pub fn keeps(&self, e: &RiskEntry) -> bool {
        self.segment.is_none_or(|s| s == e.segment)
            && (self.bands.is_empty() || self.bands.contains(&e.band))
            && self.owner.as_ref().is_none_or(|o| {
                e.owner
                    .as_deref()
                    .is_some_and(|x| x.trim().to_lowercase() == o.trim().to_lowercase())
            })
            && self
                .changed_since
                .is_none_or(|d| e.band_changed_on.is_some_and(|c| c >= d))
    }

    /// The partitions to read on `today` (a band-change window ends today).
    pub fn read(&self, t: &TenantId, today: NaiveDate) -> RiskRead {
        let some_bands =
            !self.bands.is_empty() && Band::ALL.iter().any(|b| !self.bands.contains(b));
        if let Some(o) = &self.owner {
            return RiskRead {
                partitions: vec![keys::health_risk_owner_pk(t, o.trim())],
                filtered: self.segment.is_some() || some_bands || self.changed_since.is_some(),
            };
        }
        if let Some(since) = self.changed_since {
            return RiskRead {
                partitions: since
                    .iter_days()
                    .take_while(|d| *d <= today)
                    .map(|d| keys::health_risk_changed_pk(t, d))
                    .collect(),
                filtered: self.segment.is_some() || some_bands,
            };
        }
        let mut partitions = Vec::new();
        for seg in Segment::ALL {
            if seg == Segment::Unassigned || self.segment.is_some_and(|s| s != seg) {
                continue;
            }
            for band in Band::ALL {
                if self.bands.is_empty() || self.bands.contains(&band) {
                    partitions.push(keys::health_risk_pk(t, seg, band.as_str()));
                }
            }
        }
        RiskRead {
            partitions,
            filtered: false,
        }
    }
}

/// One Query's answer: rows (sort key, entry) in key order, and whether the partition
/// has more after them.
pub type RiskRows = (Vec<(String, RiskEntry)>, bool);

/// How the reading of one partition for a page ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PartEnd {
    /// Nothing more in the partition.
    Exhausted,
    /// More kept rows than the page wants.
    Full,
    /// [`RISK_QUERIES_PER_PARTITION`] queries read, up to this sort key.
    Budget(String),
}

/// The kept rows of one partition for a page, and how its reading ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PartRead {
    pub rows: Vec<(String, RiskEntry)>,
    pub end: PartEnd,
}

/// Reads one partition for a page: Queries of `limit + 1` rows (of
/// [`RISK_FILTERED_READ`] when the partition holds rows not kept) from the cursor on,
/// until more than `limit` rows are kept, the partition ends or the budget is spent.
pub async fn read_partition<F, Fut>(
    sel: &RiskSelect,
    filtered: bool,
    limit: usize,
    cursor: Option<&str>,
    mut query: F,
) -> Result<PartRead, StoreError>
where
    F: FnMut(Option<String>, usize) -> Fut,
    Fut: std::future::Future<Output = Result<RiskRows, StoreError>>,
{
    let n = if filtered {
        RISK_FILTERED_READ.max(limit.saturating_add(1))
    } else {
        limit.saturating_add(1)
    };
    let mut start = cursor.map(str::to_owned);
    let mut rows = Vec::new();
    for _ in 0..RISK_QUERIES_PER_PARTITION {
        let (items, more) = query(start.clone(), n).await?;
        let last = items.last().map(|(k, _)| k.clone());
        for (k, e) in items {
            if !filtered || sel.keeps(&e) {
                rows.push((k, e));
                if rows.len() > limit {
                    return Ok(PartRead {
                        rows,
                        end: PartEnd::Full,
                    });
                }
            }
        }
        match last {
            Some(l) if more => start = Some(l),
            _ => {
                return Ok(PartRead {
                    rows,
                    end: PartEnd::Exhausted,
                })
            }
        }
    }
    let end = start.map_or(PartEnd::Exhausted, PartEnd::Budget);
    Ok(PartRead { rows, end })
}

/// Merges the partitions' rows into a page of at most `limit`, riskiest first, and its
/// cursor (a sort key). A partition that spent its budget bounds the page: rows after
/// the key it reached wait for the next page, which starts there.
pub fn merge_risk(parts: Vec<PartRead>, limit: usize) -> (Vec<RiskEntry>, Option<String>) {
    let horizon = parts
        .iter()
        .filter_map(|p| match &p.end {
            PartEnd::Budget(k) => Some(k.clone()),
            _ => None,
        })
        .min();
    let mut all: Vec<(String, RiskEntry)> = parts.into_iter().flat_map(|p| p.rows).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.dedup_by(|a, b| a.0 == b.0);
    if let Some(h) = &horizon {
        all.retain(|(k, _)| k <= h);
    }
    let next = if all.len() > limit {
        all.truncate(limit);
        all.last().map(|(k, _)| k.clone())
    } else {
        horizon
    };
    (all.into_iter().map(|(_, e)| e).collect(), next)
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
    /// One Query of a risk-index partition (`pk` from [`RiskSelect::read`]): at most
    /// `n` rows after the sort key `start`, in key order.
    async fn risk_partition(
        &self,
        pk: &str,
        start: Option<&str>,
        n: usize,
    ) -> Result<RiskRows, StoreError>;
    /// A page of a risk listing, lowest score first: the partitions [`RiskSelect::read`]
    /// names, read at once ([`read_partition`]) and merged ([`merge_risk`]). The cursor
    /// is the sort key of the last row, as [`Self::list_risk`]'s adapters encode it.
    async fn list_risk_in(
        &self,
        t: &TenantId,
        sel: &RiskSelect,
        today: NaiveDate,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RiskEntry>, StoreError> {
        let after = cursor.map(|c| self.risk_cursor_key(c)).transpose()?;
        let read = sel.read(t, today);
        let parts =
            futures::future::try_join_all(
                read.partitions.iter().map(|pk| {
                    read_partition(
                        sel,
                        read.filtered,
                        limit,
                        after.as_deref(),
                        move |start, n| async move {
                            self.risk_partition(pk, start.as_deref(), n).await
                        },
                    )
                }),
            )
            .await?;
        let (items, next) = merge_risk(parts, limit);
        Ok(Page {
            items,
            next: next.map(|k| self.risk_cursor(&k)),
        })
    }
    /// The cursor a client sees for a sort key (identity unless an adapter encodes it).
    fn risk_cursor(&self, sk: &str) -> String {
        sk.to_owned()
    }
    /// The sort key of a cursor.
    fn risk_cursor_key(&self, cursor: &str) -> Result<String, StoreError> {
        Ok(cursor.to_owned())
    }
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

    fn entry(owner: Option<&str>, changed: Option<u32>) -> RiskEntry {
        serde_json::from_value(serde_json::json!({
            "account": "acme", "segment": "smb", "band": "red", "score": 30.0,
            "as_of": "2026-11-20", "owner": owner, "reasons": [],
            "band_changed_on": changed.map(|d| format!("2026-11-{d:02}")),
        }))
        .expect("an entry")
    }

    #[test]
    fn a_risk_listing_keeps_an_owners_accounts_and_those_whose_band_changed_lately() {
        let owner = RiskSelect {
            owner: Some("csm@example.com".into()),
            ..RiskSelect::default()
        };
        assert!(owner.keeps(&entry(Some("CSM@example.com"), None)));
        assert!(!owner.keeps(&entry(Some("other@example.com"), None)));
        assert!(!owner.keeps(&entry(None, None)));
        let week = RiskSelect {
            changed_since: Some(day(14)),
            ..RiskSelect::default()
        };
        assert!(week.keeps(&entry(None, Some(14))), "six days ago");
        assert!(!week.keeps(&entry(None, Some(13))), "a week ago");
        assert!(!week.keeps(&entry(None, None)));
        let smb_green = RiskSelect {
            segment: Some(Segment::Smb),
            bands: vec![Band::Green],
            ..RiskSelect::default()
        };
        assert!(!smb_green.keeps(&entry(None, None)), "a red entry");
    }

    #[test]
    fn an_owner_or_a_window_reads_its_own_partitions_and_filters_only_what_they_do_not_key() {
        let t = TenantId::parse("t1").expect("a tenant");
        let today = day(20);
        let owner = RiskSelect {
            owner: Some(" CSM@Example.com".into()),
            ..RiskSelect::default()
        };
        assert_eq!(
            owner.read(&t, today),
            RiskRead {
                partitions: vec![keys::health_risk_owner_pk(&t, "csm@example.com")],
                filtered: false
            }
        );
        let owner_red = RiskSelect {
            bands: vec![Band::Red],
            ..owner.clone()
        };
        assert!(owner_red.read(&t, today).filtered);
        let all_bands = RiskSelect {
            bands: Band::ALL.to_vec(),
            ..owner
        };
        assert!(
            !all_bands.read(&t, today).filtered,
            "every band is no filter"
        );
        let week = RiskSelect {
            changed_since: Some(day(14)),
            ..RiskSelect::default()
        };
        let read = week.read(&t, today);
        assert_eq!(read.partitions.len(), 7, "14 to 20 November");
        assert_eq!(read.partitions[6], keys::health_risk_changed_pk(&t, today));
        assert!(!read.filtered);
        let plain = RiskSelect::default().read(&t, today);
        assert_eq!((plain.partitions.len(), plain.filtered), (12, false));
    }

    fn scored(owner: Option<&str>, score: f64, recent: &[(u32, f64, &str)]) -> HealthRecord {
        let mut r = record(score, if score < 45.0 { "red" } else { "green" }, recent);
        r.info.owner = owner.map(str::to_owned);
        r
    }

    #[test]
    fn a_new_owner_moves_the_entry_and_an_unchanged_slot_only_rewrites_it() {
        let t = TenantId::parse("t1").expect("a tenant");
        let before = scored(Some("a@example.com"), 40.0, &[(15, 70.0, "green")]);
        let after = scored(Some("B@example.com"), 40.0, &[(15, 70.0, "green")]);
        let moves = Save {
            record: &after,
            previous_slot: RiskSlot::of(&before),
        }
        .risk_moves(&t);
        let sk = keys::health_risk_sk(40.0, &after.account);
        assert_eq!(
            moves.delete,
            vec![(keys::health_risk_owner_pk(&t, "a@example.com"), sk.clone())]
        );
        assert_eq!(
            moves.put,
            vec![
                (keys::health_risk_pk(&t, Segment::Smb, "red"), sk.clone()),
                (keys::health_risk_owner_pk(&t, "b@example.com"), sk.clone()),
                (keys::health_risk_changed_pk(&t, day(20)), sk),
            ]
        );
        let same = Save {
            record: &after,
            previous_slot: RiskSlot::of(&after),
        }
        .risk_moves(&t);
        assert!(same.delete.is_empty() && same.put.len() == 3);
        let unowned = scored(None, 80.0, &[(15, 81.0, "green")]);
        let m = Save {
            record: &unowned,
            previous_slot: RiskSlot::of(&after),
        }
        .risk_moves(&t);
        assert_eq!((m.delete.len(), m.put.len()), (3, 1), "no owner, no change");
    }

    fn rows(keys: &[&str]) -> Vec<(String, RiskEntry)> {
        keys.iter()
            .map(|k| ((*k).to_owned(), entry(None, None)))
            .collect()
    }

    #[test]
    fn a_partition_out_of_budget_ends_the_page_where_it_stopped() {
        let full = PartRead {
            rows: rows(&["0100#a", "0200#b", "0300#c", "0400#d"]),
            end: PartEnd::Full,
        };
        let stopped = PartRead {
            rows: rows(&["0150#e"]),
            end: PartEnd::Budget("0250#f".into()),
        };
        let (page, next) = merge_risk(vec![full.clone(), stopped.clone()], 2);
        assert_eq!(page.len(), 2, "0100 and 0150");
        assert_eq!(next.as_deref(), Some("0150#e"));
        let (page, next) = merge_risk(vec![full.clone(), stopped], 3);
        assert_eq!(page.len(), 3, "0100, 0150 and 0200; 0300 waits");
        assert_eq!(
            next.as_deref(),
            Some("0250#f"),
            "on from where the budget ended"
        );
        let (page, next) = merge_risk(
            vec![PartRead {
                rows: rows(&[]),
                end: PartEnd::Budget("0250#f".into()),
            }],
            3,
        );
        assert!(page.is_empty());
        assert_eq!(next.as_deref(), Some("0250#f"), "a short page goes on");
        let (page, next) = merge_risk(vec![full], 5);
        assert_eq!((page.len(), next), (4, None), "all read");
    }
}
