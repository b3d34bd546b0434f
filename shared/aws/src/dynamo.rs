//! The DynamoDB adapter: one table, keys from [`domain::keys`], items via serde_dynamo.
//! SDK errors are classified here once (conditional failure, throttling, conflict).

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use domain::account::AccountProfile;
use domain::definition::Definition;
use domain::entitlement::Entitlement;
use domain::event::{MeterRule, TenantPolicy, UsageEvent};
use domain::ids::EntitlementId;
use domain::ids::{AccountId, MeterName, Segment, Source, TenantId};
use domain::keys::{self, Scope};
use domain::pipeline::{ChunkJournal, Claim, LedgerEntry, LedgerStore, PartOutcome, PartRef};
use domain::ports::{
    AccountStore, DefinitionStore, Directory, EntitlementStore, MarkerClaim, MarkerKind,
    MarkerStore, Page, RollupRow, StoreError, UsageReader,
};
use domain::rollup::{Bucket, RollupDelta, RollupKey};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod health;
mod quarantine;

type Item = HashMap<String, AttributeValue>;

/// Write request units and request counts, computed from the items we send using
/// DynamoDB's published sizing rules (see docs/adr/0002 and `item_size`).
#[derive(Debug, Default)]
pub struct WriteMeter {
    /// Write request units, as DynamoDB bills them (transactional writes count twice).
    pub write_units: AtomicU64,
    pub requests: AtomicU64,
}

impl WriteMeter {
    fn add(&self, units: u64) {
        self.write_units.fetch_add(units, Ordering::Relaxed);
    }
    fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.write_units.load(Ordering::Relaxed),
            self.requests.load(Ordering::Relaxed),
        )
    }
}

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Ledger records live in their own table (ADR 0001): write-once, TTL-expired,
    /// never read on request paths, and kept out of the rollup transactions.
    ledger_table: String,
    pub meter: Arc<WriteMeter>,
    /// Drift sample: events of one account in this many are copied (0: none).
    pub audit_sample: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("tenant '{0}' already exists")]
    TenantExists(TenantId),
    #[error("tenant '{0}' does not exist")]
    NoSuchTenant(TenantId),
    #[error("could not generate a key: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn svc<E: ProvideErrorMetadata + std::fmt::Debug>(
    op: &'static str,
    e: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError {
    let code = e.code().unwrap_or_default().to_owned();
    let message = e
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{e:?}"));
    match code.as_str() {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "RequestLimitExceeded" => StoreError::Throttled(format!("{op}: {message}")),
        "TransactionConflictException" | "TransactionInProgressException" => {
            StoreError::Conflict(format!("{op}: {message}"))
        }
        _ if e
            .raw_response()
            .is_some_and(|r| r.status().is_server_error()) =>
        {
            StoreError::Unavailable(format!("{op}: {code} {message}"))
        }
        _ => StoreError::Service {
            op,
            message: format!("{code} {message}"),
        },
    }
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[derive(Serialize, Deserialize)]
struct TenantItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    name: String,
    backfill_days: u32,
    created_at: DateTime<Utc>,
}

/// A key's lookup item (by hash) and its listing item (by key id, in the tenant's
/// key partition) hold the same grant; the listing item also names the hash.
#[derive(Serialize, Deserialize)]
struct ApiKeyItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    label: String,
    created_at: DateTime<Utc>,
    /// Absent on keys stored before scopes existed: they keep full access.
    #[serde(default = "domain::auth::legacy_scopes")]
    scopes: Vec<domain::auth::KeyScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyItem {
    fn grant(self, key_hash: &str) -> domain::auth::KeyGrant {
        domain::auth::KeyGrant {
            tenant: self.tenant,
            key_id: self
                .key_id
                .unwrap_or_else(|| domain::auth::key_id(key_hash)),
            label: self.label,
            scopes: self.scopes,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct DataItem<T> {
    pk: String,
    sk: String,
    data: T,
}

#[derive(Serialize)]
struct LedgerItem<'a> {
    pk: String,
    sk: &'static str,
    tenant: &'a TenantId,
    source: Source,
    chunk: &'a str,
    pos: u32,
    segment: Segment,
    received_at: DateTime<Utc>,
    expires_at: i64,
    event: &'a UsageEvent,
}

#[derive(Deserialize)]
struct LedgerClaimView {
    chunk: String,
    pos: u32,
    segment: Segment,
}

/// Approximate stored size of an item per DynamoDB's sizing rules.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(num) => number_size(num),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::L(l) => 3 + l.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::Ss(l) => l.iter().map(String::len).sum(),
        AttributeValue::Ns(l) => l.iter().map(|x| number_size(x)).sum(),
        _ => 0,
    }
}

fn number_size(num: &str) -> usize {
    let digits = num.trim_start_matches('-').replace('.', "");
    let significant = digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        .max(1);
    significant.div_ceil(2) + 1
}

/// Write units of one item write of `size` bytes.
pub fn write_units(size: usize) -> u64 {
    size.div_ceil(1024).max(1) as u64
}

/// Largest a day-rollup item can grow: all 24 hour buckets at 15 significant digits.
pub fn max_rollup_item_size(pk: &str, sk: &str) -> usize {
    let wide = number_size("123456789012345.123456");
    pk.len() + 2 + sk.len() + 2 + 2 * (1 + wide) + 48 * (3 + wide)
}

fn hour_names(h: u8) -> (String, String) {
    (format!("q{h:02}"), format!("n{h:02}"))
}

fn dec(item: &Item, name: &str) -> Decimal {
    match item.get(name) {
        Some(AttributeValue::N(v)) => Decimal::from_str(v)
            .or_else(|_| Decimal::from_scientific(v))
            .unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

fn int(item: &Item, name: &str) -> i64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or_default(),
        _ => 0,
    }
}

fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let table = table.into();
        Self {
            client,
            ledger_table: table.clone(),
            table,
            meter: Arc::default(),
            audit_sample: audit::DEFAULT_AUDIT_SAMPLE,
        }
    }

    /// Keeps ledger records in `ledger_table` instead of the main table.
    pub fn with_ledger_table(mut self, ledger_table: impl Into<String>) -> Self {
        self.ledger_table = ledger_table.into();
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        self.get_from(&self.table, op, pk, sk, consistent).await
    }

    async fn get_from(
        &self,
        table: &str,
        op: &'static str,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| svc(op, e))?;
        Ok(out.item)
    }

    async fn put(
        &self,
        op: &'static str,
        item: Item,
        condition: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.put_if(op, item, condition, &[]).await
    }

    /// A put with a condition that uses expression values; `Ok(false)` when the
    /// condition did not hold.
    async fn put_if(
        &self,
        op: &'static str,
        item: Item,
        condition: Option<&str>,
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let size = item_size(&item);
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        if let Some(c) = condition {
            req = req.condition_expression(c);
        }
        for (name, value) in values {
            req = req.expression_attribute_values(*name, value.clone());
        }
        self.meter.request();
        self.meter.add(write_units(size));
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(svc(op, e)),
        }
    }

    /// Queries the items of one partition whose sort key starts with `prefix` (all of
    /// them for an empty prefix) and decodes each into `T`.
    async fn query_prefix<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        let range = (!prefix.is_empty()).then(|| (prefix.to_owned(), format!("{prefix}~")));
        self.query_all(op, pk.clone(), range, true)
            .await?
            .into_iter()
            .map(|i| serde_dynamo::from_item::<_, T>(i).map_err(|e| corrupt(&pk, e)))
            .collect()
    }

    /// Queries one partition (optionally a sort-key range), following pagination.
    /// Rollups and entitlements are read consistently: threshold checks must see the
    /// writes committed just before them (docs/adr/0004).
    async fn query_all(
        &self,
        op: &'static str,
        pk: String,
        range: Option<(String, String)>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_pages(op, &self.table, pk, range, consistent, true, None)
            .await
    }

    /// Queries one partition of `table` (optionally a sort-key range), following
    /// pagination until the end or until at least `limit` items are read.
    #[allow(clippy::too_many_arguments)]
    async fn query_pages(
        &self,
        op: &'static str,
        table: &str,
        pk: String,
        range: Option<(String, String)>,
        consistent: bool,
        forward: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(table)
                .consistent_read(consistent)
                .scan_index_forward(forward)
                .set_limit(limit)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            req = match &range {
                Some((lo, hi)) => req
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone())),
                None => req.key_condition_expression("pk = :pk"),
            };
            let page = req.send().await.map_err(|e| svc(op, e))?;
            out.extend(page.items.unwrap_or_default());
            if limit.is_some_and(|l| out.len() >= l as usize) {
                return Ok(out);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// Creates a tenant (fails if it exists). `backfill` is checked against the
    /// ledger's retention by [`domain::horizon::Horizon::parse`].
    pub async fn create_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        backfill: domain::horizon::Horizon,
    ) -> Result<(), AdminError> {
        let item = TenantItem {
            pk: keys::tenant_pk(tenant),
            sk: keys::PROFILE_SK.into(),
            tenant: tenant.clone(),
            name: name.to_owned(),
            backfill_days: backfill.as_days(),
            created_at: Utc::now(),
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("tenant", e))?;
        if self
            .put("create_tenant", item, Some("attribute_not_exists(pk)"))
            .await?
        {
            self.register_tenant(tenant).await?;
            Ok(())
        } else {
            // Re-running a create finishes one whose registration failed, and enrols
            // tenants created before the registry existed.
            self.register_tenant(tenant).await?;
            Err(AdminError::TenantExists(tenant.clone()))
        }
    }

    /// One-off migration: enrols every tenant profile in the table into the tenant
    /// registry the scheduled jobs read. The only Scan in the code base (filtered to
    /// tenant profiles, projected to their ids); safe to repeat.
    pub async fn register_all_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut start: Option<Item> = None;
        let mut found = Vec::new();
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :p AND begins_with(pk, :t)")
                .expression_attribute_values(":p", s(keys::PROFILE_SK))
                .expression_attribute_values(":t", s("TENANT#"))
                .projection_expression("tenant")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| svc("scan_tenants", e))?;
            for item in page.items.unwrap_or_default() {
                if let Some(t) = str_attr(&item, "tenant").and_then(|t| TenantId::parse(t).ok()) {
                    self.register_tenant(&t).await?;
                    found.push(t);
                }
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        found.sort();
        Ok(found)
    }

    pub async fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        Ok(self
            .get(
                "get_tenant",
                keys::tenant_pk(tenant),
                keys::PROFILE_SK,
                true,
            )
            .await?
            .is_some())
    }

    /// Issues a new admin-scoped API key for a tenant; returns the key (shown once).
    pub async fn create_api_key(
        &self,
        tenant: &TenantId,
        label: &str,
    ) -> Result<String, AdminError> {
        let new = domain::auth::NewKey {
            label: label.to_owned(),
            scopes: vec![domain::auth::KeyScope::Admin],
            expires_in_days: None,
        };
        self.create_scoped_key(tenant, &new).await
    }

    /// Issues a new API key with the given scopes and lifetime (shown once).
    pub async fn create_scoped_key(
        &self,
        tenant: &TenantId,
        new: &domain::auth::NewKey,
    ) -> Result<String, AdminError> {
        if !self.tenant_exists(tenant).await? {
            return Err(AdminError::NoSuchTenant(tenant.clone()));
        }
        Ok(
            domain::ports::KeyAdmin::create_key(self, tenant, new, Utc::now())
                .await?
                .0,
        )
    }

    /// Stores the hash of a caller-chosen, admin-scoped key (`DEV_API_KEY` locally).
    pub async fn register_api_key(
        &self,
        tenant: &TenantId,
        key: &str,
        label: &str,
    ) -> Result<(), AdminError> {
        if !self.tenant_exists(tenant).await? {
            return Err(AdminError::NoSuchTenant(tenant.clone()));
        }
        let new = domain::auth::NewKey {
            label: label.to_owned(),
            scopes: vec![domain::auth::KeyScope::Admin],
            expires_in_days: None,
        };
        self.store_key(tenant, key, &new, Utc::now()).await?;
        Ok(())
    }

    /// Writes a key's listing item, then its lookup item (so every usable key is
    /// listed, and can be revoked).
    async fn store_key(
        &self,
        tenant: &TenantId,
        key: &str,
        new: &domain::auth::NewKey,
        now: DateTime<Utc>,
    ) -> Result<domain::auth::KeyGrant, StoreError> {
        let hash = domain::auth::hash_key(key);
        let key_id = domain::auth::key_id(&hash);
        let expires_at = new
            .expires_in_days
            .map(|d| now + chrono::Duration::days(i64::from(d)));
        let item = |pk: String, sk: String, key_hash: Option<String>| ApiKeyItem {
            pk,
            sk,
            tenant: tenant.clone(),
            label: new.label.clone(),
            created_at: now,
            scopes: new.scopes.clone(),
            key_id: Some(key_id.clone()),
            key_hash,
            expires_at,
            revoked_at: None,
        };
        let listing = item(
            keys::api_keys_pk(tenant),
            keys::api_key_listing_sk(&key_id),
            Some(hash.clone()),
        );
        let lookup = item(keys::api_key_pk(&hash), keys::API_KEY_SK.into(), None);
        let listing = serde_dynamo::to_item(listing).map_err(|e| corrupt("api key", e))?;
        self.put("list_api_key", listing, None).await?;
        let lookup = serde_dynamo::to_item(lookup).map_err(|e| corrupt("api key", e))?;
        self.put("register_api_key", lookup, None).await?;
        Ok(domain::auth::KeyGrant {
            tenant: tenant.clone(),
            key_id,
            label: new.label.clone(),
            scopes: new.scopes.clone(),
            created_at: now,
            expires_at,
            revoked_at: None,
        })
    }

    /// Sets one attribute of a key on both its items; `None` when the tenant has no
    /// such key.
    async fn update_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        attr: &'static str,
        at: DateTime<Utc>,
    ) -> Result<Option<domain::auth::KeyGrant>, StoreError> {
        let pk = keys::api_keys_pk(tenant);
        let sk = keys::api_key_listing_sk(key_id);
        let Some(item) = self
            .get("get_api_key_listing", pk.clone(), &sk, true)
            .await?
        else {
            return Ok(None);
        };
        let listing: ApiKeyItem = serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
        let Some(hash) = listing.key_hash.clone() else {
            return Err(corrupt(&pk, "key listing without its hash"));
        };
        let value = s(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        for (pk, sk) in [
            (keys::api_key_pk(&hash), keys::API_KEY_SK.to_owned()),
            (pk, sk),
        ] {
            self.set_attribute(
                "update_api_key",
                pk,
                sk,
                attr,
                value.clone(),
                Existing::Required,
            )
            .await?;
        }
        let mut grant = listing.grant(&hash);
        match attr {
            "revoked_at" => grant.revoked_at = Some(at),
            _ => grant.expires_at = Some(at),
        }
        Ok(Some(grant))
    }
}

