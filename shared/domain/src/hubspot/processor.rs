//! After the queue: turns a verified HubSpot webhook batch into usage events.
//!
//! Identity facts (associations, merges) are applied first; each usage change is
//! mapped by the tenant's rules and attributed to a company, or held as unassociated
//! until its association arrives (in either order). Attributed events are queued as a
//! normal chunk, so they are counted by the same exactly-once path as API events:
//! their ids are the change's idempotency key, so redeliveries and HubSpot retries
//! count once.

use super::attribution::{facts, subject, Fact, ObjectRef};
use super::mapping::{default_rules, map_event, Mapped, MappingRule};
use super::profile::{default_profile_sync, profile_change, ProfileChange, ProfileSync};
use super::webhook::{occurred_at_in_range, AppEvent};
use crate::chunk::{pack, SQS_MAX_BYTES};
use crate::event::UsageEvent;
use crate::ids::{AccountId, EventId, Source, TenantId};
use crate::ports::error::StoreError;
use crate::queue::EventQueue;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchKind {
    HubspotWebhook,
    /// A workflow "Send a webhook" action (one change).
    HubspotWorkflow,
    /// Associations imported in bulk through the API.
    IdentityImport,
}

/// The queue message the webhook endpoint sends: verified, parsed, tenant resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBatch {
    pub kind: BatchKind,
    pub id: String,
    pub tenant: TenantId,
    pub received_at: DateTime<Utc>,
    pub events: Vec<AppEvent>,
}

/// A usage change waiting for its object's company.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// The event as it will be counted, with the account still unknown (`unattributed`).
    pub event: UsageEvent,
    pub reason: String,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    async fn company_of(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
    ) -> Result<Option<u64>, StoreError>;
    async fn associate(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        company: u64,
    ) -> Result<(), StoreError>;
    async fn dissociate(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        company: u64,
    ) -> Result<(), StoreError>;
    async fn merge_company(
        &self,
        tenant: &TenantId,
        merged: u64,
        into: u64,
    ) -> Result<(), StoreError>;
    /// The surviving company id after merges.
    async fn survivor(&self, tenant: &TenantId, company: u64) -> Result<u64, StoreError>;
    /// The account whose profile names this company (`crm_ids.hubspot_company_id`).
    async fn account_of_company(
        &self,
        tenant: &TenantId,
        company: u64,
    ) -> Result<Option<AccountId>, StoreError>;
    async fn hold(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        held: &Held,
    ) -> Result<(), StoreError>;
    async fn held(&self, tenant: &TenantId, object: &ObjectRef) -> Result<Vec<Held>, StoreError>;
    async fn release(
        &self,
        tenant: &TenantId,
        object: &ObjectRef,
        ids: &[EventId],
    ) -> Result<(), StoreError>;
    async fn record_unmapped(
        &self,
        tenant: &TenantId,
        ev: &AppEvent,
        reason: &str,
    ) -> Result<(), StoreError>;
    async fn mapping_rules(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Vec<MappingRule>>, StoreError>;
    async fn profile_sync(&self, tenant: &TenantId) -> Result<Option<ProfileSync>, StoreError>;
    /// Keeps the newest value of a synced company property on the company's record
    /// and, when `account` has a profile, on that profile.
    async fn sync_company_property(
        &self,
        tenant: &TenantId,
        change: &ProfileChange,
        account: Option<&AccountId>,
    ) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queuing attributed events failed: {0}")]
    Queue(String),
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub attributed: usize,
    pub released: usize,
    pub held: usize,
    pub unmapped: usize,
    pub facts: usize,
    /// Company property changes copied to account profiles.
    pub profile_updates: usize,
    /// Mapped to a deleted (or, by policy, deprecated) definition: held in quarantine.
    pub quarantined: usize,
}

/// Where mapped changes of retired definitions go (docs/adr/0007): the tenant's
/// policy and the quarantine, as for `POST /v1/events`.
pub struct Retired {
    pub policy: Arc<dyn crate::ports::Directory>,
    pub quarantine: Arc<dyn crate::quarantine::QuarantineStore>,
}

