//! The small ports in memory: "done once" markers, entitlements, alert policies and
//! digests, and the directory of keys and tenant policies. Each behaves as its
//! DynamoDB adapter does (the behaviour suites in [`crate::suite`] run against both).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use domain::alert::Alert;
use domain::auth::KeyGrant;
use domain::digest::{AlertPolicy, DigestBucket};
use domain::entitlement::Entitlement;
use domain::event::TenantPolicy;
use domain::health::bands::{BandSummaryStore, DailyBands};
use domain::ids::{AccountId, EntitlementId, TenantId};
use domain::ports::{
    AlertHistory, DigestStore, Directory, EntitlementStore, MarkerClaim, MarkerKind, MarkerStore,
    StoreError,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>, StoreError> {
    m.lock().map_err(|_| StoreError::Service {
        op: "memory",
        message: "a previous holder panicked".into(),
    })
}

fn kind_name(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::Raised => "raised",
        MarkerKind::Published => "published",
    }
}

struct Marker {
    owner: String,
    done: bool,
    claimed_at: DateTime<Utc>,
}

/// [`MarkerStore`] in memory: one marker per (tenant, kind, key).
#[derive(Default)]
pub struct MemoryMarkers {
    markers: Mutex<HashMap<(TenantId, &'static str, String), Marker>>,
}

impl MemoryMarkers {
    /// Moves every claim `by` into the past (tests of stale claims).
    pub fn age_claims(&self, by: Duration) {
        if let Ok(mut m) = self.markers.lock() {
            for marker in m.values_mut() {
                marker.claimed_at -= by;
            }
        }
    }
}

#[async_trait]
impl MarkerStore for MemoryMarkers {
    async fn claim_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
        owner: &str,
        _expires_at: i64,
    ) -> Result<MarkerClaim, StoreError> {
        let mut m = lock(&self.markers)?;
        let k = (tenant.clone(), kind_name(kind), key.to_owned());
        Ok(match m.get(&k) {
            None => {
                m.insert(
                    k,
                    Marker {
                        owner: owner.to_owned(),
                        done: false,
                        claimed_at: Utc::now(),
                    },
                );
                MarkerClaim::New
            }
            Some(existing) if existing.owner == owner => MarkerClaim::Mine {
                done: existing.done,
                age: Utc::now() - existing.claimed_at,
            },
            Some(_) => MarkerClaim::Other,
        })
    }

    async fn finish_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
    ) -> Result<(), StoreError> {
        let k = (tenant.clone(), kind_name(kind), key.to_owned());
        if let Some(marker) = lock(&self.markers)?.get_mut(&k) {
            marker.done = true;
        }
        Ok(())
    }
}

/// [`EntitlementStore`] in memory: entitlements per account, found by id through a
/// pointer to the account that last stored it (as the DynamoDB layout does).
#[derive(Default)]
pub struct MemoryEntitlements {
    pointers: Mutex<HashMap<(TenantId, EntitlementId), AccountId>>,
    items: Mutex<BTreeMap<(TenantId, AccountId, EntitlementId), Entitlement>>,
}

