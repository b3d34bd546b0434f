//! API keys: create, list, revoke, rotate ([`KeyAdmin`](domain::ports::KeyAdmin)).

use super::*;

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