#[async_trait]
impl domain::ports::KeyAdmin for DynamoStore {
    async fn create_key(
        &self,
        tenant: &TenantId,
        new: &domain::auth::NewKey,
        now: DateTime<Utc>,
    ) -> Result<(String, domain::auth::KeyGrant), StoreError> {
        let active = self
            .list_keys(tenant)
            .await?
            .iter()
            .filter(|k| k.status(now) == "active")
            .count();
        if active >= domain::auth::MAX_KEYS_PER_TENANT {
            return Err(StoreError::Taken {
                code: "too_many_keys",
                message: format!(
                    "a tenant holds at most {} active keys; revoke one first",
                    domain::auth::MAX_KEYS_PER_TENANT
                ),
            });
        }
        let key = domain::auth::generate_key().map_err(|e| StoreError::Service {
            op: "generate_key",
            message: e.to_string(),
        })?;
        let grant = self.store_key(tenant, &key, new, now).await?;
        Ok((key, grant))
    }

    async fn list_keys(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<domain::auth::KeyGrant>, StoreError> {
        let items: Vec<ApiKeyItem> = self
            .query_prefix(
                "list_api_keys",
                keys::api_keys_pk(tenant),
                keys::API_KEY_LISTING_PREFIX,
            )
            .await?;
        let mut out: Vec<_> = items
            .into_iter()
            .map(|i| {
                let hash = i.key_hash.clone().unwrap_or_default();
                i.grant(&hash)
            })
            .collect();
        out.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        Ok(out)
    }

    async fn revoke_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<domain::auth::KeyGrant>, StoreError> {
        self.update_key(tenant, key_id, "revoked_at", now).await
    }

    async fn expire_key(
        &self,
        tenant: &TenantId,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<domain::auth::KeyGrant>, StoreError> {
        self.update_key(tenant, key_id, "expires_at", at).await
    }
}

#[async_trait]
impl Directory for DynamoStore {
    async fn key_grant(
        &self,
        key_hash: &str,
    ) -> Result<Option<domain::auth::KeyGrant>, StoreError> {
        let pk = keys::api_key_pk(key_hash);
        match self
            .get("get_api_key", pk.clone(), keys::API_KEY_SK, false)
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let k: ApiKeyItem = serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(k.grant(key_hash)))
            }
        }
    }

    async fn tenant_policy(&self, tenant: &TenantId) -> Result<Option<TenantPolicy>, StoreError> {
        let pk = keys::tenant_pk(tenant);
        let items = self
            .query_all("tenant_policy", pk.clone(), None, false)
            .await?;
        let mut policy: Option<TenantPolicy> = None;
        let mut meters = HashMap::new();
        let mut defs = Vec::new();
        let mut choice = domain::quarantine::GovernancePolicy::default();
        for item in items {
            match str_attr(&item, "sk") {
                Some(keys::PROFILE_SK) => {
                    let t: TenantItem =
                        serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                    policy = Some(TenantPolicy {
                        backfill_days: t.backfill_days,
                        ..Default::default()
                    });
                }
                Some(sk) if sk.starts_with(keys::DEFINITION_PREFIX) => {
                    let d: DataItem<Definition> =
                        serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                    meters.insert(d.data.meter.clone(), MeterRule::from(&d.data));
                    defs.push(d.data);
                }
                Some(keys::GOVERNANCE_POLICY_SK) => {
                    let p: DataItem<domain::quarantine::PolicyRecord> =
                        serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                    choice = p.data.policy;
                }
                _ => {}
            }
        }
        let mut governance = domain::governance::PolicyRules::from_definitions(&defs);
        governance.policy = choice;
        Ok(policy.map(|p| TenantPolicy {
            meters,
            governance,
            ..p
        }))
    }
}

#[async_trait]
impl DefinitionStore for DynamoStore {
    async fn put_definition(&self, tenant: &TenantId, def: &Definition) -> Result<(), StoreError> {
        let item = DataItem {
            pk: keys::tenant_pk(tenant),
            sk: keys::definition_sk(&def.meter),
            data: def,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("definition", e))?;
        self.put("put_definition", item, None).await.map(|_| ())
    }

    async fn get_definition(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
    ) -> Result<Option<Definition>, StoreError> {
        let pk = keys::tenant_pk(tenant);
        match self
            .get(
                "get_definition",
                pk.clone(),
                &keys::definition_sk(meter),
                true,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let d: DataItem<Definition> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(d.data))
            }
        }
    }

    async fn list_definitions(&self, tenant: &TenantId) -> Result<Vec<Definition>, StoreError> {
        // Only the definitions' sort keys, not the whole tenant partition.
        self.query_data(
            "list_definitions",
            keys::tenant_pk(tenant),
            keys::DEFINITION_PREFIX,
        )
        .await
    }

    async fn definitions_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Definition>, StoreError> {
        let prefix = keys::DEFINITION_PREFIX;
        let page = self
            .query_items_page(
                "definitions_page",
                keys::tenant_pk(tenant),
                PageRange {
                    cursor_prefix: prefix,
                    sk: Some((prefix.to_owned(), format!("{prefix}~"))),
                    forward: true,
                },
                limit,
                cursor,
                false,
                |req| req,
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|i| from_data(i, "definition"))
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    async fn governance_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<domain::quarantine::PolicyRecord>, StoreError> {
        self.get_data(
            "governance_policy",
            keys::tenant_pk(tenant),
            keys::GOVERNANCE_POLICY_SK,
            true,
        )
        .await
    }

    async fn put_governance_policy(
        &self,
        tenant: &TenantId,
        record: &domain::quarantine::PolicyRecord,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_governance_policy",
            keys::tenant_pk(tenant),
            keys::GOVERNANCE_POLICY_SK.to_owned(),
            record,
        )
        .await
    }
}

impl DynamoStore {
    /// BatchWriteItem in requests of 25, retrying unprocessed items.
    async fn batch_write(
        &self,
        op: &'static str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut left = chunk.to_vec();
            let mut round = 0u64;
            while !left.is_empty() {
                round += 1;
                for w in &left {
                    if let Some(p) = w.put_request() {
                        self.meter.add(write_units(item_size(p.item())));
                    } else {
                        self.meter.add(1);
                    }
                }
                self.meter.request();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(self.table.clone(), std::mem::take(&mut left))
                    .send()
                    .await
                    .map_err(|e| svc(op, e))?;
                if let Some(rest) = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|r| !r.is_empty())
                {
                    if round > 8 {
                        return Err(StoreError::Throttled(format!("{op}: unprocessed items")));
                    }
                    left = rest;
                    tokio::time::sleep(std::time::Duration::from_millis(25 * round)).await;
                }
            }
        }
        Ok(())
    }
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn put_req(item: Item) -> Result<WriteRequest, StoreError> {
    let p = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| corrupt("put request", e))?;
    Ok(WriteRequest::builder().put_request(p).build())
}

fn delete_req(pk: String, sk: String) -> Result<WriteRequest, StoreError> {
    let d = DeleteRequest::builder()
        .set_key(Some(key(pk, sk)))
        .build()
        .map_err(|e| corrupt("delete request", e))?;
    Ok(WriteRequest::builder().delete_request(d).build())
}

