//! Alert policies, cooldowns and digests ([`DigestStore`](domain::ports::DigestStore)).

use super::*;

#[derive(Serialize, Deserialize)]
pub(super) struct CooldownItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) at: DateTime<Utc>,
    pub(super) expires_at: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct DigestEntry {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) alert: domain::alert::Alert,
    pub(super) reason: String,
    pub(super) expires_at: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct DigestDue {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) bucket: domain::digest::DigestBucket,
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
