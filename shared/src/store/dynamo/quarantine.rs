//! DynamoDB adapter of [`QuarantineStore`]: one partition per (tenant, meter), sort
//! key `<source>#<event id>`, the held event as `data` (docs/adr/0007).

use super::{
    corrupt, decode_cursor, delete_req, encode_cursor, key, put_req, s, str_attr, svc, DataItem,
    DynamoStore, Item,
};
use crate::ids::{MeterName, TenantId};
use crate::keys;
use crate::quarantine::{QuarantineStore, Quarantined, MAX_PAGE};
use crate::store::{Page, StoreError};
use async_trait::async_trait;
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
        let mut start: Option<Item> = match cursor {
            Some(c) => Some(key(pk.clone(), decode_cursor(c, "")?)),
            None => None,
        };
        let mut items = Vec::new();
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(true)
                .limit((limit - items.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| svc("quarantine_held", e))?;
            self.meter.request();
            for item in page.items.unwrap_or_default() {
                let d: DataItem<Quarantined> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                items.push(d.data);
            }
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