pub struct Processor {
    pub store: Arc<dyn IdentityStore>,
    pub queue: Arc<dyn EventQueue>,
    /// `None`: mapped changes are counted whatever their definition's status.
    pub retired: Option<Retired>,
}

fn usage(
    ev: &AppEvent,
    rule: &MappingRule,
    quantity: rust_decimal::Decimal,
    account: AccountId,
) -> Option<UsageEvent> {
    let object = subject(ev);
    let mut props = serde_json::Map::new();
    props.insert(
        "hubspot".into(),
        json!({"portal_id": ev.portal_id, "subscription_type": ev.subscription_type, "object": object.as_ref().map(|o| format!("{}:{}", o.kind, o.id))}),
    );
    Some(UsageEvent {
        stage: rule.stage,
        service_line: rule.service_line.clone(),
        properties: Some(props),
        ..UsageEvent::new(
            EventId::parse(&ev.idempotency_key()).ok()?,
            account,
            rule.meter.clone(),
            quantity,
            DateTime::from_timestamp_millis(ev.occurred_at)?,
        )
    })
}

impl Processor {
    /// The account HubSpot usage of a company counts for: the surviving company's
    /// linked account (an account profile with `crm_ids.hubspot_company_id`), else an
    /// account keyed by the company id itself.
    async fn account_for(
        &self,
        t: &TenantId,
        company: u64,
    ) -> Result<Option<AccountId>, StoreError> {
        let c = self.store.survivor(t, company).await?;
        if let Some(a) = self.store.account_of_company(t, c).await? {
            return Ok(Some(a));
        }
        Ok(AccountId::parse(&c.to_string()).ok())
    }
}

/// Identity answers already read while processing one batch. A batch often carries
/// several changes of one object, or of objects of one company, and each answer costs
/// strongly consistent reads (docs/benchmarks.md, the HubSpot workload's bill). Only
/// found companies are kept, so an object still without one is looked up again.
#[derive(Default)]
struct Lookups {
    companies: BTreeMap<ObjectRef, u64>,
    accounts: BTreeMap<u64, Option<AccountId>>,
}

impl Processor {
    async fn company_once(
        &self,
        t: &TenantId,
        object: &ObjectRef,
        seen: &mut Lookups,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(c) = seen.companies.get(object) {
            return Ok(Some(*c));
        }
        let found = self.store.company_of(t, object).await?;
        if let Some(c) = found {
            seen.companies.insert(object.clone(), c);
        }
        Ok(found)
    }

    async fn account_once(
        &self,
        t: &TenantId,
        company: u64,
        seen: &mut Lookups,
    ) -> Result<Option<AccountId>, StoreError> {
        if let Some(a) = seen.accounts.get(&company) {
            return Ok(a.clone());
        }
        let a = self.account_for(t, company).await?;
        seen.accounts.insert(company, a.clone());
        Ok(a)
    }
}

/// Account of a held event until its company is known, replaced when it is released.
const UNATTRIBUTED: &str = "unattributed";

