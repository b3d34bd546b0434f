//! DynamoDB side of governance and audits: the definition change log, data-quality
//! counters, critical-meter activity, the drift sample and stored audit reports.

use super::{
    corrupt, dec, item_size, n, s, str_attr, svc, write_units, DataItem, DynamoStore, Item,
    PageRange,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use chrono::{DateTime, NaiveDate, SecondsFormat, Timelike, Utc};
use domain::audit::counters::Counts;
use domain::audit::kpi::SampledEvent;
use domain::audit::report::AuditReport;
use domain::audit::series::{CriticalDay, CriticalRow};
use domain::audit::store::{AuditReader, QualityRecorder, ReportStore};
use domain::definition::Definition;
use domain::governance::{ChangeEntry, ChangeLog};
use domain::ids::{AccountId, MeterName, ServiceLine, Stage, TenantId};
use domain::keys;
use domain::pipeline::LedgerEntry;
use domain::ports::{Page, StoreError};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

pub use domain::audit::store::DEFAULT_AUDIT_SAMPLE;

fn build_err(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Service {
        op,
        message: e.to_string(),
    }
}

fn cancelled_by_condition<E>(
    err: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        E,
    >,
) -> Option<bool> {
    match err.as_service_error() {
        Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
            Some(c.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed"))
        }
        _ => None,
    }
}

/// `ADD a :a, b :b` over the given fields (none: no update).
fn add_update(
    table: &str,
    pk: String,
    sk: String,
    fields: &[(String, Decimal)],
) -> Result<Option<Update>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut expr = Vec::new();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    for (i, (name, v)) in fields.iter().enumerate() {
        expr.push(format!("#f{i} :v{i}"));
        names.insert(format!("#f{i}"), name.clone());
        values.insert(format!(":v{i}"), n(v));
    }
    Update::builder()
        .table_name(table)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .update_expression(format!("ADD {}", expr.join(", ")))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map(Some)
        .map_err(|e| build_err("quality_update", e))
}

fn count_fields(c: &Counts) -> Vec<(String, Decimal)> {
    c.fields()
        .into_iter()
        .map(|(name, v)| (name.to_owned(), v))
        .collect()
}

/// One `ADD` of a chunk's additions: (pk, sk, fields).
type Addition = (String, String, Vec<(String, Decimal)>);

impl DynamoStore {
    /// Applies a chunk's `ADD`s exactly once: groups of ≤ 99, each in one transaction
    /// with a marker `<marker>#<group>` under the chunk (`attribute_not_exists`), so a
    /// redelivery finds the marker and adds nothing.
    async fn add_once(
        &self,
        op: &'static str,
        tenant: &TenantId,
        chunk: &str,
        marker: &str,
        additions: Vec<Addition>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let additions: Vec<Addition> = additions
            .into_iter()
            .filter(|(_, _, f)| !f.is_empty())
            .collect();
        for (group_no, group) in additions.chunks(99).enumerate() {
            let marker: Item = HashMap::from([
                ("pk".to_owned(), s(keys::part_pk(tenant, chunk))),
                ("sk".to_owned(), s(format!("{marker}#{group_no}"))),
                ("expires_at".to_owned(), n(expires_at)),
            ]);
            let mut units = write_units(item_size(&marker)) * 2;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(marker))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| build_err(op, e))?;
            let mut actions = vec![TransactWriteItem::builder().put(put).build()];
            for (pk, sk, fields) in group {
                units += write_units(pk.len() + sk.len() + 40 * fields.len()) * 2;
                if let Some(u) = add_update(&self.table, pk.clone(), sk.clone(), fields)? {
                    actions.push(TransactWriteItem::builder().update(u).build());
                }
            }
            self.meter.request();
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => self.meter.add(units),
                Err(err) => match cancelled_by_condition(&err) {
                    Some(true) => self.meter.add(1), // already applied by an earlier delivery
                    Some(false) => return Err(StoreError::Conflict(format!("{op}: {err:?}"))),
                    None => return Err(svc(op, err)),
                },
            }
        }
        Ok(())
    }
}