impl DynamoStore {
    /// One page of a partition's `data` items: up to `limit`, from after the cursor
    /// (a sort key starting with `cursor_prefix`); `next` when more may follow.
    #[allow(clippy::too_many_arguments)]
    async fn query_page<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        cursor_prefix: &str,
        limit: usize,
        cursor: Option<&str>,
        consistent: bool,
        customize: impl Fn(
            aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Page<T>, StoreError> {
        let page = self
            .query_items_page(
                op,
                pk.clone(),
                PageRange {
                    cursor_prefix,
                    sk: None,
                    forward: true,
                },
                limit,
                cursor,
                consistent,
                customize,
            )
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, DataItem<T>>(item)
                    .map(|d| d.data)
                    .map_err(|e| corrupt(&pk, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// One page of a partition's items (optionally only sort keys in `range.sk`,
    /// inclusive): up to `limit`, from after the cursor; `next` when more may follow.
    /// A cursor is the base64 of the last sort key returned; one that does not start
    /// with `range.cursor_prefix` or lies outside `range.sk` is refused (`BadCursor`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn query_items_page(
        &self,
        op: &'static str,
        pk: String,
        range: PageRange<'_>,
        limit: usize,
        cursor: Option<&str>,
        consistent: bool,
        customize: impl Fn(
            aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Page<Item>, StoreError> {
        let limit = limit.max(1);
        let mut start: Option<Item> =
            match cursor {
                None => None,
                Some(c) => {
                    let sk = decode_cursor(c, range.cursor_prefix)?;
                    if range.sk.as_ref().is_some_and(|(lo, hi)| {
                        sk.as_str() < lo.as_str() || sk.as_str() > hi.as_str()
                    }) {
                        return Err(StoreError::BadCursor);
                    }
                    Some(key(pk.clone(), sk))
                }
            };
        let mut items = Vec::new();
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(consistent)
                .scan_index_forward(range.forward)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            req = match &range.sk {
                Some((lo, hi)) => req
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone())),
                None => req.key_condition_expression("pk = :pk"),
            };
            self.meter.request();
            let page = customize(req).send().await.map_err(|e| svc(op, e))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => {
                    if items.len() >= limit {
                        let next = str_attr(&k, "sk").map(encode_cursor);
                        return Ok(Page { items, next });
                    }
                    start = Some(k);
                }
                _ => return Ok(Page { items, next: None }),
            }
        }
    }
}

/// Which sort keys a paged query reads, and in which order.
pub(crate) struct PageRange<'a> {
    /// Every sort key the query can return (and so every cursor) starts with this.
    pub cursor_prefix: &'a str,
    /// Inclusive sort-key bounds (`None`: the whole partition).
    pub sk: Option<(String, String)>,
    pub forward: bool,
}

fn data_item<T: Serialize + ?Sized>(pk: String, sk: String, data: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(DataItem { pk, sk, data }).map_err(|e| corrupt("data item", e))
}

fn from_data<T: serde::de::DeserializeOwned>(item: Item, what: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item::<_, DataItem<T>>(item)
        .map(|d| d.data)
        .map_err(|e| corrupt(what, e))
}

impl DynamoStore {
    async fn put_data<T: Serialize + Sync + ?Sized>(
        &self,
        op: &'static str,
        pk: String,
        sk: String,
        data: &T,
    ) -> Result<(), StoreError> {
        let item = data_item(pk, sk, data)?;
        self.put(op, item, None).await.map(|_| ())
    }

    async fn get_data<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<T>, StoreError> {
        match self.get(op, pk.clone(), sk, consistent).await? {
            None => Ok(None),
            Some(item) => from_data(item, &pk).map(Some),
        }
    }

    /// The `data` of every item of one partition whose sort key starts with `prefix`.
    async fn query_data<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        Ok(self
            .query_prefix::<DataItem<T>>(op, pk, prefix)
            .await?
            .into_iter()
            .map(|d| d.data)
            .collect())
    }
}

fn encode_cursor(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

fn decode_cursor(cursor: &str, prefix: &str) -> Result<String, StoreError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    let sk = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    if !sk.is_empty() && sk.starts_with(prefix) && sk.len() < 512 {
        Ok(sk)
    } else {
        Err(StoreError::BadCursor)
    }
}

#[async_trait]
impl AccountStore for DynamoStore {
    async fn put_account(
        &self,
        tenant: &TenantId,
        profile: &AccountProfile,
    ) -> Result<AccountProfile, StoreError> {
        let mut profile = profile.clone();
        let previous = self.get_account(tenant, &profile.account).await?;
        let company = hubspot_company(&profile);
        if let Some(c) = company {
            self.link_company(tenant, c, &profile.account).await?;
            // What HubSpot said about the company before this account named it.
            for (field, prop) in self.company_properties(tenant, c).await? {
                if prop.supersedes(profile.crm_properties.get(&field)) {
                    profile.crm_properties.insert(field, prop);
                }
            }
        }
        let item = DataItem {
            pk: keys::accounts_pk(tenant),
            sk: keys::account_sk(&profile.account),
            data: &profile,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("account", e))?;
        self.put("put_account", item, None).await?;
        // A company the profile no longer names stops counting for it.
        if let Some(old) = previous.as_ref().and_then(hubspot_company) {
            if Some(old) != company {
                self.delete(
                    "unlink_company",
                    keys::hubspot_object_pk(tenant, "company", old),
                    keys::HUBSPOT_ACCOUNT_SK.into(),
                    Some(("account = :a", ":a", s(profile.account.as_str()))),
                )
                .await?;
            }
        }
        Ok(profile)
    }

    async fn get_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Option<AccountProfile>, StoreError> {
        let pk = keys::accounts_pk(tenant);
        match self
            .get("get_account", pk.clone(), &keys::account_sk(account), true)
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let d: DataItem<AccountProfile> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(d.data))
            }
        }
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        segment: Option<Segment>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AccountProfile>, StoreError> {
        let pk = keys::accounts_pk(tenant);
        self.query_page(
            "list_accounts",
            pk,
            "ACCOUNT#",
            limit,
            cursor,
            false,
            |req| match segment {
                Some(seg) => req
                    .filter_expression("#d.#s = :seg")
                    .expression_attribute_names("#d", "data")
                    .expression_attribute_names("#s", "segment")
                    .expression_attribute_values(":seg", s(seg.as_str())),
                None => req,
            },
        )
        .await
    }
}

#[async_trait]
impl UsageReader for DynamoStore {
    async fn read_rollups(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        from: NaiveDate,
        to: NaiveDate,
        meter: Option<&MeterName>,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let pk = keys::usage_pk(tenant, scope);
        let items = self
            .query_all(
                "read_rollups",
                pk.clone(),
                Some(keys::usage_sk_range(from, to)),
                true,
            )
            .await?;
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let sk = str_attr(&item, "sk").unwrap_or_default();
            let (day, m, stage, service_line) = keys::parse_usage_sk(sk)
                .ok_or_else(|| corrupt(sk, "unparseable rollup sort key"))?;
            if meter.is_some_and(|want| want != &m) {
                continue;
            }
            let mut hours = [Bucket::default(); 24];
            for (h, bucket) in hours.iter_mut().enumerate() {
                let (q, c) = hour_names(h as u8);
                *bucket = Bucket {
                    quantity: dec(&item, &q),
                    events: int(&item, &c),
                };
            }
            rows.push(RollupRow {
                key: RollupKey {
                    scope: scope.clone(),
                    day,
                    meter: m,
                    stage,
                    service_line,
                },
                total: Bucket {
                    quantity: dec(&item, "q"),
                    events: int(&item, "n"),
                },
                hours,
            });
        }
        Ok(rows)
    }
}

/// The import journal: one item per unfinished import chunk, its body as JSON text
/// (a chunk is at most 255 KiB, under DynamoDB's 400 KB item limit).
#[async_trait]
impl ChunkJournal for DynamoStore {
    async fn begin(&self, chunk: &domain::chunk::Chunk) -> Result<(), StoreError> {
        let body = serde_json::to_string(chunk).map_err(|e| corrupt(&chunk.chunk, e))?;
        self.put_data(
            "begin_import_chunk",
            keys::import_journal_pk(&chunk.tenant),
            keys::import_journal_sk(&chunk.chunk),
            &body,
        )
        .await
    }

