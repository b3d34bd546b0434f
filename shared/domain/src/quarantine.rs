//! Quarantine: events of a deleted (or, by choice, deprecated) definition are held,
//! never dropped, and replayed through the exactly-once path when the definition is
//! active again (docs/adr/0007).
//!
//! Pure: the tenant's choice ([`GovernancePolicy`]), which events it holds
//! ([`split`]), and the stored record ([`Quarantined`]). Storage sits behind
//! [`QuarantineStore`] (DynamoDB adapter in `aws/src/dynamo/quarantine.rs`).

use crate::event::{DefinitionStatus, TenantPolicy, UsageEvent};
use crate::ids::{MeterName, Source, TenantId};
use crate::input::{input_error, InputError};
use crate::ports::error::{Page, StoreError};
pub use crate::registry::{DeletedMeterEvents, DeprecatedMeterEvents, GovernancePolicy};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The stored policy with who set it and when (`GET /v1/governance/policy`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub policy: GovernancePolicy,
    pub updated_at: DateTime<Utc>,
    /// The principal (`key:<hash prefix>`), never the key.
    pub updated_by: String,
}

/// Validates a `PUT /v1/governance/policy` body; fields left out keep the defaults.
pub fn policy_from_body(body: &[u8]) -> Result<GovernancePolicy, InputError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        deleted_meter_events: Option<DeletedMeterEvents>,
        #[serde(default)]
        deprecated_meter_events: Option<DeprecatedMeterEvents>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|e| {
        input_error(
            "invalid_governance_policy",
            format!(
                "policy could not be read (line {}, column {}): {e}; deleted_meter_events is \
                 quarantine or reject, deprecated_meter_events is flag or quarantine",
                e.line(),
                e.column()
            ),
        )
    })?;
    let d = GovernancePolicy::default();
    Ok(GovernancePolicy {
        deleted_meter_events: b.deleted_meter_events.unwrap_or(d.deleted_meter_events),
        deprecated_meter_events: b
            .deprecated_meter_events
            .unwrap_or(d.deprecated_meter_events),
    })
}

/// Why an event is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    MeterDeleted,
    MeterDeprecated,
}

impl QuarantineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MeterDeleted => "meter_deleted",
            Self::MeterDeprecated => "meter_deprecated",
        }
    }

    /// One sentence for the sender.
    pub fn message(self, meter: &MeterName) -> String {
        match self {
            Self::MeterDeleted => format!(
                "meter '{meter}' is deleted; the event is held in quarantine and will be counted \
                 if the definition is restored"
            ),
            Self::MeterDeprecated => format!(
                "meter '{meter}' is deprecated and this tenant quarantines its events; it will be \
                 counted if the definition is made active again"
            ),
        }
    }
}

/// Whether an event of `meter` is held, and why, under the tenant's policy.
pub fn reason(policy: &TenantPolicy, meter: &MeterName) -> Option<QuarantineReason> {
    let rule = policy.meters.get(meter)?;
    let choice = policy.governance.policy;
    match rule.status {
        DefinitionStatus::Active => None,
        DefinitionStatus::Deleted => match choice.deleted_meter_events {
            DeletedMeterEvents::Quarantine => Some(QuarantineReason::MeterDeleted),
            // Refused by validation; never reaches here as a valid event.
            DeletedMeterEvents::Reject => None,
        },
        DefinitionStatus::Deprecated => match choice.deprecated_meter_events {
            DeprecatedMeterEvents::Flag => None,
            DeprecatedMeterEvents::Quarantine => Some(QuarantineReason::MeterDeprecated),
        },
    }
}

/// Valid events of one request, split into those to count and those to hold.
pub type Split = (
    Vec<(usize, UsageEvent)>,
    Vec<(usize, UsageEvent, QuarantineReason)>,
);

