//! HubSpot identities and mapping rules.

use super::*;

#[async_trait]
impl domain::hubspot::processor::IdentityStore for DynamoStore {
    async fn company_of(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
    ) -> Result<Option<u64>, StoreError> {
        let pk = keys::hubspot_object_pk(t, &o.kind, o.id);
        match self
            .get("company_of", pk.clone(), keys::HUBSPOT_COMPANY_SK, true)
            .await?
        {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, CompanyLink>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .company,
            )),
        }
    }

    async fn associate(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        company: u64,
    ) -> Result<(), StoreError> {
        let item = CompanyLink {
            pk: keys::hubspot_object_pk(t, &o.kind, o.id),
            sk: keys::HUBSPOT_COMPANY_SK.into(),
            company,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("company link", e))?;
        self.put("associate", item, None).await.map(|_| ())
    }

    async fn dissociate(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        company: u64,
    ) -> Result<(), StoreError> {
        self.delete(
            "dissociate",
            keys::hubspot_object_pk(t, &o.kind, o.id),
            keys::HUBSPOT_COMPANY_SK.into(),
            Some(("company = :c", ":c", n(company))),
        )
        .await
    }

    async fn merge_company(&self, t: &TenantId, merged: u64, into: u64) -> Result<(), StoreError> {
        let item = CompanyLink {
            pk: keys::hubspot_object_pk(t, "company", merged),
            sk: keys::HUBSPOT_MERGED_SK.into(),
            company: into,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("merge", e))?;
        self.put("merge_company", item, None).await.map(|_| ())
    }

    async fn survivor(&self, t: &TenantId, company: u64) -> Result<u64, StoreError> {
        let mut current = company;
        // Merge chains are short; the bound also stops a cycle.
        for _ in 0..8 {
            let pk = keys::hubspot_object_pk(t, "company", current);
            match self
                .get("survivor", pk.clone(), keys::HUBSPOT_MERGED_SK, true)
                .await?
            {
                Some(item) => {
                    current = serde_dynamo::from_item::<_, CompanyLink>(item)
                        .map_err(|e| corrupt(&pk, e))?
                        .company
                }
                None => break,
            }
        }
        Ok(current)
    }

    async fn profile_sync(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::hubspot::profile::ProfileSync>, StoreError> {
        domain::ports::MappingStore::get_profile_sync(self, t).await
    }

    async fn sync_company_property(
        &self,
        t: &TenantId,
        change: &domain::hubspot::profile::ProfileChange,
        account: Option<&AccountId>,
    ) -> Result<(), StoreError> {
        let field = change.field.as_str();
        let changed_ms = change.property.changed_at.timestamp_millis();
        let item = PropertyItem {
            pk: keys::hubspot_object_pk(t, "company", change.company),
            sk: format!("{}{field}", keys::HUBSPOT_PROPERTY_PREFIX),
            field: field.to_owned(),
            data: change.property.clone(),
            changed_ms,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("company property", e))?;
        let newest = self
            .put_if(
                "sync_company_property",
                item,
                Some("attribute_not_exists(pk) OR changed_ms < :t"),
                &[(":t", n(changed_ms))],
            )
            .await?;
        if !newest {
            return Ok(()); // an equal or newer value is already recorded
        }
        let Some(account) = account else {
            return Ok(());
        };
        let Some(mut profile) = self.get_account(t, account).await? else {
            return Ok(()); // copied when the account is created and names the company
        };
        if change
            .property
            .supersedes(profile.crm_properties.get(field))
        {
            profile
                .crm_properties
                .insert(field.to_owned(), change.property.clone());
            let item = DataItem {
                pk: keys::accounts_pk(t),
                sk: keys::account_sk(account),
                data: &profile,
            };
            let item = serde_dynamo::to_item(item).map_err(|e| corrupt("account", e))?;
            self.put("sync_profile", item, None).await?;
        }
        Ok(())
    }

    async fn account_of_company(
        &self,
        t: &TenantId,
        company: u64,
    ) -> Result<Option<AccountId>, StoreError> {
        let pk = keys::hubspot_object_pk(t, "company", company);
        match self
            .get(
                "account_of_company",
                pk.clone(),
                keys::HUBSPOT_ACCOUNT_SK,
                true,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, AccountLink>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .account,
            )),
        }
    }

    async fn hold(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        held: &domain::hubspot::processor::Held,
    ) -> Result<(), StoreError> {
        let item = DataItem {
            pk: keys::hubspot_object_pk(t, &o.kind, o.id),
            sk: format!("{}{}", keys::HUBSPOT_PENDING_PREFIX, held.event.id),
            data: held,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("held event", e))?;
        self.put("hold", item, None).await.map(|_| ())
    }

    async fn held(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
    ) -> Result<Vec<domain::hubspot::processor::Held>, StoreError> {
        let items: Vec<DataItem<domain::hubspot::processor::Held>> = self
            .query_prefix(
                "held",
                keys::hubspot_object_pk(t, &o.kind, o.id),
                keys::HUBSPOT_PENDING_PREFIX,
            )
            .await?;
        Ok(items.into_iter().map(|d| d.data).collect())
    }

    async fn release(
        &self,
        t: &TenantId,
        o: &domain::hubspot::attribution::ObjectRef,
        ids: &[domain::ids::EventId],
    ) -> Result<(), StoreError> {
        for id in ids {
            self.delete(
                "release",
                keys::hubspot_object_pk(t, &o.kind, o.id),
                format!("{}{id}", keys::HUBSPOT_PENDING_PREFIX),
                None,
            )
            .await?;
        }
        Ok(())
    }

    async fn record_unmapped(
        &self,
        t: &TenantId,
        ev: &domain::hubspot::webhook::AppEvent,
        reason: &str,
    ) -> Result<(), StoreError> {
        let day = DateTime::from_timestamp_millis(ev.occurred_at)
            .unwrap_or_else(Utc::now)
            .date_naive();
        let item: Item = HashMap::from([
            ("pk".to_owned(), s(keys::hubspot_unmapped_pk(t, day))),
            ("sk".to_owned(), s(ev.idempotency_key())),
            (
                "subscription_type".to_owned(),
                s(ev.subscription_type.chars().take(100).collect::<String>()),
            ),
            (
                "reason".to_owned(),
                s(reason.chars().take(300).collect::<String>()),
            ),
            (
                "expires_at".to_owned(),
                n((Utc::now() + chrono::Duration::days(400)).timestamp()),
            ),
        ]);
        self.put("record_unmapped", item, None).await.map(|_| ())
    }

    async fn mapping_rules(
        &self,
        t: &TenantId,
    ) -> Result<Option<Vec<domain::hubspot::mapping::MappingRule>>, StoreError> {
        domain::ports::MappingStore::get_mapping_rules(self, t).await
    }
}