    async fn finish(&self, tenant: &TenantId, chunk: &str) -> Result<(), StoreError> {
        self.delete(
            "finish_import_chunk",
            keys::import_journal_pk(tenant),
            keys::import_journal_sk(chunk),
            None,
        )
        .await
    }

    async fn unfinished(&self, tenant: &TenantId) -> Result<Vec<domain::chunk::Chunk>, StoreError> {
        let pk = keys::import_journal_pk(tenant);
        let bodies: Vec<String> = self
            .query_data(
                "unfinished_import_chunks",
                pk.clone(),
                keys::IMPORT_JOURNAL_PREFIX,
            )
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| corrupt(&pk, e)))
            .collect()
    }
}

#[async_trait]
impl LedgerStore for DynamoStore {
    async fn segments(
        &self,
        tenant: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, Segment>, StoreError> {
        let pk = keys::accounts_pk(tenant);
        let mut out = HashMap::new();
        for group in accounts.chunks(100) {
            let mut keys_left: Vec<Item> = group
                .iter()
                .map(|a| {
                    HashMap::from([
                        ("pk".to_owned(), s(pk.clone())),
                        ("sk".to_owned(), s(keys::account_sk(a))),
                    ])
                })
                .collect();
            let mut rounds = 0;
            while !keys_left.is_empty() {
                rounds += 1;
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys_left)))
                    .projection_expression("sk, #d.#s")
                    .expression_attribute_names("#d", "data")
                    .expression_attribute_names("#s", "segment")
                    .build()
                    .map_err(|e| StoreError::Service {
                        op: "segments",
                        message: e.to_string(),
                    })?;
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| svc("segments", e))?;
                for item in res
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let account = str_attr(&item, "sk")
                        .and_then(|sk| sk.strip_prefix("ACCOUNT#"))
                        .and_then(|a| AccountId::parse(a).ok());
                    let segment = match item.get("data") {
                        Some(AttributeValue::M(m)) => {
                            str_attr(m, "segment").and_then(Segment::parse)
                        }
                        _ => None,
                    };
                    if let (Some(a), Some(seg)) = (account, segment) {
                        out.insert(a, seg);
                    }
                }
                if let Some(left) = res.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    if rounds > 8 {
                        return Err(StoreError::Throttled("segments: unprocessed keys".into()));
                    }
                    keys_left = left.keys;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * rounds)).await;
                }
            }
        }
        Ok(out)
    }

    async fn claim(&self, e: &LedgerEntry<'_>) -> Result<Claim, StoreError> {
        let pk = keys::ledger_pk(e.tenant, e.source, &e.event.id);
        let item = LedgerItem {
            pk: pk.clone(),
            sk: keys::EVENT_SK,
            tenant: e.tenant,
            source: e.source,
            chunk: e.chunk,
            pos: e.pos,
            segment: e.segment,
            received_at: e.received_at,
            expires_at: e.expires_at,
            event: e.event,
        };
        let item: Item = serde_dynamo::to_item(item).map_err(|err| corrupt(&pk, err))?;
        self.meter.request();
        self.meter.add(write_units(item_size(&item)));
        let res = self
            .client
            .put_item()
            .table_name(&self.ledger_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let existing = match res {
            Ok(_) => return Ok(Claim::New),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                match err.into_service_error() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                }
            }
            Err(err) => return Err(svc("claim", err)),
        };
        let existing = match existing {
            Some(i) if i.contains_key("chunk") => i,
            // Emulators may not return the old item; read it.
            _ => self
                .get_from(
                    &self.ledger_table,
                    "claim_lookup",
                    pk.clone(),
                    keys::EVENT_SK,
                    true,
                )
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict(format!("{pk} vanished after a failed condition"))
                })?,
        };
        let view: LedgerClaimView =
            serde_dynamo::from_item(existing).map_err(|err| corrupt(&pk, err))?;
        Ok(Claim::Existing {
            chunk: view.chunk,
            pos: view.pos,
            segment: view.segment,
        })
    }

    async fn sample(&self, e: &LedgerEntry<'_>) -> Result<(), StoreError> {
        self.write_sample(e).await
    }

    async fn apply_part(
        &self,
        part: &PartRef<'_>,
        deltas: &[(RollupKey, RollupDelta)],
    ) -> Result<PartOutcome, StoreError> {
        let marker: Item = HashMap::from([
            ("pk".to_owned(), s(keys::part_pk(part.tenant, part.chunk))),
            ("sk".to_owned(), s(keys::part_sk(part.part))),
            ("parts".to_owned(), n(part.parts)),
            ("rollups".to_owned(), n(deltas.len())),
            ("expires_at".to_owned(), n(part.expires_at)),
        ]);
        let mut units = write_units(item_size(&marker)) * 2;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::Service {
                op: "apply_part",
                message: e.to_string(),
            })?;
        let mut actions = vec![TransactWriteItem::builder().put(put).build()];
        for (key, delta) in deltas {
            let pk = keys::usage_pk(part.tenant, &key.scope);
            let sk = keys::usage_sk(key.day, &key.meter, key.stage, &key.service_line);
            units += write_units(max_rollup_item_size(&pk, &sk)) * 2;
            let total = delta.total();
            let mut expr = vec!["#q :q".to_owned(), "#n :n".to_owned()];
            let mut names = HashMap::from([
                ("#q".to_owned(), "q".to_owned()),
                ("#n".to_owned(), "n".to_owned()),
            ]);
            let mut values = HashMap::from([
                (":q".to_owned(), n(total.quantity)),
                (":n".to_owned(), n(total.events)),
            ]);
            for (h, b) in &delta.hours {
                let (qn, cn) = hour_names(*h);
                expr.push(format!("#{qn} :{qn}"));
                expr.push(format!("#{cn} :{cn}"));
                values.insert(format!(":{qn}"), n(b.quantity));
                values.insert(format!(":{cn}"), n(b.events));
                names.insert(format!("#{qn}"), qn);
                names.insert(format!("#{cn}"), cn);
            }
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .update_expression(format!("ADD {}", expr.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(|e| StoreError::Service {
                    op: "apply_part",
                    message: e.to_string(),
                })?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        self.meter.request();
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        match res {
            Ok(_) => {
                self.meter.add(units);
                Ok(PartOutcome::Applied)
            }
            Err(err) => {
                let reasons: Vec<String> = match err.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect()
                    }
                    _ => return Err(svc("apply_part", err)),
                };
                // A failed transaction still consumes (non-doubled) units for the marker check.
                self.meter.add(1);
                if reasons.first().map(String::as_str) == Some("ConditionalCheckFailed") {
                    return Ok(PartOutcome::AlreadyApplied);
                }
                if reasons.iter().any(|r| r == "TransactionConflict") {
                    return Err(StoreError::Conflict(format!("apply_part: {reasons:?}")));
                }
                if reasons
                    .iter()
                    .any(|r| r.contains("Throughput") || r.contains("Throttl"))
                {
                    return Err(StoreError::Throttled(format!("apply_part: {reasons:?}")));
                }
                Err(StoreError::Service {
                    op: "apply_part",
                    message: format!("transaction cancelled: {reasons:?}"),
                })
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct PortalItem {
    pk: String,
    sk: String,
    tenant: TenantId,
    portal: u64,
}

impl DynamoStore {
    /// Maps a HubSpot portal (account) id to a tenant.
    pub async fn map_portal(&self, portal: u64, tenant: &TenantId) -> Result<(), AdminError> {
        if !self.tenant_exists(tenant).await? {
            return Err(AdminError::NoSuchTenant(tenant.clone()));
        }
        let item = PortalItem {
            pk: keys::hubspot_portal_pk(portal),
            sk: keys::HUBSPOT_PORTAL_SK.into(),
            tenant: tenant.clone(),
            portal,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("portal", e))?;
        self.put("map_portal", item, None).await?;
        Ok(())
    }

    async fn delete(
        &self,
        op: &'static str,
        pk: String,
        sk: String,
        condition: Option<(&str, &str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk));
        if let Some((expr, name, value)) = condition {
            req = req
                .condition_expression(expr)
                .expression_attribute_values(name, value);
        }
        self.meter.request();
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(svc(op, e)),
        }
    }
}

#[async_trait]
impl domain::ports::PortalDirectory for DynamoStore {
    async fn tenant_for_portal(&self, portal: u64) -> Result<Option<TenantId>, StoreError> {
        let pk = keys::hubspot_portal_pk(portal);
        match self
            .get(
                "tenant_for_portal",
                pk.clone(),
                keys::HUBSPOT_PORTAL_SK,
                false,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, PortalItem>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .tenant,
            )),
        }
    }

    async fn record_unknown_portal(&self, portal: u64, events: usize) -> Result<(), StoreError> {
        let day = Utc::now().format("%Y-%m-%d").to_string();
        self.meter.request();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("HUBSPOT#UNKNOWN_PORTAL#{portal}")))
            .key("sk", s(day))
            .update_expression("ADD refused :n")
            .expression_attribute_values(":n", n(events))
            .send()
            .await
            .map_err(|e| svc("record_unknown_portal", e))?;
        Ok(())
    }
}