impl Processor {
    pub async fn process(&self, batch: &WebhookBatch) -> Result<Report, ProcessError> {
        let t = &batch.tenant;
        let mut report = Report::default();
        let rules = self
            .store
            .mapping_rules(t)
            .await?
            .unwrap_or_else(default_rules);
        let sync = self
            .store
            .profile_sync(t)
            .await?
            .unwrap_or_else(default_profile_sync);

        // 1. Identity first, so changes in the same batch attribute.
        let mut newly_linked: Vec<(ObjectRef, u64)> = Vec::new();
        for ev in &batch.events {
            for fact in facts(ev) {
                report.facts += 1;
                match fact {
                    Fact::Associate { object, company } => {
                        self.store.associate(t, &object, company).await?;
                        newly_linked.push((object, company));
                    }
                    Fact::Dissociate { object, company } => {
                        self.store.dissociate(t, &object, company).await?
                    }
                    Fact::CompanyMerged { merged, into } => {
                        self.store.merge_company(t, merged, into).await?
                    }
                }
            }
        }

        // 2. Map and attribute each usage change. Identity facts are all applied
        // above, so answers read from here on hold for the rest of the batch.
        let mut seen = Lookups::default();
        let mut out: Vec<UsageEvent> = Vec::new();
        let mut releases: BTreeMap<ObjectRef, Vec<EventId>> = BTreeMap::new();
        for ev in &batch.events {
            if ev.subscription_type.ends_with(".associationChange")
                || ev.subscription_type.ends_with(".merge")
            {
                continue;
            }
            // Before 2000 or minutes after it reached ingest: recorded with its reason,
            // never counted (a time HubSpot's signature covers, so not a forgery).
            if !occurred_at_in_range(ev.occurred_at, batch.received_at.timestamp_millis())
                || DateTime::from_timestamp_millis(ev.occurred_at).is_none()
            {
                report.unmapped += 1;
                self.store
                    .record_unmapped(t, ev, "occurred_at_out_of_range")
                    .await?;
                continue;
            }
            let profile_synced = match profile_change(&sync, ev) {
                None => false,
                Some(Ok(mut change)) => {
                    change.company = self.store.survivor(t, change.company).await?;
                    let account = self.account_for(t, change.company).await?;
                    self.store
                        .sync_company_property(t, &change, account.as_ref())
                        .await?;
                    report.profile_updates += 1;
                    true
                }
                Some(Err(why)) => {
                    report.unmapped += 1;
                    self.store
                        .record_unmapped(t, ev, &format!("invalid_profile_value: {why}"))
                        .await?;
                    continue;
                }
            };
            let (rule, quantity) = match map_event(&rules, ev) {
                Mapped::Usage { rule, quantity } => (rule, quantity),
                Mapped::Unmapped if profile_synced => continue,
                Mapped::Unmapped => {
                    report.unmapped += 1;
                    self.store.record_unmapped(t, ev, "no_mapping_rule").await?;
                    continue;
                }
                Mapped::BadQuantity(code, why) => {
                    tracing::info!(tenant = %t, code = code.as_str(), subscription_type = %ev.subscription_type, "HubSpot change has no usable quantity");
                    report.unmapped += 1;
                    self.store
                        .record_unmapped(t, ev, &format!("{}: {why}", code.as_str()))
                        .await?;
                    continue;
                }
            };
            let Some(object) = subject(ev) else {
                // A workflow payload may name only the company.
                if let Some(c) = ev.associated_company_id {
                    if let Some(u) = self
                        .account_once(t, c, &mut seen)
                        .await?
                        .and_then(|a| usage(ev, rule, quantity, a))
                    {
                        out.push(u);
                        report.attributed += 1;
                    }
                    continue;
                }
                report.unmapped += 1;
                self.store.record_unmapped(t, ev, "no_object_id").await?;
                continue;
            };
            let company = if object.kind == "company" {
                Some(object.id)
            } else {
                self.company_once(t, &object, &mut seen).await?
            };
            match company {
                Some(c) => {
                    if let Some(u) = self
                        .account_once(t, c, &mut seen)
                        .await?
                        .and_then(|a| usage(ev, rule, quantity, a))
                    {
                        out.push(u);
                        report.attributed += 1;
                    }
                }
                None => {
                    let Some(pending_event) = AccountId::parse(UNATTRIBUTED)
                        .ok()
                        .and_then(|a| usage(ev, rule, quantity, a))
                    else {
                        continue;
                    };
                    let held = Held {
                        event: pending_event,
                        reason: format!(
                            "no company associated with {} {} yet",
                            object.kind, object.id
                        ),
                    };
                    self.store.hold(t, &object, &held).await?;
                    report.held += 1;
                    // The association may have landed while we held it: check again so a
                    // concurrent association never misses this event.
                    if let Some(c) = self.store.company_of(t, &object).await? {
                        seen.companies.insert(object.clone(), c);
                        newly_linked.push((object, c));
                    }
                }
            }
        }

        // 3. Release what newly linked objects were holding.
        for (object, company) in newly_linked {
            let Some(account) = self.account_once(t, company, &mut seen).await? else {
                continue;
            };
            for held in self.store.held(t, &object).await? {
                releases
                    .entry(object.clone())
                    .or_default()
                    .push(held.event.id.clone());
                out.push(UsageEvent {
                    account: account.clone(),
                    ..held.event
                });
                report.released += 1;
            }
        }

        // 4. Queue, then forget what was released. A failure retries the whole batch.
        let mut indexed: Vec<(usize, UsageEvent)> = out.into_iter().enumerate().collect();
        if let (Some(r), false) = (&self.retired, indexed.is_empty()) {
            if let Some(mut policy) = r.policy.tenant_policy(t).await? {
                // HubSpot has been answered already: there is nobody to refuse a change
                // to, so a deleted meter's changes are held whatever the policy says.
                policy.governance.policy.deleted_meter_events =
                    crate::quarantine::DeletedMeterEvents::Quarantine;
                let (count, hold) = crate::quarantine::split(indexed, &policy);
                if !hold.is_empty() {
                    let records: Vec<crate::quarantine::Quarantined> = hold
                        .into_iter()
                        .map(|(_, event, reason)| crate::quarantine::Quarantined {
                            source: Source::Hubspot,
                            reason,
                            received_at: batch.received_at,
                            event,
                        })
                        .collect();
                    r.quarantine.hold(t, &records).await?;
                    report.quarantined += records.len();
                }
                indexed = count;
            }
        }
        if !indexed.is_empty() {
            // Fresh chunk ids: a redelivered batch may attribute a different set of
            // events, and a chunk id must always name one immutable set (ADR 0001).
            let mut new_id = || uuid::Uuid::now_v7().to_string();
            let chunks = pack(
                t,
                Source::Hubspot,
                batch.received_at,
                indexed,
                SQS_MAX_BYTES - 1024,
                &mut new_id,
            )
            .map_err(|e| ProcessError::Queue(e.to_string()))?;
            let bodies: Vec<String> = chunks.into_iter().map(|c| c.body).collect();
            for r in self.queue.send(&bodies).await {
                r.map_err(|e| ProcessError::Queue(e.to_string()))?;
            }
        }
        for (object, ids) in releases {
            self.store.release(t, &object, &ids).await?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Companies of tickets, and how often each identity read was made.
    #[derive(Default)]
    struct CountingIdentities {
        companies: Mutex<HashMap<ObjectRef, u64>>,
        reads: Mutex<BTreeMap<&'static str, usize>>,
    }

    impl CountingIdentities {
        fn read(&self, what: &'static str) {
            if let Ok(mut r) = self.reads.lock() {
                *r.entry(what).or_default() += 1;
            }
        }
        fn reads(&self, what: &str) -> usize {
            self.reads
                .lock()
                .map(|r| r.get(what).copied().unwrap_or(0))
                .unwrap_or(0)
        }
    }

    #[async_trait]
    impl IdentityStore for CountingIdentities {
        async fn company_of(&self, _: &TenantId, o: &ObjectRef) -> Result<Option<u64>, StoreError> {
            self.read("company_of");
            Ok(self.companies.lock().ok().and_then(|c| c.get(o).copied()))
        }
        async fn associate(&self, _: &TenantId, o: &ObjectRef, c: u64) -> Result<(), StoreError> {
            if let Ok(mut m) = self.companies.lock() {
                m.insert(o.clone(), c);
            }
            Ok(())
        }
        async fn dissociate(&self, _: &TenantId, _: &ObjectRef, _: u64) -> Result<(), StoreError> {
            Ok(())
        }
        async fn merge_company(&self, _: &TenantId, _: u64, _: u64) -> Result<(), StoreError> {
            Ok(())
        }
        async fn survivor(&self, _: &TenantId, company: u64) -> Result<u64, StoreError> {
            self.read("survivor");
            Ok(company)
        }
        async fn account_of_company(
            &self,
            _: &TenantId,
            _: u64,
        ) -> Result<Option<AccountId>, StoreError> {
            self.read("account_of_company");
            Ok(None)
        }
        async fn hold(&self, _: &TenantId, _: &ObjectRef, _: &Held) -> Result<(), StoreError> {
            Ok(())
        }
        async fn held(&self, _: &TenantId, _: &ObjectRef) -> Result<Vec<Held>, StoreError> {
            Ok(Vec::new())
        }
        async fn release(
            &self,
            _: &TenantId,
            _: &ObjectRef,
            _: &[EventId],
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn record_unmapped(
            &self,
            _: &TenantId,
            _: &AppEvent,
            _: &str,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn mapping_rules(
            &self,
            _: &TenantId,
        ) -> Result<Option<Vec<MappingRule>>, StoreError> {
            Ok(None)
        }
        async fn profile_sync(&self, _: &TenantId) -> Result<Option<ProfileSync>, StoreError> {
            Ok(None)
        }
        async fn sync_company_property(
            &self,
            _: &TenantId,
            _: &ProfileChange,
            _: Option<&AccountId>,
        ) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// Keeps the chunk bodies it is sent.
    #[derive(Default)]
    struct KeptQueue(Mutex<Vec<String>>);

    #[async_trait]
    impl EventQueue for KeptQueue {
        async fn send(&self, bodies: &[String]) -> Vec<Result<(), crate::queue::QueueError>> {
            if let Ok(mut kept) = self.0.lock() {
                kept.extend(bodies.iter().cloned());
            }
            bodies.iter().map(|_| Ok(())).collect()
        }
    }

    #[tokio::test]
    async fn a_batch_reads_each_tickets_company_and_each_companys_account_once() {
        let now = Utc::now();
        let ms = now.timestamp_millis();
        let store = Arc::new(CountingIdentities::default());
        let tenant = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        // 50 tickets of 5 companies, associated earlier.
        for ticket in 0..50u64 {
            let o = ObjectRef {
                kind: "ticket".into(),
                id: 1000 + ticket,
            };
            store.associate(&tenant, &o, 500 + ticket % 5).await.ok();
        }
        // A creation and a stage change of each ticket: 100 changes.
        let events: Vec<serde_json::Value> = (0..50u64)
            .flat_map(|i| {
                [
                    json!({"eventId": i, "subscriptionId": 11, "portalId": 62515, "appId": 77, "occurredAt": ms - 60_000,
                           "subscriptionType": "ticket.creation", "attemptNumber": 0, "objectId": 1000 + i}),
                    json!({"eventId": 5000 + i, "subscriptionId": 13, "portalId": 62515, "appId": 77, "occurredAt": ms - 30_000,
                           "subscriptionType": "ticket.propertyChange", "attemptNumber": 0, "objectId": 1000 + i,
                           "propertyName": "hs_pipeline_stage", "propertyValue": "4"}),
                ]
            })
            .collect();
        let body = serde_json::to_vec(&events).unwrap_or_default();
        let batch = WebhookBatch {
            kind: BatchKind::HubspotWebhook,
            id: "batch-1".into(),
            tenant: tenant.clone(),
            received_at: now,
            events: super::super::webhook::parse_batch(&body).unwrap_or_else(|e| panic!("{e}")),
        };
        let queue = Arc::new(KeptQueue::default());
        let processor = Processor {
            store: store.clone(),
            queue: queue.clone(),
            retired: None,
        };
        let report = processor
            .process(&batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.attributed, 100, "{report:?}");
        assert_eq!(store.reads("company_of"), 50, "one read per ticket");
        assert_eq!(store.reads("survivor"), 5, "one read per company");
        assert_eq!(store.reads("account_of_company"), 5, "one read per company");
        // Each change still counts on its own ticket's company.
        let sent = queue.0.lock().map(|q| q.join("\n")).unwrap_or_default();
        for company in 500..505 {
            assert!(
                sent.contains(&format!("\"account\":\"{company}\"")),
                "{company}"
            );
        }
    }
}