#[async_trait]
impl EntitlementStore for MemoryEntitlements {
    async fn put_entitlement(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<(), StoreError> {
        lock(&self.pointers)?.insert((tenant.clone(), ent.id.clone()), ent.account.clone());
        lock(&self.items)?.insert(
            (tenant.clone(), ent.account.clone(), ent.id.clone()),
            ent.clone(),
        );
        Ok(())
    }

    async fn get_entitlement(
        &self,
        tenant: &TenantId,
        id: &EntitlementId,
    ) -> Result<Option<Entitlement>, StoreError> {
        let Some(account) = lock(&self.pointers)?
            .get(&(tenant.clone(), id.clone()))
            .cloned()
        else {
            return Ok(None);
        };
        Ok(lock(&self.items)?
            .get(&(tenant.clone(), account, id.clone()))
            .cloned())
    }

    async fn delete_entitlement(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<(), StoreError> {
        lock(&self.pointers)?.remove(&(tenant.clone(), ent.id.clone()));
        lock(&self.items)?.remove(&(tenant.clone(), ent.account.clone(), ent.id.clone()));
        Ok(())
    }

    async fn list_entitlements(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Vec<Entitlement>, StoreError> {
        Ok(lock(&self.items)?
            .iter()
            .filter(|((t, a, _), _)| t == tenant && a == account)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

/// [`DigestStore`] in memory: alert policies, cooldowns, held alerts per digest
/// bucket (one entry per alert key: holding it again replaces it) and the buckets
/// not yet sent.
#[derive(Default)]
pub struct MemoryDigests {
    policies: Mutex<HashMap<TenantId, AlertPolicy>>,
    published: Mutex<HashMap<(TenantId, String), DateTime<Utc>>>,
    entries: Mutex<HashMap<String, HeldAlerts>>,
    open: Mutex<BTreeMap<String, DigestBucket>>,
}

/// A bucket's held alerts by alert key, each with the reason it was held.
type HeldAlerts = BTreeMap<String, (Alert, String)>;

fn bucket_id(b: &DigestBucket) -> String {
    format!("{}#{}", b.tenant, b.key())
}

impl MemoryDigests {
    /// How many alerts are held, across every bucket (sent or not).
    pub fn held(&self) -> usize {
        self.entries
            .lock()
            .map(|e| e.values().map(BTreeMap::len).sum())
            .unwrap_or(0)
    }
}

#[async_trait]
impl DigestStore for MemoryDigests {
    async fn alert_policy(&self, tenant: &TenantId) -> Result<Option<AlertPolicy>, StoreError> {
        Ok(lock(&self.policies)?.get(tenant).cloned())
    }

    async fn put_alert_policy(
        &self,
        tenant: &TenantId,
        policy: &AlertPolicy,
    ) -> Result<(), StoreError> {
        lock(&self.policies)?.insert(tenant.clone(), policy.clone());
        Ok(())
    }

    async fn last_published(
        &self,
        tenant: &TenantId,
        scope: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(lock(&self.published)?
            .get(&(tenant.clone(), scope.to_owned()))
            .copied())
    }

    async fn record_published(
        &self,
        tenant: &TenantId,
        scope: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        lock(&self.published)?.insert((tenant.clone(), scope.to_owned()), at);
        Ok(())
    }

    async fn hold_for_digest(
        &self,
        bucket: &DigestBucket,
        alert: &Alert,
        reason: &str,
    ) -> Result<(), StoreError> {
        let id = bucket_id(bucket);
        lock(&self.entries)?
            .entry(id.clone())
            .or_default()
            .insert(alert.key.clone(), (alert.clone(), reason.to_owned()));
        lock(&self.open)?.insert(id, bucket.clone());
        Ok(())
    }

    async fn due_digests(&self, now: DateTime<Utc>) -> Result<Vec<DigestBucket>, StoreError> {
        Ok(lock(&self.open)?
            .values()
            .filter(|b| b.due(now))
            .cloned()
            .collect())
    }

    async fn digest_entries(
        &self,
        bucket: &DigestBucket,
    ) -> Result<Vec<(Alert, String)>, StoreError> {
        Ok(lock(&self.entries)?
            .get(&bucket_id(bucket))
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn close_digest(&self, bucket: &DigestBucket) -> Result<(), StoreError> {
        lock(&self.open)?.remove(&bucket_id(bucket));
        Ok(())
    }
}

/// [`Directory`] in memory: keys by their hash and tenant policies, set up by the
/// test or benchmark that uses it.
#[derive(Default)]
pub struct MemoryDirectory {
    keys: Mutex<HashMap<String, KeyGrant>>,
    policies: Mutex<HashMap<TenantId, TenantPolicy>>,
}

impl MemoryDirectory {
    pub fn with_policy(self, tenant: &TenantId, policy: TenantPolicy) -> Self {
        if let Ok(mut p) = self.policies.lock() {
            p.insert(tenant.clone(), policy);
        }
        self
    }
    pub fn with_key(self, key_hash: &str, grant: KeyGrant) -> Self {
        if let Ok(mut k) = self.keys.lock() {
            k.insert(key_hash.to_owned(), grant);
        }
        self
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn key_grant(&self, key_hash: &str) -> Result<Option<KeyGrant>, StoreError> {
        Ok(lock(&self.keys)?.get(key_hash).cloned())
    }
    async fn tenant_policy(&self, tenant: &TenantId) -> Result<Option<TenantPolicy>, StoreError> {
        Ok(lock(&self.policies)?.get(tenant).cloned())
    }
}

/// Each account's recent alerts, by sort key (raised time, then alert key), trimmed to
/// the newest [`domain::alert::RECENT_ALERTS_KEPT`] as the DynamoDB adapter trims them.
#[derive(Default)]
pub struct MemoryAlertHistory {
    accounts: Mutex<HashMap<(TenantId, AccountId), BTreeMap<String, Alert>>>,
}

#[async_trait]
impl AlertHistory for MemoryAlertHistory {
    async fn record_alert(&self, alert: &Alert) -> Result<(), StoreError> {
        let mut accounts = lock(&self.accounts)?;
        let kept = accounts
            .entry((alert.tenant.clone(), alert.account.clone()))
            .or_default();
        kept.insert(domain::keys::account_alert_sk(alert), alert.clone());
        while kept.len() > domain::alert::RECENT_ALERTS_KEPT {
            kept.pop_first();
        }
        Ok(())
    }

    async fn recent_alerts(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<Vec<Alert>, StoreError> {
        let accounts = lock(&self.accounts)?;
        Ok(accounts
            .get(&(tenant.clone(), account.clone()))
            .into_iter()
            .flat_map(|kept| kept.values().rev())
            .filter(|a| a.kept_at(now))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Each tenant's daily band summaries by day (a day's summary replaces the last).
#[derive(Default)]
pub struct MemoryBandSummaries {
    days: Mutex<HashMap<TenantId, BTreeMap<chrono::NaiveDate, DailyBands>>>,
}

#[async_trait]
impl BandSummaryStore for MemoryBandSummaries {
    async fn put_band_summary(&self, t: &TenantId, day: &DailyBands) -> Result<(), StoreError> {
        lock(&self.days)?
            .entry(t.clone())
            .or_default()
            .insert(day.as_of, day.clone());
        Ok(())
    }

    async fn band_summaries(
        &self,
        t: &TenantId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<DailyBands>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(lock(&self.days)?
            .get(t)
            .map(|d| d.range(from..=to).map(|(_, b)| b.clone()).collect())
            .unwrap_or_default())
    }
}