impl DynamoStore {
    /// Counts HubSpot changes no rule mapped on a day (for audits and tests).
    pub async fn unmapped_count(&self, t: &TenantId, day: NaiveDate) -> Result<usize, StoreError> {
        Ok(self
            .query_all(
                "unmapped_count",
                keys::hubspot_unmapped_pk(t, day),
                None,
                false,
            )
            .await?
            .len())
    }
}

#[async_trait]
impl domain::ports::MappingStore for DynamoStore {
    async fn get_mapping_rules(
        &self,
        t: &TenantId,
    ) -> Result<Option<Vec<domain::hubspot::mapping::MappingRule>>, StoreError> {
        self.get_data(
            "mapping_rules",
            keys::tenant_pk(t),
            keys::HUBSPOT_RULES_SK,
            false,
        )
        .await
    }

    async fn put_mapping_rules(
        &self,
        t: &TenantId,
        rules: &[domain::hubspot::mapping::MappingRule],
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_mapping_rules",
            keys::tenant_pk(t),
            keys::HUBSPOT_RULES_SK.to_owned(),
            rules,
        )
        .await
    }

    async fn get_profile_sync(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::hubspot::profile::ProfileSync>, StoreError> {
        self.get_data(
            "profile_sync",
            keys::tenant_pk(t),
            keys::HUBSPOT_PROFILE_SYNC_SK,
            false,
        )
        .await
    }

    async fn put_profile_sync(
        &self,
        t: &TenantId,
        sync: &domain::hubspot::profile::ProfileSync,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_profile_sync",
            keys::tenant_pk(t),
            keys::HUBSPOT_PROFILE_SYNC_SK.to_owned(),
            sync,
        )
        .await
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct PointerItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) account: AccountId,
}