/// Splits validated events (request index, event) by the tenant's policy; order kept.
pub fn split(valid: Vec<(usize, UsageEvent)>, policy: &TenantPolicy) -> Split {
    let mut count = Vec::with_capacity(valid.len());
    let mut hold = Vec::new();
    for (i, e) in valid {
        match reason(policy, &e.meter) {
            None => count.push((i, e)),
            Some(r) => hold.push((i, e, r)),
        }
    }
    (count, hold)
}

/// One held event, as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub source: Source,
    pub reason: QuarantineReason,
    pub received_at: DateTime<Utc>,
    pub event: UsageEvent,
}

impl Quarantined {
    /// Stable within (tenant, meter): a resent event replaces its copy, never doubles.
    pub fn key(&self) -> String {
        format!("{}#{}", self.source.as_str(), self.event.id)
    }
}

/// Largest page of held events one call lists or replays.
pub const MAX_PAGE: usize = 1000;

/// Where held events live.
#[async_trait]
pub trait QuarantineStore: Send + Sync {
    /// Stores held events (any meters); a resent event overwrites its own copy.
    async fn hold(&self, tenant: &TenantId, events: &[Quarantined]) -> Result<(), StoreError>;
    /// Held events of one meter in key order, from after `cursor`.
    async fn held(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Quarantined>, StoreError>;
    /// How many events of one meter are held now.
    async fn count_held(&self, tenant: &TenantId, meter: &MeterName) -> Result<usize, StoreError>;
    /// Removes held events once they are safely on the events queue.
    async fn release(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        keys: &[String],
    ) -> Result<(), StoreError>;
}

/// What one replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Replay {
    /// Held events put on the events queue (and removed from quarantine).
    pub replayed: usize,
    /// Whether held events are left (the budget ran out, or a send failed).
    pub remaining: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("packing held events failed: {0}")]
    Pack(#[from] crate::chunk::PackError),
    #[error(
        "{replayed} held event(s) were queued before the events queue refused a message: {message}"
    )]
    Queue { replayed: usize, message: String },
}

