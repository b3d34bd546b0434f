//! The ports: one trait per storage capability, and the errors and pages they share.
//! Adapters implement them in the `aws` (DynamoDB) and `memory` crates.

use crate::account::AccountProfile;
use crate::event::{MeterRule, TenantPolicy};
use crate::ids::{AccountId, MeterName, Segment, TenantId};
use crate::keys::Scope;
use async_trait::async_trait;

pub mod error;
pub use crate::rollup::RollupRow;
use chrono::NaiveDate;
pub use error::{Page, StoreError};

/// Tenants, keys and policies: what ingest and the API check on every request.
#[async_trait]
pub trait Directory: Send + Sync {
    /// What the key with this hash grants (revoked and expired keys included, so
    /// the caller can say why it refuses them).
    async fn key_grant(&self, key_hash: &str) -> Result<Option<crate::auth::KeyGrant>, StoreError>;
    async fn tenant_policy(&self, tenant: &TenantId) -> Result<Option<TenantPolicy>, StoreError>;
}

/// A tenant's API keys: issue, list, revoke, rotate (admin-scoped keys and the CLI).
#[async_trait]
pub trait KeyAdmin: Send + Sync {
    /// Issues a key; returns it (shown once; only its hash is stored) and its grant.
    /// Refused with `too_many_keys` when the tenant holds the most active keys allowed.
    async fn create_key(
        &self,
        tenant: &TenantId,
        new: &crate::auth::NewKey,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(String, crate::auth::KeyGrant), StoreError>;
    /// The tenant's keys, newest first.
    async fn list_keys(&self, tenant: &TenantId) -> Result<Vec<crate::auth::KeyGrant>, StoreError>;
    /// Revokes a key from `now` on; `None` when the tenant has no such key.
    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::auth::KeyGrant>, StoreError>;
    /// Makes a key expire at `at`; `None` when the tenant has no such key.
    async fn expire_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<crate::auth::KeyGrant>, StoreError>;

    /// Issues a successor with the same label, scopes and lifetime, and lets the old
    /// key work for `overlap_hours` more (never longer than it would have anyway).
    /// Returns the new key, its grant and the old key's grant.
    async fn rotate_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        overlap_hours: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<(String, crate::auth::KeyGrant, crate::auth::KeyGrant)>, StoreError> {
        let Some(old) = self
            .list_keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.key_id == key_id)
        else {
            return Ok(None);
        };
        if old.status(now) != "active" {
            return Err(StoreError::Taken {
                code: "key_not_active",
                message: format!(
                    "key {key_id} is {}; only an active key can be rotated",
                    old.status(now)
                ),
            });
        }
        let lifetime = old.expires_at.map(|e| {
            (e - old.created_at)
                .num_days()
                .clamp(1, i64::from(crate::auth::MAX_EXPIRY_DAYS)) as u32
        });
        let new = crate::auth::NewKey {
            label: old.label.clone(),
            scopes: old.scopes.clone(),
            expires_in_days: lifetime,
        };
        let (key, grant) = self.create_key(tenant, &new, now).await?;
        let until = now + chrono::Duration::hours(i64::from(overlap_hours));
        let until = old.expires_at.map_or(until, |e| e.min(until));
        let old = self.expire_key(tenant, key_id, until).await?.unwrap_or(old);
        Ok(Some((key, grant, old)))
    }
}

/// HubSpot portal (account) id -> tenant.
#[async_trait]
pub trait PortalDirectory: Send + Sync {
    async fn tenant_for_portal(&self, portal: u64) -> Result<Option<TenantId>, StoreError>;
    /// Records refused events of a portal no tenant claims (visible to operators).
    async fn record_unknown_portal(&self, portal: u64, events: usize) -> Result<(), StoreError>;
}

/// Which tenant receives a HubSpot portal's webhooks, managed by the tenant's admin
/// (`PUT/GET/DELETE /v1/hubspot/portals/{portal_id}`). A portal belongs to one tenant:
/// claiming one another tenant holds is refused (`StoreError::Taken`, code
/// `portal_taken`), and a tenant never sees or releases another tenant's portal.
#[async_trait]
pub trait PortalAdmin: Send + Sync {
    /// Maps `portal` to `tenant`; `false` when it already was (nothing changed).
    async fn claim_portal(&self, portal: u64, tenant: &TenantId) -> Result<bool, StoreError>;
    /// Whether `portal` is mapped to `tenant`.
    async fn owns_portal(&self, portal: u64, tenant: &TenantId) -> Result<bool, StoreError>;
    /// Unmaps `portal` if `tenant` holds it; `false` when it did not.
    async fn release_portal(&self, portal: u64, tenant: &TenantId) -> Result<bool, StoreError>;
}