impl DynamoStore {
    /// Copies an owned event of a sampled account into the drift sample (idempotent:
    /// keyed by the event, written again by a redelivery before its parts apply).
    pub(super) async fn write_sample(&self, e: &LedgerEntry<'_>) -> Result<(), StoreError> {
        if !domain::audit::store::sampled(&e.event.account, self.audit_sample) {
            return Ok(());
        }
        let ev = e.event;
        let item: Item = HashMap::from([
            (
                "pk".to_owned(),
                s(keys::sample_pk(e.tenant, ev.timestamp.date_naive())),
            ),
            (
                "sk".to_owned(),
                s(keys::sample_sk(&ev.account, e.source, &ev.id)),
            ),
            ("account".to_owned(), s(ev.account.as_str())),
            ("meter".to_owned(), s(ev.meter.as_str())),
            ("stage".to_owned(), s(ev.stage.as_str())),
            ("line".to_owned(), s(ev.service_line.as_str())),
            ("hour".to_owned(), n(ev.timestamp.hour())),
            ("q".to_owned(), n(ev.quantity)),
            ("expires_at".to_owned(), n(e.expires_at)),
        ]);
        let size = item_size(&item);
        self.meter.request();
        self.meter.add_ledger(write_units(size));
        self.client
            .put_item()
            .table_name(&self.ledger_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|err| svc("sample", err))?;
        // Kept as long as the ledger's own records (same `expires_at`).
        self.meter.stored_in_ledger(size);
        Ok(())
    }

    async fn query_table(
        &self,
        op: &'static str,
        table: &str,
        pk: String,
        range: Option<(String, String)>,
        forward: bool,
        limit: Option<i32>,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_pages(op, table, pk, range, false, forward, limit)
            .await
    }
}

#[async_trait]
impl ChangeLog for DynamoStore {
    async fn save_with_change(
        &self,
        tenant: &TenantId,
        def: &Definition,
        entry: &ChangeEntry,
    ) -> Result<(), StoreError> {
        let def_item: Item = serde_dynamo::to_item(DataItem {
            pk: keys::tenant_pk(tenant),
            sk: keys::definition_sk(&def.meter),
            data: def,
        })
        .map_err(|e| corrupt("definition", e))?;
        let change_item: Item = serde_dynamo::to_item(DataItem {
            pk: keys::definition_changes_pk(tenant, &def.meter),
            sk: keys::definition_change_sk(entry.at, &uuid::Uuid::now_v7().to_string()),
            data: entry,
        })
        .map_err(|e| corrupt("definition change", e))?;
        let units = (write_units(item_size(&def_item)) + write_units(item_size(&change_item))) * 2;
        let put = |item: Item, cond: Option<&str>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(cond.map(str::to_owned))
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| build_err("save_definition", e))
        };
        let actions = vec![
            put(def_item, None)?,
            put(change_item, Some("attribute_not_exists(pk)"))?,
        ];
        self.meter.request();
        self.meter.add(units);
        self.client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
            .map_err(|e| svc("save_definition", e))?;
        Ok(())
    }

    async fn changes(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<ChangeEntry>, StoreError> {
        self.query_page(
            "definition_changes",
            keys::definition_changes_pk(tenant, meter),
            "",
            limit,
            cursor,
            false,
            |req| req,
        )
        .await
    }
}