#[async_trait]
impl domain::ports::ReplayGuard for DynamoStore {
    async fn claim_request(
        &self,
        key: &str,
        expires_at: i64,
    ) -> Result<domain::ports::RequestClaim, StoreError> {
        let pk = keys::hubspot_legacy_request_pk(key);
        // An update that creates the item: ingest's policy has no PutItem.
        self.meter.request();
        self.meter.add(1);
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(keys::HUBSPOT_LEGACY_REQUEST_SK))
            .condition_expression("attribute_not_exists(pk)")
            .update_expression("SET #d = :f, claimed_at = :c, expires_at = :e")
            .expression_attribute_names("#d", "done")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":c", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":e", n(expires_at))
            .send()
            .await;
        match claimed {
            Ok(_) => return Ok(domain::ports::RequestClaim::New),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(svc("claim_request", e)),
        }
        let existing = self
            .get(
                "claim_request_lookup",
                pk.clone(),
                keys::HUBSPOT_LEGACY_REQUEST_SK,
                true,
            )
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("{pk} vanished after a failed condition"))
            })?;
        Ok(
            if matches!(existing.get("done"), Some(AttributeValue::Bool(true))) {
                domain::ports::RequestClaim::Done
            } else {
                domain::ports::RequestClaim::Unfinished
            },
        )
    }

    async fn finish_request(&self, key: &str) -> Result<(), StoreError> {
        self.set_attribute(
            "finish_request",
            keys::hubspot_legacy_request_pk(key),
            keys::HUBSPOT_LEGACY_REQUEST_SK.to_owned(),
            "done",
            AttributeValue::Bool(true),
            Existing::Optional,
        )
        .await
    }
}

/// The HubSpot company an account profile names, if it names a valid one.
fn hubspot_company(p: &AccountProfile) -> Option<u64> {
    p.crm_ids
        .get(domain::account::HUBSPOT_COMPANY_ID)
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Serialize, Deserialize)]
struct PropertyItem {
    pk: String,
    sk: String,
    field: String,
    data: domain::hubspot::profile::CrmProperty,
    /// Epoch milliseconds of the change, for the newest-wins condition.
    changed_ms: i64,
}

impl DynamoStore {
    /// The synced CRM properties recorded on a company, by profile field.
    async fn company_properties(
        &self,
        t: &TenantId,
        company: u64,
    ) -> Result<BTreeMap<String, domain::hubspot::profile::CrmProperty>, StoreError> {
        let items: Vec<PropertyItem> = self
            .query_prefix(
                "company_properties",
                keys::hubspot_object_pk(t, "company", company),
                keys::HUBSPOT_PROPERTY_PREFIX,
            )
            .await?;
        Ok(items.into_iter().map(|p| (p.field, p.data)).collect())
    }
}

#[derive(Serialize, Deserialize)]
struct AccountLink {
    pk: String,
    sk: String,
    account: AccountId,
}