/// Per-tenant HubSpot mapping rules (absent: the defaults apply).
#[async_trait]
pub trait MappingStore: Send + Sync {
    async fn get_mapping_rules(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Vec<crate::hubspot::mapping::MappingRule>>, StoreError>;
    async fn put_mapping_rules(
        &self,
        tenant: &TenantId,
        rules: &[crate::hubspot::mapping::MappingRule],
    ) -> Result<(), StoreError>;
    async fn get_profile_sync(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::hubspot::profile::ProfileSync>, StoreError>;
    async fn put_profile_sync(
        &self,
        tenant: &TenantId,
        sync: &crate::hubspot::profile::ProfileSync,
    ) -> Result<(), StoreError>;
}

fn encode_meter_cursor(meter: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(meter)
}

fn decode_meter_cursor(cursor: &str) -> Result<String, StoreError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|m| MeterName::parse(m).is_ok())
        .ok_or(StoreError::BadCursor)
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Stores a profile and keeps its HubSpot company link; returns the profile as
    /// stored (with the company's synced CRM properties merged in).
    async fn put_account(
        &self,
        tenant: &TenantId,
        profile: &AccountProfile,
    ) -> Result<AccountProfile, StoreError>;
    async fn get_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Option<AccountProfile>, StoreError>;
    async fn list_accounts(
        &self,
        tenant: &TenantId,
        segment: Option<Segment>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AccountProfile>, StoreError>;
}

#[async_trait]
pub trait UsageReader: Send + Sync {
    async fn read_rollups(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        from: NaiveDate,
        to: NaiveDate,
        meter: Option<&MeterName>,
    ) -> Result<Vec<RollupRow>, StoreError>;
}

#[async_trait]
pub trait DefinitionStore: Send + Sync {
    async fn put_definition(
        &self,
        tenant: &TenantId,
        def: &crate::definition::Definition,
    ) -> Result<(), StoreError>;
    async fn get_definition(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
    ) -> Result<Option<crate::definition::Definition>, StoreError>;
    /// Every definition (for the registry checks; `GET /v1/definitions` pages).
    async fn list_definitions(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::definition::Definition>, StoreError>;
    /// One page of definitions in meter order, after `cursor` (an opaque cursor this
    /// store returned as `next`). This default reads [`DefinitionStore::list_definitions`]
    /// and is for small in-memory stores; the DynamoDB adapter reads one page.
    async fn definitions_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<crate::definition::Definition>, StoreError> {
        let after = cursor.map(decode_meter_cursor).transpose()?;
        let mut defs = self.list_definitions(tenant).await?;
        defs.sort_by(|a, b| a.meter.as_str().cmp(b.meter.as_str()));
        let mut rest = defs
            .into_iter()
            .filter(|d| after.as_deref().is_none_or(|a| d.meter.as_str() > a));
        let items: Vec<_> = rest.by_ref().take(limit.max(1)).collect();
        let next = match (rest.next(), items.last()) {
            (Some(_), Some(last)) => Some(encode_meter_cursor(last.meter.as_str())),
            _ => None,
        };
        Ok(Page { items, next })
    }
    /// What happens to retired meters' events (`None`: the defaults).
    async fn governance_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::quarantine::PolicyRecord>, StoreError>;
    async fn put_governance_policy(
        &self,
        tenant: &TenantId,
        record: &crate::quarantine::PolicyRecord,
    ) -> Result<(), StoreError>;
}

impl From<&crate::definition::Definition> for MeterRule {
    fn from(d: &crate::definition::Definition) -> Self {
        MeterRule {
            meter: d.meter.clone(),
            unit: d.unit.clone(),
            status: d.status,
        }
    }
}

#[async_trait]
pub trait EntitlementStore: Send + Sync {
    async fn put_entitlement(
        &self,
        tenant: &TenantId,
        ent: &crate::entitlement::Entitlement,
    ) -> Result<(), StoreError>;
    async fn get_entitlement(
        &self,
        tenant: &TenantId,
        id: &crate::ids::EntitlementId,
    ) -> Result<Option<crate::entitlement::Entitlement>, StoreError>;
    async fn delete_entitlement(
        &self,
        tenant: &TenantId,
        ent: &crate::entitlement::Entitlement,
    ) -> Result<(), StoreError>;
    async fn list_entitlements(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Vec<crate::entitlement::Entitlement>, StoreError>;
}

/// Which "done once" marker: an alert raised by the rollup, or published by notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Raised,
    Published,
}

/// Result of claiming a once-only marker, ledger style: the owner (a chunk id or an
/// SQS message id) that claimed it first is the one that must finish the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerClaim {
    /// Claimed now by this owner.
    New,
    /// Claimed earlier by this same owner (`age` ago); `done` once its work was
    /// completed. Not done and recent means another delivery of the same owner may
    /// still be doing it: the caller should fail and retry later, not do it twice.
    Mine { done: bool, age: chrono::Duration },
    /// Claimed by someone else: not ours to do.
    Other,
}

#[async_trait]
pub trait MarkerStore: Send + Sync {
    async fn claim_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<MarkerClaim, StoreError>;
    async fn finish_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
    ) -> Result<(), StoreError>;
}