#[async_trait]
impl QualityRecorder for DynamoStore {
    async fn record_request(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
        counts: &BTreeMap<String, Counts>,
    ) -> Result<(), StoreError> {
        for (meter, c) in counts {
            let pk = keys::quality_pk(tenant);
            let sk = keys::quality_sk(day, meter);
            let size = pk.len() + sk.len() + 40 * c.fields().len();
            let Some(update) = add_update(&self.table, pk, sk, &count_fields(c))? else {
                continue;
            };
            self.meter.request();
            self.meter.add(write_units(size));
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(update.key))
                .update_expression(update.update_expression)
                .set_expression_attribute_names(update.expression_attribute_names)
                .set_expression_attribute_values(update.expression_attribute_values)
                .send()
                .await
                .map_err(|e| svc("record_request", e))?;
        }
        Ok(())
    }

    async fn record_chunk(
        &self,
        tenant: &TenantId,
        chunk: &str,
        day: NaiveDate,
        counts: &BTreeMap<MeterName, Counts>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let additions = counts
            .iter()
            .map(|(meter, c)| {
                (
                    keys::quality_pk(tenant),
                    keys::quality_sk(day, meter.as_str()),
                    count_fields(c),
                )
            })
            .collect();
        self.add_once(
            "record_chunk",
            tenant,
            chunk,
            keys::QUALITY_MARKER_SK,
            additions,
            expires_at,
        )
        .await
    }

    async fn record_series(
        &self,
        tenant: &TenantId,
        chunk: &str,
        series: &domain::audit::series::Series,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let additions = series
            .iter()
            .map(|((account, day, meter), d)| {
                (
                    keys::critical_pk(tenant, account),
                    keys::critical_sk(*day, meter),
                    d.fields(),
                )
            })
            .collect();
        self.add_once(
            "record_series",
            tenant,
            chunk,
            keys::CRITICAL_MARKER_SK,
            additions,
            expires_at,
        )
        .await
    }

    async fn record_activity(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        seen: &[(AccountId, DateTime<Utc>)],
    ) -> Result<(), StoreError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let pk = keys::activity_pk(tenant, meter);
        // Up to 16 at a time: a request touching many accounts must not wait serially.
        // Futures are collected first (not mapped lazily) so the future stays `Send`.
        let mut pending = Vec::with_capacity(seen.len());
        for (account, at) in seen {
            let pk = pk.clone();
            pending.push(async move {
                let at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
                self.meter.request();
                self.meter.add(1);
                let res = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(pk))
                    .key("sk", s(account.as_str()))
                    .update_expression("SET last_seen = :t")
                    .condition_expression("attribute_not_exists(last_seen) OR last_seen < :t")
                    .expression_attribute_values(":t", s(at))
                    .send()
                    .await;
                match res {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(svc("record_activity", e)),
                }
            });
        }
        stream::iter(pending)
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl AuditReader for DynamoStore {
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        // One tenant registry serves every scheduled job (score and audit).
        domain::health::store::HealthStore::list_tenants(self).await
    }

    async fn quality(
        &self,
        tenant: &TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<BTreeMap<String, Counts>, StoreError> {
        // Meter names sort after '#' ("~unknown" too): bound by the next day's prefix.
        let lo = format!("{}#", from.format("%Y-%m-%d"));
        let hi = format!("{}#", to.succ_opt().unwrap_or(to).format("%Y-%m-%d"));
        let items = self
            .query_table(
                "quality",
                &self.table,
                keys::quality_pk(tenant),
                Some((lo, hi)),
                true,
                None,
            )
            .await?;
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for item in items {
            let Some(meter) = str_attr(&item, "sk")
                .and_then(|sk| sk.split_once('#'))
                .map(|(_, m)| m.to_owned())
            else {
                continue;
            };
            let mut c = Counts::default();
            for name in item.keys() {
                if name != "pk" && name != "sk" {
                    c.set(name, dec(&item, name));
                }
            }
            out.entry(meter).or_default().add(&c);
        }
        Ok(out)
    }

    async fn activity(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
    ) -> Result<Vec<(AccountId, DateTime<Utc>)>, StoreError> {
        let items = self
            .query_table(
                "activity",
                &self.table,
                keys::activity_pk(tenant, meter),
                None,
                true,
                None,
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let a = AccountId::parse(str_attr(i, "sk")?).ok()?;
                let t = DateTime::parse_from_rfc3339(str_attr(i, "last_seen")?).ok()?;
                Some((a, t.with_timezone(&Utc)))
            })
            .collect())
    }

    async fn critical_series(
        &self,
        tenant: &TenantId,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<CriticalRow>, StoreError> {
        let pk = keys::critical_pk(tenant, account);
        let lo = from.format("%Y-%m-%d").to_string();
        let hi = format!("{}#~", to.format("%Y-%m-%d"));
        let items = self
            .query_table(
                "critical_series",
                &self.table,
                pk.clone(),
                Some((lo, hi)),
                true,
                None,
            )
            .await?;
        items
            .iter()
            .map(|i| {
                let sk = str_attr(i, "sk").unwrap_or_default();
                let (day, meter) = sk
                    .split_once('#')
                    .and_then(|(d, m)| {
                        Some((
                            NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?,
                            MeterName::parse(m).ok()?,
                        ))
                    })
                    .ok_or_else(|| corrupt(&pk, format!("sort key '{sk}'")))?;
                let mut data = CriticalDay::default();
                for name in i.keys() {
                    if name != "pk" && name != "sk" {
                        data.set(name, dec(i, name));
                    }
                }
                Ok(CriticalRow { day, meter, data })
            })
            .collect()
    }

    async fn sampled_events(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError> {
        let pk = keys::sample_pk(tenant, day);
        let items = self
            .query_table(
                "sampled_events",
                &self.ledger_table,
                pk.clone(),
                None,
                true,
                None,
            )
            .await?;
        items
            .iter()
            .map(|i| {
                let get = |name: &str| {
                    str_attr(i, name).ok_or_else(|| corrupt(&pk, format!("missing {name}")))
                };
                Ok(SampledEvent {
                    account: AccountId::parse(get("account")?).map_err(|e| corrupt(&pk, e))?,
                    day,
                    hour: u8::try_from(super::int(i, "hour")).unwrap_or(0).min(23),
                    meter: MeterName::parse(get("meter")?).map_err(|e| corrupt(&pk, e))?,
                    stage: Stage::parse(get("stage")?).ok_or_else(|| corrupt(&pk, "stage"))?,
                    service_line: ServiceLine::parse(get("line")?).map_err(|e| corrupt(&pk, e))?,
                    quantity: dec(i, "q"),
                })
            })
            .collect()
    }

    async fn unmapped_changes(&self, tenant: &TenantId, day: NaiveDate) -> Result<u64, StoreError> {
        Ok(self.unmapped_count(tenant, day).await? as u64)
    }
}

/// Largest stored report; findings are trimmed (their total stays exact) to fit.
const MAX_REPORT_BYTES: usize = 350_000;

#[async_trait]
impl ReportStore for DynamoStore {
    async fn put_report(&self, report: &AuditReport) -> Result<(), StoreError> {
        let mut r = report.clone();
        let mut json = serde_json::to_string(&r).map_err(|e| corrupt("audit report", e))?;
        while json.len() > MAX_REPORT_BYTES && !r.findings.is_empty() {
            let keep = r.findings.len() / 2;
            r.findings.truncate(keep);
            json = serde_json::to_string(&r).map_err(|e| corrupt("audit report", e))?;
        }
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(keys::audits_pk(&r.tenant))),
            ("sk".to_owned(), s(keys::audit_sk(r.run_at))),
            ("json".to_owned(), s(json)),
        ]);
        self.put("put_report", item, None).await.map(|_| ())
    }

    async fn latest_report(&self, tenant: &TenantId) -> Result<Option<AuditReport>, StoreError> {
        let pk = keys::audits_pk(tenant);
        let items = self
            .query_table(
                "latest_report",
                &self.table,
                pk.clone(),
                None,
                false,
                Some(1),
            )
            .await?;
        items.first().map(|i| parse_report(&pk, i)).transpose()
    }

    async fn reports(
        &self,
        tenant: &TenantId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuditReport>, StoreError> {
        let pk = keys::audits_pk(tenant);
        let page = self
            .query_items_page(
                "reports",
                pk.clone(),
                PageRange {
                    cursor_prefix: "",
                    sk: Some((keys::audit_sk(from), keys::audit_sk(to))),
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
                .iter()
                .map(|i| parse_report(&pk, i))
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }
}

fn parse_report(pk: &str, item: &Item) -> Result<AuditReport, StoreError> {
    let json = str_attr(item, "json").ok_or_else(|| corrupt(pk, "report without json"))?;
    serde_json::from_str(json).map_err(|e| corrupt(pk, e))
}
