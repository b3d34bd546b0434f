//! Account profiles ([`AccountStore`]).

use super::*;

#[async_trait]
impl AccountStore for DynamoStore {
    async fn put_account(
        &self,
        tenant: &TenantId,
        profile: &AccountProfile,
    ) -> Result<AccountProfile, StoreError> {
        let mut profile = profile.clone();
        let previous = self.get_account(tenant, &profile.account).await?;
        let company = hubspot_company(&profile);
        if let Some(c) = company {
            self.link_company(tenant, c, &profile.account).await?;
            // What HubSpot said about the company before this account named it.
            for (field, prop) in self.company_properties(tenant, c).await? {
                if prop.supersedes(profile.crm_properties.get(&field)) {
                    profile.crm_properties.insert(field, prop);
                }
            }
        }
        let item = DataItem {
            pk: keys::accounts_pk(tenant),
            sk: keys::account_sk(&profile.account),
            data: &profile,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("account", e))?;
        self.put("put_account", item, None).await?;
        // A company the profile no longer names stops counting for it.
        if let Some(old) = previous.as_ref().and_then(hubspot_company) {
            if Some(old) != company {
                self.delete(
                    "unlink_company",
                    keys::hubspot_object_pk(tenant, "company", old),
                    keys::HUBSPOT_ACCOUNT_SK.into(),
                    Some(("account = :a", ":a", s(profile.account.as_str()))),
                )
                .await?;
            }
        }
        Ok(profile)
    }

    async fn get_account(
        &self,
        tenant: &TenantId,
        account: &AccountId,
    ) -> Result<Option<AccountProfile>, StoreError> {
        let pk = keys::accounts_pk(tenant);
        match self
            .get("get_account", pk.clone(), &keys::account_sk(account), true)
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let d: DataItem<AccountProfile> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(d.data))
            }
        }
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        segment: Option<Segment>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AccountProfile>, StoreError> {
        let pk = keys::accounts_pk(tenant);
        self.query_page(
            "list_accounts",
            pk,
            keys::ACCOUNT_PREFIX,
            limit,
            cursor,
            false,
            |req| match segment {
                Some(seg) => req
                    .filter_expression("#d.#s = :seg")
                    .expression_attribute_names("#d", "data")
                    .expression_attribute_names("#s", "segment")
                    .expression_attribute_values(":seg", s(seg.as_str())),
                None => req,
            },
        )
        .await
    }
}
