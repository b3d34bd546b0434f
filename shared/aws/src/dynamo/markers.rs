//! Alert markers ([`MarkerStore`]).

use super::*;

#[async_trait]
impl MarkerStore for DynamoStore {
    async fn claim_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
        owner: &str,
        expires_at: i64,
    ) -> Result<MarkerClaim, StoreError> {
        let pk = keys::marker_pk(tenant, marker_kind(kind), key);
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(pk.clone())),
            ("sk".to_owned(), s(keys::MARKER_SK)),
            ("owner".to_owned(), s(owner)),
            ("done".to_owned(), AttributeValue::Bool(false)),
            ("claimed_at".to_owned(), s(Utc::now().to_rfc3339())),
            ("expires_at".to_owned(), n(expires_at)),
        ]);
        if self
            .put("claim_marker", item, Some("attribute_not_exists(pk)"))
            .await?
        {
            return Ok(MarkerClaim::New);
        }
        let existing = self
            .get("claim_marker_lookup", pk.clone(), keys::MARKER_SK, true)
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("{pk} vanished after a failed condition"))
            })?;
        if str_attr(&existing, "owner") != Some(owner) {
            return Ok(MarkerClaim::Other);
        }
        let done = matches!(existing.get("done"), Some(AttributeValue::Bool(true)));
        let age = str_attr(&existing, "claimed_at")
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map_or(chrono::Duration::days(36_500), |c| {
                Utc::now() - c.with_timezone(&Utc)
            });
        Ok(MarkerClaim::Mine { done, age })
    }

    async fn finish_marker(
        &self,
        tenant: &TenantId,
        kind: MarkerKind,
        key: &str,
    ) -> Result<(), StoreError> {
        self.set_attribute(
            "finish_marker",
            keys::marker_pk(tenant, marker_kind(kind), key),
            keys::MARKER_SK.to_owned(),
            "done",
            AttributeValue::Bool(true),
            Existing::Optional,
        )
        .await
    }
}
