//! DynamoDB adapter of [`QuarantineStore`]: one partition per (tenant, meter), sort
//! key `<source>#<event id>`, the held event as `data` (docs/adr/0007).

use super::{corrupt, delete_req, put_req, DataItem, DynamoStore};
use async_trait::async_trait;
use domain::ids::{MeterName, TenantId};
use domain::keys;
use domain::ports::{Page, StoreError};
use domain::quarantine::{QuarantineStore, Quarantined, MAX_PAGE};
use std::collections::BTreeMap;

#[async_trait]
impl QuarantineStore for DynamoStore {
    async fn hold(&self, tenant: &TenantId, events: &[Quarantined]) -> Result<(), StoreError> {
        // BatchWriteItem refuses two writes of one key in a call: the last copy wins.
        let mut by_key: BTreeMap<(String, String), &Quarantined> = BTreeMap::new();
        for q in events {
            by_key.insert((keys::quarantine_pk(tenant, &q.event.meter), q.key()), q);
        }
        let mut requests = Vec::with_capacity(by_key.len());
        for ((pk, sk), data) in by_key {
            let item = serde_dynamo::to_item(DataItem { pk, sk, data })
                .map_err(|e| corrupt("quarantined event", e))?;
            requests.push(put_req(item)?);
        }
        self.batch_write("quarantine_hold", requests).await
    }

    async fn held(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Quarantined>, StoreError> {
        let pk = keys::quarantine_pk(tenant, meter);
        let limit = limit.clamp(1, MAX_PAGE);
        self.query_page("quarantine_held", pk, "", limit, cursor, true, |req| req)
            .await
    }

    async fn count_held(&self, tenant: &TenantId, meter: &MeterName) -> Result<usize, StoreError> {
        self.count_items(
            "quarantine_count",
            keys::quarantine_pk(tenant, meter),
            "",
            false,
        )
        .await
    }

    async fn release(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
        keys_: &[String],
    ) -> Result<(), StoreError> {
        let pk = keys::quarantine_pk(tenant, meter);
        let requests = keys_
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|sk| delete_req(pk.clone(), sk.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_write("quarantine_release", requests).await
    }
}
