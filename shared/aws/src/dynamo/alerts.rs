//! Each account's recent alerts ([`AlertHistory`](domain::ports::AlertHistory)): one
//! item per alert under the account, sorted by raised time, with a TTL; recording one
//! deletes those beyond the newest [`RECENT_ALERTS_KEPT`].

use super::*;
use domain::alert::{Alert, RECENT_ALERTS_KEPT};

#[derive(Serialize, Deserialize)]
pub(super) struct AlertItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) alert: Alert,
    pub(super) expires_at: i64,
}

/// Sort keys read past the kept ones when trimming: a few left over by a failed trim
/// are removed by the next record.
const TRIM_READ: usize = 10;

impl DynamoStore {
    /// Deletes the account's alerts beyond the newest kept ones (keys only are read).
    async fn trim_alerts(&self, pk: &str) -> Result<usize, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .projection_expression("sk")
            .scan_index_forward(false)
            .limit((RECENT_ALERTS_KEPT + TRIM_READ) as i32)
            .send()
            .await
            .map_err(|e| svc("trim_alerts", e))?;
        let items = page.items.unwrap_or_default();
        // Keys only are returned, but a query is billed on whole items (upper bound:
        // each alert item under 4 KB).
        self.meter
            .read_items(false, items.len(), std::iter::empty());
        let old: Vec<String> = items
            .iter()
            .skip(RECENT_ALERTS_KEPT)
            .filter_map(|i| str_attr(i, "sk").map(str::to_owned))
            .collect();
        for sk in &old {
            self.delete("trim_alerts", pk.to_owned(), sk.clone(), None)
                .await?;
        }
        Ok(old.len())
    }
}

#[async_trait]
impl domain::ports::AlertHistory for DynamoStore {
    async fn record_alert(&self, alert: &Alert) -> Result<(), StoreError> {
        let pk = keys::account_alerts_pk(&alert.tenant, &alert.account);
        let item = AlertItem {
            pk: pk.clone(),
            sk: keys::account_alert_sk(alert),
            alert: alert.clone(),
            expires_at: alert.history_expires_at(),
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt(&pk, e))?;
        self.put("record_alert", item, None).await?;
        let trimmed = self.trim_alerts(&pk).await?;
        if trimmed > 0 {
            tracing::debug!(tenant = %alert.tenant, account = %alert.account, trimmed, "older alerts trimmed");
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
        if limit == 0 {
            return Ok(Vec::new());
        }
        let pk = keys::account_alerts_pk(tenant, account);
        // Expired items may linger until DynamoDB's TTL sweep: read from the oldest
        // time still kept, newest first.
        let oldest = now - chrono::Duration::days(domain::alert::ALERT_HISTORY_DAYS);
        let lo = oldest.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let limit = limit.min(RECENT_ALERTS_KEPT);
        let items = self
            .query_pages(
                "recent_alerts",
                &self.table,
                pk.clone(),
                Some((lo, "~".to_owned())),
                false,
                false,
                Some(limit as i32),
            )
            .await?;
        items
            .into_iter()
            .take(limit)
            .map(|i| {
                serde_dynamo::from_item::<_, AlertItem>(i)
                    .map(|a| a.alert)
                    .map_err(|e| corrupt(&pk, e))
            })
            .filter(|a| a.as_ref().map_or(true, |a| a.kept_at(now)))
            .collect()
    }
}