impl DynamoStore {
    /// Links a HubSpot company to an account; refuses a company another account has.
    async fn link_company(
        &self,
        t: &TenantId,
        company: u64,
        account: &AccountId,
    ) -> Result<(), StoreError> {
        let item = AccountLink {
            pk: keys::hubspot_object_pk(t, "company", company),
            sk: keys::HUBSPOT_ACCOUNT_SK.into(),
            account: account.clone(),
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("account link", e))?;
        let linked = self
            .put_if(
                "link_company",
                item,
                Some("attribute_not_exists(pk) OR account = :a"),
                &[(":a", s(account.as_str()))],
            )
            .await?;
        if linked {
            return Ok(());
        }
        let other = self
            .get(
                "link_company",
                keys::hubspot_object_pk(t, "company", company),
                keys::HUBSPOT_ACCOUNT_SK,
                true,
            )
            .await?
            .and_then(|i| serde_dynamo::from_item::<_, AccountLink>(i).ok())
            .map(|l| l.account.to_string())
            .unwrap_or_default();
        Err(StoreError::Taken {
            code: "hubspot_company_taken",
            message: format!("HubSpot company {company} is already linked to account '{other}'"),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CompanyLink {
    pk: String,
    sk: String,
    company: u64,
}

#[async_trait]
impl domain::hubspot::processor::IdentityStore for DynamoStore {
    async fn company_of(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
    ) -> Result<Option<u64>, StoreError> {
        let pk = keys::hubspot_object_pk(t, &o.kind, o.id);
        match self
            .get("company_of", pk.clone(), keys::HUBSPOT_COMPANY_SK, true)
            .await?
        {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, CompanyLink>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .company,
            )),
        }
    }

    async fn associate(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        company: u64,
    ) -> Result<(), StoreError> {
        let item = CompanyLink {
            pk: keys::hubspot_object_pk(t, &o.kind, o.id),
            sk: keys::HUBSPOT_COMPANY_SK.into(),
            company,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("company link", e))?;
        self.put("associate", item, None).await.map(|_| ())
    }

    async fn dissociate(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        company: u64,
    ) -> Result<(), StoreError> {
        self.delete(
            "dissociate",
            keys::hubspot_object_pk(t, &o.kind, o.id),
            keys::HUBSPOT_COMPANY_SK.into(),
            Some(("company = :c", ":c", n(company))),
        )
        .await
    }

    async fn merge_company(&self, t: &TenantId, merged: u64, into: u64) -> Result<(), StoreError> {
        let item = CompanyLink {
            pk: keys::hubspot_object_pk(t, "company", merged),
            sk: keys::HUBSPOT_MERGED_SK.into(),
            company: into,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("merge", e))?;
        self.put("merge_company", item, None).await.map(|_| ())
    }

    async fn survivor(&self, t: &TenantId, company: u64) -> Result<u64, StoreError> {
        let mut current = company;
        // Merge chains are short; the bound also stops a cycle.
        for _ in 0..8 {
            let pk = keys::hubspot_object_pk(t, "company", current);
            match self
                .get("survivor", pk.clone(), keys::HUBSPOT_MERGED_SK, true)
                .await?
            {
                Some(item) => {
                    current = serde_dynamo::from_item::<_, CompanyLink>(item)
                        .map_err(|e| corrupt(&pk, e))?
                        .company
                }
                None => break,
            }
        }
        Ok(current)
    }

    async fn profile_sync(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::hubspot::profile::ProfileSync>, StoreError> {
        domain::ports::MappingStore::get_profile_sync(self, t).await
    }

    async fn sync_company_property(
        &self,
        t: &TenantId,
        change: &domain::hubspot::profile::ProfileChange,
        account: Option<&AccountId>,
    ) -> Result<(), StoreError> {
        let field = change.field.as_str();
        let changed_ms = change.property.changed_at.timestamp_millis();
        let item = PropertyItem {
            pk: keys::hubspot_object_pk(t, "company", change.company),
            sk: format!("{}{field}", keys::HUBSPOT_PROPERTY_PREFIX),
            field: field.to_owned(),
            data: change.property.clone(),
            changed_ms,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("company property", e))?;
        let newest = self
            .put_if(
                "sync_company_property",
                item,
                Some("attribute_not_exists(pk) OR changed_ms < :t"),
                &[(":t", n(changed_ms))],
            )
            .await?;
        if !newest {
            return Ok(()); // an equal or newer value is already recorded
        }
        let Some(account) = account else {
            return Ok(());
        };
        let Some(mut profile) = self.get_account(t, account).await? else {
            return Ok(()); // copied when the account is created and names the company
        };
        if change
            .property
            .supersedes(profile.crm_properties.get(field))
        {
            profile
                .crm_properties
                .insert(field.to_owned(), change.property.clone());
            let item = DataItem {
                pk: keys::accounts_pk(t),
                sk: keys::account_sk(account),
                data: &profile,
            };
            let item = serde_dynamo::to_item(item).map_err(|e| corrupt("account", e))?;
            self.put("sync_profile", item, None).await?;
        }
        Ok(())
    }

    async fn account_of_company(
        &self,
        t: &TenantId,
        company: u64,
    ) -> Result<Option<AccountId>, StoreError> {
        let pk = keys::hubspot_object_pk(t, "company", company);
        match self
            .get(
                "account_of_company",
                pk.clone(),
                keys::HUBSPOT_ACCOUNT_SK,
                true,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, AccountLink>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .account,
            )),
        }
    }

    async fn hold(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        held: &domain::hubspot::processor::Held,
    ) -> Result<(), StoreError> {
        let item = DataItem {
            pk: keys::hubspot_object_pk(t, &o.kind, o.id),
            sk: format!("{}{}", keys::HUBSPOT_PENDING_PREFIX, held.event.id),
            data: held,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("held event", e))?;
        self.put("hold", item, None).await.map(|_| ())
    }

    async fn held(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
    ) -> Result<Vec<domain::hubspot::processor::Held>, StoreError> {
        let items: Vec<DataItem<domain::hubspot::processor::Held>> = self
            .query_prefix(
                "held",
                keys::hubspot_object_pk(t, &o.kind, o.id),
                keys::HUBSPOT_PENDING_PREFIX,
            )
            .await?;
        Ok(items.into_iter().map(|d| d.data).collect())
    }

    async fn release(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        ids: &[domain::ids::EventId],
    ) -> Result<(), StoreError> {
        for id in ids {
            self.delete(
                "release",
                keys::hubspot_object_pk(t, &o.kind, o.id),
                format!("{}{id}", keys::HUBSPOT_PENDING_PREFIX),
                None,
            )
            .await?;
        }
        Ok(())
    }

    async fn record_unmapped(
        &self,
        t: &TenantId,
        ev: &domain::hubspot::webhook::AppEvent,
        reason: &str,
    ) -> Result<(), StoreError> {
        let day = DateTime::from_timestamp_millis(ev.occurred_at)
            .unwrap_or_else(Utc::now)
            .date_naive();
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(keys::hubspot_unmapped_pk(t, day))),
            ("sk".to_owned(), s(ev.idempotency_key())),
            (
                "subscription_type".to_owned(),
                s(ev.subscription_type.chars().take(100).collect::<String>()),
            ),
            (
                "reason".to_owned(),
                s(reason.chars().take(300).collect::<String>()),
            ),
            (
                "expires_at".to_owned(),
                n((Utc::now() + chrono::Duration::days(400)).timestamp()),
            ),
        ]);
        self.put("record_unmapped", item, None).await.map(|_| ())
    }

    async fn mapping_rules(
        &self,
        t: &TenantId,
    ) -> Result<Option<Vec<domain::hubspot::mapping::MappingRule>>, StoreError> {
        domain::ports::MappingStore::get_mapping_rules(self, t).await
    }
}

impl DynamoStore {
    /// Counts HubSpot changes no rule mapped on a day (for audits and tests).
    pub async fn unmapped_count(&self, t: &TenantId, day: NaiveDate) -> Result<usize, StoreError> {
        Ok(self
            .query_all(
                "unmapped_count",
                keys::hubspot_unmapped_pk(t, day),
                None,
                false,
            )
            .await?
            .len())
    }
}

#[async_trait]
impl domain::ports::MappingStore for DynamoStore {
    async fn get_mapping_rules(
        &self,
        t: &TenantId,
    ) -> Result<Option<Vec<domain::hubspot::mapping::MappingRule>>, StoreError> {
        self.get_data(
            "mapping_rules",
            keys::tenant_pk(t),
            keys::HUBSPOT_RULES_SK,
            false,
        )
        .await
    }

    async fn put_mapping_rules(
        &self,
        t: &TenantId,
        rules: &[domain::hubspot::mapping::MappingRule],
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_mapping_rules",
            keys::tenant_pk(t),
            keys::HUBSPOT_RULES_SK.to_owned(),
            rules,
        )
        .await
    }

    async fn get_profile_sync(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::hubspot::profile::ProfileSync>, StoreError> {
        self.get_data(
            "profile_sync",
            keys::tenant_pk(t),
            keys::HUBSPOT_PROFILE_SYNC_SK,
            false,
        )
        .await
    }

    async fn put_profile_sync(
        &self,
        t: &TenantId,
        sync: &domain::hubspot::profile::ProfileSync,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_profile_sync",
            keys::tenant_pk(t),
            keys::HUBSPOT_PROFILE_SYNC_SK.to_owned(),
            sync,
        )
        .await
    }
}

#[derive(Serialize, Deserialize)]
struct PointerItem {
    pk: String,
    sk: String,
    account: AccountId,
}

#[async_trait]
impl EntitlementStore for DynamoStore {
    async fn put_entitlement(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<(), StoreError> {
        let pointer = PointerItem {
            pk: keys::entitlement_pointer_pk(tenant, &ent.id),
            sk: keys::ENTITLEMENT_POINTER_SK.into(),
            account: ent.account.clone(),
        };
        let pointer = serde_dynamo::to_item(pointer).map_err(|e| corrupt("entitlement", e))?;
        self.put("put_entitlement_pointer", pointer, None).await?;
        let item = DataItem {
            pk: keys::entitlements_pk(tenant, &ent.account),
            sk: keys::entitlement_sk(&ent.id),
            data: ent,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("entitlement", e))?;
        self.put("put_entitlement", item, None).await.map(|_| ())
    }

    async fn get_entitlement(
        &self,
        tenant: &TenantId,
        id: &EntitlementId,
    ) -> Result<Option<Entitlement>, StoreError> {
        let pk = keys::entitlement_pointer_pk(tenant, id);
        let Some(item) = self
            .get(
                "get_entitlement_pointer",
                pk.clone(),
                keys::ENTITLEMENT_POINTER_SK,
                true,
            )
            .await?
        else {
            return Ok(None);
        };
        let ptr: PointerItem = serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
        let pk = keys::entitlements_pk(tenant, &ptr.account);
        match self
            .get(
                "get_entitlement",
                pk.clone(),
                &keys::entitlement_sk(id),
                true,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let d: DataItem<Entitlement> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(d.data))
            }
        }
    }

    async fn delete_entitlement(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<(), StoreError> {
        for (pk, sk) in [
            (
                keys::entitlements_pk(tenant, &ent.account),
                keys::entitlement_sk(&ent.id),
            ),
            (
                keys::entitlement_pointer_pk(tenant, &ent.id),
                keys::ENTITLEMENT_POINTER_SK.to_owned(),
            ),
        ] {
            self.meter.request();
            self.meter.add(1);
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .send()
                .await
                .map_err(|e| svc("delete_entitlement", e))?;
        }
        Ok(())
    }

    async fn list_entitlements(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Vec<Entitlement>, StoreError> {
        self.query_data(
            "list_entitlements",
            keys::entitlements_pk(tenant, account),
            "",
        )
        .await
    }
}

fn marker_kind(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::Raised => "ALERT",
        MarkerKind::Published => "NOTIFIED",
    }
}

