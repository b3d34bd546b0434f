//! Entitlements ([`EntitlementStore`]).

use super::*;

#[async_trait]
impl EntitlementStore for DynamoStore {
    async fn put_entitlement(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<(), StoreError> {
        let pointer = PointerItem {
            pk: keys::entitlement_pointer_pk(tenant, &ent.id),
            sk: keys::ENTITLEMENT_POINTER_SK.into(),
            account: ent.account.clone(),
        };
        let pointer = serde_dynamo::to_item(pointer).map_err(|e| corrupt("entitlement", e))?;
        self.put("put_entitlement_pointer", pointer, None).await?;
        let item = DataItem {
            pk: keys::entitlements_pk(tenant, &ent.account),
            sk: keys::entitlement_sk(&ent.id),
            data: ent,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("entitlement", e))?;
        self.put("put_entitlement", item, None).await.map(|_| ())
    }

    async fn get_entitlement(
        &self,
        tenant: &TenantId,
        id: &EntitlementId,
    ) -> Result<Option<Entitlement>, StoreError> {
        let pk = keys::entitlement_pointer_pk(tenant, id);
        let Some(item) = self
            .get(
                "get_entitlement_pointer",
                pk.clone(),
                keys::ENTITLEMENT_POINTER_SK,
                true,
            )
            .await?
        else {
            return Ok(None);
        };
        let ptr: PointerItem = serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
        let pk = keys::entitlements_pk(tenant, &ptr.account);
        match self
            .get(
                "get_entitlement",
                pk.clone(),
                &keys::entitlement_sk(id),
                true,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let d: DataItem<Entitlement> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(d.data))
            }
        }
    }

    async fn delete_entitlement(
        &self,
        tenant: &TenantId,
        ent: &Entitlement,
    ) -> Result<(), StoreError> {
        for (pk, sk) in [
            (
                keys::entitlements_pk(tenant, &ent.account),
                keys::entitlement_sk(&ent.id),
            ),
            (
                keys::entitlement_pointer_pk(tenant, &ent.id),
                keys::ENTITLEMENT_POINTER_SK.to_owned(),
            ),
        ] {
            self.meter.request();
            self.meter.add(1);
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .send()
                .await
                .map_err(|e| svc("delete_entitlement", e))?;
        }
        Ok(())
    }

    async fn list_entitlements(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Vec<Entitlement>, StoreError> {
        self.query_data(
            "list_entitlements",
            keys::entitlements_pk(tenant, account),
            "",
        )
        .await
    }
}

pub(super) fn marker_kind(kind: MarkerKind) -> &'static str {
    match kind {
        MarkerKind::Raised => "ALERT",
        MarkerKind::Published => "NOTIFIED",
    }
}
