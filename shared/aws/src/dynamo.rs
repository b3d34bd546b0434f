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
use domain::event::{MeterRule, TenantPolicy};
use domain::ids::EntitlementId;
use domain::ids::{AccountId, MeterName, Segment, TenantId};
use domain::keys::{self, Scope};
use domain::pipeline::{ChunkJournal, Claim, LedgerEntry, LedgerStore, UnitRef, UnitsOutcome};
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

mod accounts;
mod alerts;
mod api_keys;
mod bands;
mod definitions;
mod digests;
mod directory;
mod entitlements;
mod health;
mod ledger;
mod mapping;
mod markers;
mod portal;
mod quarantine;
mod rollups;
// Items one port file defines and another uses (row types, key and request helpers).
use definitions::*;
use entitlements::*;
use mapping::*;
use portal::*;

type Item = HashMap<String, AttributeValue>;

/// Request units and request counts, computed from the items we send and receive
/// using DynamoDB's published sizing rules (see docs/adr/0002 and `item_size`): what
/// the benches' cost model bills.
#[derive(Debug, Default)]
pub struct WriteMeter {
    /// Write request units, as DynamoDB bills them (transactional writes count twice).
    pub write_units: AtomicU64,
    /// The part of `write_units` spent on the ledger table.
    pub ledger_write_units: AtomicU64,
    /// Read request units in halves: an eventually consistent read of up to 4 KB is
    /// one half, a strongly consistent one two. Every read the counting path makes
    /// (ingest, rollup, notify, HubSpot processing); not the health store's reads nor
    /// the `Select: COUNT` queries (scoring and the cockpit).
    pub read_half_units: AtomicU64,
    /// Bytes of the ledger records written, with DynamoDB's 100 bytes of per-item
    /// storage overhead (what the ledger's retention is billed on).
    pub ledger_bytes: AtomicU64,
    pub requests: AtomicU64,
}

/// What a [`WriteMeter`] has counted so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MeterReading {
    pub write_units: u64,
    pub ledger_write_units: u64,
    pub read_half_units: u64,
    pub ledger_bytes: u64,
    pub requests: u64,
}

impl MeterReading {
    /// What was counted between `earlier` and this reading.
    pub fn since(&self, earlier: &MeterReading) -> MeterReading {
        MeterReading {
            write_units: self.write_units.saturating_sub(earlier.write_units),
            ledger_write_units: self
                .ledger_write_units
                .saturating_sub(earlier.ledger_write_units),
            read_half_units: self.read_half_units.saturating_sub(earlier.read_half_units),
            ledger_bytes: self.ledger_bytes.saturating_sub(earlier.ledger_bytes),
            requests: self.requests.saturating_sub(earlier.requests),
        }
    }
}

/// Read units (in halves) of reading `bytes` in one request: 4 KB per unit, at least
/// one, doubled for a strongly consistent read.
fn read_halves(bytes: usize, consistent: bool) -> u64 {
    let units = bytes.div_ceil(4096).max(1) as u64;
    if consistent {
        units * 2
    } else {
        units
    }
}

impl WriteMeter {
    fn add(&self, units: u64) {
        self.write_units.fetch_add(units, Ordering::Relaxed);
    }
    /// Write units spent on the ledger table (also counted in `write_units`).
    fn add_ledger(&self, units: u64) {
        self.add(units);
        self.ledger_write_units.fetch_add(units, Ordering::Relaxed);
    }
    /// A ledger record of `size` bytes now stored.
    fn stored_in_ledger(&self, size: usize) {
        self.stored_in_ledger_all(size, 1);
    }
    /// `n` ledger records of `size` bytes in all now stored.
    fn stored_in_ledger_all(&self, size: usize, n: usize) {
        self.ledger_bytes.fetch_add(
            size as u64 + n as u64 * domain::cost::ITEM_OVERHEAD_BYTES,
            Ordering::Relaxed,
        );
    }
    /// A query or scan page: its items' sizes added up, rounded up to 4 KB.
    fn read_page<'a>(&self, consistent: bool, items: impl IntoIterator<Item = &'a Item>) {
        let bytes = items.into_iter().map(item_size).sum();
        self.read_half_units
            .fetch_add(read_halves(bytes, consistent), Ordering::Relaxed);
    }
    /// Point reads of `keys` items, `found` of them returned: each rounded up to 4 KB
    /// on its own; a missing item still costs the minimum.
    fn read_items<'a>(
        &self,
        consistent: bool,
        keys: usize,
        found: impl IntoIterator<Item = &'a Item>,
    ) {
        let mut halves = 0;
        let mut n = 0;
        for item in found {
            halves += read_halves(item_size(item), consistent);
            n += 1;
        }
        halves += keys.saturating_sub(n) as u64 * read_halves(0, consistent);
        self.read_half_units.fetch_add(halves, Ordering::Relaxed);
    }
    fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }
    pub fn reading(&self) -> MeterReading {
        MeterReading {
            write_units: self.write_units.load(Ordering::Relaxed),
            ledger_write_units: self.ledger_write_units.load(Ordering::Relaxed),
            read_half_units: self.read_half_units.load(Ordering::Relaxed),
            ledger_bytes: self.ledger_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
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

/// A ledger record: the claim only (who claimed the event, where, and the segment it
/// was counted in). The tenant, source and event id are in its key; the event's body is
/// not kept, since nothing reads it and storage for the retention is the largest line
/// of the cost per event (docs/adr/0001, "What a ledger record holds").
#[derive(Serialize)]
struct LedgerItem<'a> {
    pk: String,
    sk: &'static str,
    chunk: &'a str,
    pos: u32,
    segment: Segment,
    received_at: DateTime<Utc>,
    expires_at: i64,
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
        self.meter.read_items(consistent, 1, out.item.as_ref());
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

    /// Counts the items of one partition (those whose sort key starts with `prefix`;
    /// all when it is empty) with `Select: COUNT` Queries, following pagination.
    async fn count_items(
        &self,
        op: &'static str,
        pk: String,
        prefix: &str,
        consistent: bool,
    ) -> Result<usize, StoreError> {
        let mut total = 0usize;
        let mut start: Option<Item> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(consistent)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start.take());
            req = if prefix.is_empty() {
                req.key_condition_expression("pk = :pk")
            } else {
                req.key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                    .expression_attribute_values(":p", s(prefix.to_owned()))
            };
            let page = req.send().await.map_err(|e| svc(op, e))?;
            total = total.saturating_add(usize::try_from(page.count.max(0)).unwrap_or(0));
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(total),
            }
        }
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
            let items = page.items.unwrap_or_default();
            self.meter.read_page(consistent, &items);
            out.extend(items);
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
                .expression_attribute_values(":t", s(keys::TENANT_PREFIX))
                .projection_expression("tenant")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| svc("scan_tenants", e))?;
            let items = page.items.unwrap_or_default();
            self.meter.read_page(false, &items);
            for item in items {
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
mod audit;
pub use audit::DEFAULT_AUDIT_SAMPLE;