/// Puts up to `budget` held events of `meter` on the events queue and removes what
/// was queued. Safe to repeat or to crash half-way: a held event is removed only after
/// its message is on the queue, and the ledger counts an event id once, so an event
/// queued twice (crash between send and removal) is still counted once.
/// (Tested on the in-memory quarantine and queue: `shared/memory/tests/quarantine_replay.rs`.)
pub async fn replay(
    store: &dyn QuarantineStore,
    queue: &dyn crate::queue::EventQueue,
    tenant: &TenantId,
    meter: &MeterName,
    budget: usize,
    max_message_bytes: usize,
    now: DateTime<Utc>,
) -> Result<Replay, ReplayError> {
    let mut done = Replay::default();
    while done.replayed < budget {
        let page = store
            .held(tenant, meter, (budget - done.replayed).min(MAX_PAGE), None)
            .await?;
        if page.items.is_empty() {
            done.remaining = false;
            return Ok(done);
        }
        let keys: Vec<String> = page.items.iter().map(Quarantined::key).collect();
        let mut by_source: std::collections::BTreeMap<Source, Vec<(usize, UsageEvent)>> =
            Default::default();
        for (i, q) in page.items.into_iter().enumerate() {
            by_source.entry(q.source).or_default().push((i, q.event));
        }
        let mut chunks = Vec::new();
        for (source, events) in by_source {
            let mut new_id = || uuid::Uuid::now_v7().to_string();
            chunks.extend(crate::chunk::pack(
                tenant,
                source,
                now,
                events,
                max_message_bytes,
                &mut new_id,
            )?);
        }
        let bodies: Vec<String> = chunks.iter().map(|c| c.body.clone()).collect();
        let sent = queue.send(&bodies).await;
        let mut queued = Vec::new();
        let mut failure = None;
        for (chunk, result) in chunks.iter().zip(sent) {
            match result {
                Ok(()) => queued.extend(chunk.indices.iter().filter_map(|&i| keys.get(i).cloned())),
                Err(e) => failure = Some(e.to_string()),
            }
        }
        store.release(tenant, meter, &queued).await?;
        done.replayed += queued.len();
        if let Some(message) = failure {
            return Err(ReplayError::Queue {
                replayed: done.replayed,
                message,
            });
        }
        if page.next.is_none() {
            done.remaining = false;
            return Ok(done);
        }
        done.remaining = true;
    }
    done.remaining = !store.held(tenant, meter, 1, None).await?.items.is_empty();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MeterRule;
    use crate::ids::{AccountId, EventId, ServiceLine};
    use rust_decimal::Decimal;

    fn policy(statuses: &[(&str, DefinitionStatus)], g: GovernancePolicy) -> TenantPolicy {
        let mut p = TenantPolicy::default();
        for (m, s) in statuses {
            let meter = MeterName::parse(m).unwrap();
            p.meters.insert(
                meter.clone(),
                MeterRule {
                    meter,
                    unit: None,
                    status: *s,
                },
            );
        }
        p.governance.policy = g;
        p
    }

    fn ev(id: &str, meter: &str) -> UsageEvent {
        UsageEvent {
            service_line: ServiceLine::parse("default").unwrap(),
            ..UsageEvent::new(
                EventId::parse(id).unwrap(),
                AccountId::parse("acme").unwrap(),
                MeterName::parse(meter).unwrap(),
                Decimal::ONE,
                Utc::now(),
            )
        }
    }

    #[test]
    fn by_default_deleted_meters_are_held_and_deprecated_ones_counted() {
        let p = policy(
            &[
                ("live", DefinitionStatus::Active),
                ("gone", DefinitionStatus::Deleted),
                ("old", DefinitionStatus::Deprecated),
            ],
            GovernancePolicy::default(),
        );
        let (count, hold) = split(
            vec![
                (0, ev("a", "live")),
                (1, ev("b", "gone")),
                (2, ev("c", "old")),
            ],
            &p,
        );
        assert_eq!(
            count.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(hold.len(), 1);
        assert_eq!(hold[0].0, 1);
        assert_eq!(hold[0].2, QuarantineReason::MeterDeleted);
    }

    #[test]
    fn a_tenant_can_hold_deprecated_meters_too() {
        let p = policy(
            &[("old", DefinitionStatus::Deprecated)],
            GovernancePolicy {
                deprecated_meter_events: DeprecatedMeterEvents::Quarantine,
                ..Default::default()
            },
        );
        let (count, hold) = split(vec![(0, ev("c", "old"))], &p);
        assert!(count.is_empty());
        assert_eq!(hold[0].2.as_str(), "meter_deprecated");
    }

    #[test]
    fn a_policy_body_keeps_defaults_for_what_it_leaves_out_and_refuses_the_unknown() {
        let p = policy_from_body(br#"{"deleted_meter_events":"reject"}"#).unwrap();
        assert_eq!(p.deleted_meter_events, DeletedMeterEvents::Reject);
        assert_eq!(p.deprecated_meter_events, DeprecatedMeterEvents::Flag);
        for bad in [
            &br#"{"deleted_meter_events":"drop"}"#[..],
            br#"{"delete":"reject"}"#,
            b"[1]",
            b"{",
        ] {
            assert_eq!(
                policy_from_body(bad).unwrap_err().code,
                "invalid_governance_policy"
            );
        }
    }

    #[test]
    fn a_held_event_is_keyed_by_source_and_id_so_a_resend_replaces_it() {
        let q = |at| Quarantined {
            source: Source::Api,
            reason: QuarantineReason::MeterDeleted,
            received_at: at,
            event: ev("e-1", "gone"),
        };
        assert_eq!(q(Utc::now()).key(), "api#e-1");
        assert_eq!(q(Utc::now()).key(), q(Utc::now()).key());
    }
}