#[async_trait]
impl MarkerStore for DynamoStore {
    async fn claim_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<MarkerClaim, StoreError> {
        let pk = keys::marker_pk(tenant, marker_kind(kind), key);
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(pk.clone())),
            ("sk".to_owned(), s(keys::MARKER_SK)),
            ("owner".to_owned(), s(owner)),
            ("done".to_owned(), AttributeValue::Bool(false)),
            ("claimed_at".to_owned(), s(Utc::now().to_rfc3339())),
            ("expires_at".to_owned(), n(expires_at)),
        ]);
        if self
            .put("claim_marker", item, Some("attribute_not_exists(pk)"))
            .await?
        {
            return Ok(MarkerClaim::New);
        }
        let existing = self
            .get("claim_marker_lookup", pk.clone(), keys::MARKER_SK, true)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("{pk} vanished after a failed condition"))
            })?;
        if str_attr(&existing, "owner") != Some(owner) {
            return Ok(MarkerClaim::Other);
        }
        let done = matches!(existing.get("done"), Some(AttributeValue::Bool(true)));
        let age = str_attr(&existing, "claimed_at")
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map_or(chrono::Duration::days(36_500), |c| {
                Utc::now() - c.with_timezone(&Utc)
            });
        Ok(MarkerClaim::Mine { done, age })
    }

    async fn finish_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
    ) -> Result<(), StoreError> {
        self.set_attribute(
            "finish_marker",
            keys::marker_pk(tenant, marker_kind(kind), key),
            keys::MARKER_SK.to_owned(),
            "done",
            AttributeValue::Bool(true),
            Existing::Optional,
        )
        .await
    }
}

/// Whether [`DynamoStore::set_attribute`] may create the item it updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// The item must exist (`attribute_exists(pk)`); otherwise the call fails.
    Required,
    /// An absent item is created with just the keys and the attribute.
    Optional,
}

impl DynamoStore {
    /// Sets one attribute of one item of the main table (`UpdateItem SET #a = :v`,
    /// one write unit).
    async fn set_attribute(
        &self,
        op: &'static str,
        pk: String,
        sk: String,
        attr: &str,
        value: AttributeValue,
        existing: Existing,
    ) -> Result<(), StoreError> {
        self.meter.request();
        self.meter.add(1);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .update_expression("SET #a = :v")
            .expression_attribute_names("#a", attr)
            .expression_attribute_values(":v", value);
        if existing == Existing::Required {
            req = req.condition_expression("attribute_exists(pk)");
        }
        req.send().await.map_err(|e| svc(op, e))?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct CooldownItem {
    pk: String,
    sk: String,
    at: DateTime<Utc>,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct DigestEntry {
    pk: String,
    sk: String,
    alert: domain::alert::Alert,
    reason: String,
    expires_at: i64,
}

#[derive(Serialize, Deserialize)]
struct DigestDue {
    pk: String,
    sk: String,
    bucket: domain::digest::DigestBucket,
}

#[async_trait]
impl domain::ports::DigestStore for DynamoStore {
    async fn alert_policy(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::digest::AlertPolicy>, StoreError> {
        self.get_data(
            "alert_policy",
            keys::tenant_pk(t),
            keys::ALERT_POLICY_SK,
            false,
        )
        .await
    }

    async fn put_alert_policy(
        &self,
        t: &TenantId,
        policy: &domain::digest::AlertPolicy,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_alert_policy",
            keys::tenant_pk(t),
            keys::ALERT_POLICY_SK.to_owned(),
            policy,
        )
        .await
    }

    async fn last_published(
        &self,
        t: &TenantId,
        scope: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let pk = keys::cooldown_pk(t);
        match self.get("last_published", pk.clone(), scope, true).await? {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, CooldownItem>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .at,
            )),
        }
    }

    async fn record_published(
        &self,
        t: &TenantId,
        scope: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let item = CooldownItem {
            pk: keys::cooldown_pk(t),
            sk: scope.to_owned(),
            at,
            expires_at: (at + chrono::Duration::days(62)).timestamp(),
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("cooldown", e))?;
        self.put("record_published", item, None).await.map(|_| ())
    }

    async fn hold_for_digest(
        &self,
        bucket: &domain::digest::DigestBucket,
        alert: &domain::alert::Alert,
        reason: &str,
    ) -> Result<(), StoreError> {
        let expires_at = bucket
            .end
            .and_hms_opt(0, 0, 0)
            .map_or_else(|| Utc::now().timestamp(), |d| d.and_utc().timestamp())
            + 400 * 86_400;
        let entry = DigestEntry {
            pk: keys::digest_pk(bucket),
            sk: alert.key.clone(),
            alert: alert.clone(),
            reason: reason.to_owned(),
            expires_at,
        };
        let entry = serde_dynamo::to_item(entry).map_err(|e| corrupt("digest entry", e))?;
        self.put("hold_for_digest", entry, None).await?;
        let due = DigestDue {
            pk: keys::DIGESTS_DUE_PK.to_owned(),
            sk: keys::digest_due_sk(bucket),
            bucket: bucket.clone(),
        };
        let due = serde_dynamo::to_item(due).map_err(|e| corrupt("digest due", e))?;
        self.put("digest_due", due, None).await.map(|_| ())
    }

    async fn due_digests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<domain::digest::DigestBucket>, StoreError> {
        let hi = format!("{}#~", now.date_naive().format("%Y-%m-%d"));
        let items = self
            .query_all(
                "due_digests",
                keys::DIGESTS_DUE_PK.to_owned(),
                Some(("0".to_owned(), hi)),
                true,
            )
            .await?;
        items
            .into_iter()
            .map(|i| {
                serde_dynamo::from_item::<_, DigestDue>(i)
                    .map(|d| d.bucket)
                    .map_err(|e| corrupt(keys::DIGESTS_DUE_PK, e))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.into_iter().filter(|b| b.due(now)).collect())
    }

    async fn digest_entries(
        &self,
        bucket: &domain::digest::DigestBucket,
    ) -> Result<Vec<(domain::alert::Alert, String)>, StoreError> {
        let items: Vec<DigestEntry> = self
            .query_prefix("digest_entries", keys::digest_pk(bucket), "")
            .await?;
        Ok(items.into_iter().map(|e| (e.alert, e.reason)).collect())
    }

    async fn close_digest(&self, bucket: &domain::digest::DigestBucket) -> Result<(), StoreError> {
        self.delete(
            "close_digest",
            keys::DIGESTS_DUE_PK.to_owned(),
            keys::digest_due_sk(bucket),
            None,
        )
        .await
    }
}
mod audit;
pub use audit::DEFAULT_AUDIT_SAMPLE;