/// What claiming a legacy-signed HubSpot request found (docs/adr/0005).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClaim {
    /// First arrival: process it, then [`ReplayGuard::finish_request`].
    New,
    /// Processed before: acknowledge, do not queue again.
    Done,
    /// Claimed before but never finished (e.g. queuing failed): process it again; the
    /// ledger counts its events once.
    Unfinished,
}

/// Claims each legacy-signed (v1/v2) HubSpot request once: those signatures carry no
/// time, so a captured request verifies forever.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Claims `key` (a digest of what the signature covers) until `expires_at` (epoch
    /// seconds, the TTL).
    async fn claim_request(&self, key: &str, expires_at: i64) -> Result<RequestClaim, StoreError>;
    async fn finish_request(&self, key: &str) -> Result<(), StoreError>;
}

/// Alert routing state for notify: the tenant's policy, cooldown clocks and the
/// digest buckets that hold alerts until their period ends.
#[async_trait]
pub trait DigestStore: Send + Sync {
    async fn alert_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::digest::AlertPolicy>, StoreError>;
    async fn put_alert_policy(
        &self,
        tenant: &TenantId,
        policy: &crate::digest::AlertPolicy,
    ) -> Result<(), StoreError>;
    /// When an alert of this cooldown scope was last published.
    async fn last_published(
        &self,
        tenant: &TenantId,
        scope: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError>;
    async fn record_published(
        &self,
        tenant: &TenantId,
        scope: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    /// Adds an alert to a digest (idempotent per alert key) and marks the digest due
    /// at its end.
    async fn hold_for_digest(
        &self,
        bucket: &crate::digest::DigestBucket,
        alert: &crate::alert::Alert,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// Digests whose period has ended by `now` and that were not sent yet.
    async fn due_digests(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::digest::DigestBucket>, StoreError>;
    async fn digest_entries(
        &self,
        bucket: &crate::digest::DigestBucket,
    ) -> Result<Vec<(crate::alert::Alert, String)>, StoreError>;
    /// Marks a digest sent (its entries expire with their TTL).
    async fn close_digest(&self, bucket: &crate::digest::DigestBucket) -> Result<(), StoreError>;
}

/// The recent alerts of each account, for the account page and
/// `GET /v1/accounts/{account}/alerts`: notify records every alert it delivers
/// (published or held for a digest). Each account keeps its newest
/// [`crate::alert::RECENT_ALERTS_KEPT`] alerts, for [`crate::alert::ALERT_HISTORY_DAYS`]
/// days (a TTL); older ones are neither kept nor answered.
#[async_trait]
pub trait AlertHistory: Send + Sync {
    /// Records an alert under its account (again: replaces it, by raised time and key).
    async fn record_alert(&self, alert: &crate::alert::Alert) -> Result<(), StoreError>;
    /// The account's newest alerts still within the retention at `now`, newest first,
    /// at most `limit`.
    async fn recent_alerts(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        limit: usize,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::alert::Alert>, StoreError>;
}

/// Where secrets are read: defined with the secrets it reads ([`crate::secrets`]).
pub use crate::secrets::SecretSource;
