//! [`QuarantineStore`] in memory: one ordered map per (tenant, meter), keyed as the
//! DynamoDB adapter keys its sort key (`<source>#<event id>`), so paging and
//! replacement behave alike (the suite in [`crate::suite`] runs against both).

use async_trait::async_trait;
use domain::ids::{MeterName, TenantId};
use domain::ports::{Page, StoreError};
use domain::quarantine::{QuarantineStore, Quarantined, MAX_PAGE};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Held events by (tenant, meter), each partition keyed by `<source>#<event id>`.
type Held = BTreeMap<(TenantId, MeterName), BTreeMap<String, Quarantined>>;

#[derive(Default)]
pub struct MemoryQuarantine {
    held: Mutex<Held>,
}

impl MemoryQuarantine {
    /// How many events are held for `tenant`'s `meter`.
    pub fn len(&self, tenant: &TenantId, meter: &MeterName) -> usize {
        self.held
            .lock()
            .map(|h| {
                h.get(&(tenant.clone(), meter.clone()))
                    .map_or(0, BTreeMap::len)
            })
            .unwrap_or(0)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Held>, StoreError> {
        self.held.lock().map_err(|_| StoreError::Service {
            op: "memory_quarantine",
            message: "a previous holder panicked".into(),
        })
    }
}

#[async_trait]
impl QuarantineStore for MemoryQuarantine {
    async fn hold(&self, tenant: &TenantId, events: &[Quarantined]) -> Result<(), StoreError> {
        let mut held = self.lock()?;
        for q in events {
            held.entry((tenant.clone(), q.event.meter.clone()))
                .or_default()
                .insert(q.key(), q.clone());
        }
        Ok(())
    }

    async fn held(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Quarantined>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let held = self.lock()?;
        let Some(partition) = held.get(&(tenant.clone(), meter.clone())) else {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        };
        let mut after = partition
            .iter()
            .filter(|(k, _)| cursor.is_none_or(|c| k.as_str() > c));
        let items: Vec<(&String, &Quarantined)> = after.by_ref().take(limit).collect();
        let next = match after.next() {
            Some(_) => items.last().map(|(k, _)| (*k).clone()),
            None => None,
        };
        Ok(Page {
            items: items.into_iter().map(|(_, q)| q.clone()).collect(),
            next,
        })
    }

    async fn count_held(&self, tenant: &TenantId, meter: &MeterName) -> Result<usize, StoreError> {
        Ok(self
            .lock()?
            .get(&(tenant.clone(), meter.clone()))
            .map_or(0, |p| p.len()))
    }

    async fn release(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        keys: &[String],
    ) -> Result<(), StoreError> {
        let mut held = self.lock()?;
        if let Some(partition) = held.get_mut(&(tenant.clone(), meter.clone())) {
            for k in keys {
                partition.remove(k);
            }
        }
        Ok(())
    }
}
