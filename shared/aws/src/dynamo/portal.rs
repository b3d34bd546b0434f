//! HubSpot portals, replay guard and synced company properties.

use super::*;

#[derive(Serialize, Deserialize)]
pub(super) struct PortalItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) tenant: TenantId,
    pub(super) portal: u64,
}

impl DynamoStore {
    /// Maps a HubSpot portal (account) id to a tenant.
    pub async fn map_portal(&self, portal: u64, tenant: &TenantId) -> Result<(), AdminError> {
        if !self.tenant_exists(tenant).await? {
            return Err(AdminError::NoSuchTenant(tenant.clone()));
        }
        let item = PortalItem {
            pk: keys::hubspot_portal_pk(portal),
            sk: keys::HUBSPOT_PORTAL_SK.into(),
            tenant: tenant.clone(),
            portal,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("portal", e))?;
        self.put("map_portal", item, None).await?;
        Ok(())
    }

    pub(super) async fn delete(
        &self,
        op: &'static str,
        pk: String,
        sk: String,
        condition: Option<(&str, &str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk));
        if let Some((expr, name, value)) = condition {
            req = req
                .condition_expression(expr)
                .expression_attribute_values(name, value);
        }
        self.meter.request();
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(svc(op, e)),
        }
    }
}

#[async_trait]
impl domain::ports::PortalDirectory for DynamoStore {
    async fn tenant_for_portal(&self, portal: u64) -> Result<Option<TenantId>, StoreError> {
        let pk = keys::hubspot_portal_pk(portal);
        match self
            .get(
                "tenant_for_portal",
                pk.clone(),
                keys::HUBSPOT_PORTAL_SK,
                false,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => Ok(Some(
                serde_dynamo::from_item::<_, PortalItem>(item)
                    .map_err(|e| corrupt(&pk, e))?
                    .tenant,
            )),
        }
    }

    async fn record_unknown_portal(&self, portal: u64, events: usize) -> Result<(), StoreError> {
        let day = Utc::now().format("%Y-%m-%d").to_string();
        self.meter.request();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(keys::hubspot_unknown_portal_pk(portal)))
            .key("sk", s(day))
            .update_expression("ADD refused :n")
            .expression_attribute_values(":n", n(events))
            .send()
            .await
            .map_err(|e| svc("record_unknown_portal", e))?;
        Ok(())
    }
}

#[async_trait]
impl domain::ports::PortalAdmin for DynamoStore {
    async fn claim_portal(&self, portal: u64, tenant: &TenantId) -> Result<bool, StoreError> {
        use domain::ports::PortalDirectory;
        match self.tenant_for_portal(portal).await? {
            Some(t) if &t == tenant => return Ok(false),
            Some(_) => return Err(portal_taken(portal)),
            None => {}
        }
        let item = PortalItem {
            pk: keys::hubspot_portal_pk(portal),
            sk: keys::HUBSPOT_PORTAL_SK.into(),
            tenant: tenant.clone(),
            portal,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("portal", e))?;
        // Conditional: two tenants claiming the same portal at once cannot both win.
        let claimed = self
            .put_if(
                "claim_portal",
                item,
                Some("attribute_not_exists(pk) OR tenant = :t"),
                &[(":t", s(tenant.as_str()))],
            )
            .await?;
        if claimed {
            Ok(true)
        } else {
            Err(portal_taken(portal))
        }
    }

    async fn owns_portal(&self, portal: u64, tenant: &TenantId) -> Result<bool, StoreError> {
        use domain::ports::PortalDirectory;
        Ok(self.tenant_for_portal(portal).await?.as_ref() == Some(tenant))
    }

    async fn release_portal(&self, portal: u64, tenant: &TenantId) -> Result<bool, StoreError> {
        if !domain::ports::PortalAdmin::owns_portal(self, portal, tenant).await? {
            return Ok(false);
        }
        self.delete(
            "release_portal",
            keys::hubspot_portal_pk(portal),
            keys::HUBSPOT_PORTAL_SK.into(),
            Some(("tenant = :t", ":t", s(tenant.as_str()))),
        )
        .await?;
        Ok(true)
    }
}

fn portal_taken(portal: u64) -> StoreError {
    StoreError::Taken {
        code: "portal_taken",
        message: format!("HubSpot portal {portal} is mapped to another tenant"),
    }
}

#[async_trait]
impl domain::ports::ReplayGuard for DynamoStore {
    async fn claim_request(
        &self,
        key: &str,
        expires_at: i64,
    ) -> Result<domain::ports::RequestClaim, StoreError> {
        let pk = keys::hubspot_legacy_request_pk(key);
        // An update that creates the item: ingest's policy has no PutItem.
        self.meter.request();
        self.meter.add(1);
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk.clone()))
            .key("sk", s(keys::HUBSPOT_LEGACY_REQUEST_SK))
            .condition_expression("attribute_not_exists(pk)")
            .update_expression("SET #d = :f, claimed_at = :c, expires_at = :e")
            .expression_attribute_names("#d", "done")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .expression_attribute_values(":c", s(Utc::now().to_rfc3339()))
            .expression_attribute_values(":e", n(expires_at))
            .send()
            .await;
        match claimed {
            Ok(_) => return Ok(domain::ports::RequestClaim::New),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
            Err(e) => return Err(svc("claim_request", e)),
        }
        let existing = self
            .get(
                "claim_request_lookup",
                pk.clone(),
                keys::HUBSPOT_LEGACY_REQUEST_SK,
                true,
            )
            .await?
            .ok_or_else(|| {
                StoreError::Conflict(format!("{pk} vanished after a failed condition"))
            })?;
        Ok(
            if matches!(existing.get("done"), Some(AttributeValue::Bool(true))) {
                domain::ports::RequestClaim::Done
            } else {
                domain::ports::RequestClaim::Unfinished
            },
        )
    }

    async fn finish_request(&self, key: &str) -> Result<(), StoreError> {
        self.set_attribute(
            "finish_request",
            keys::hubspot_legacy_request_pk(key),
            keys::HUBSPOT_LEGACY_REQUEST_SK.to_owned(),
            "done",
            AttributeValue::Bool(true),
            Existing::Optional,
        )
        .await
    }
}

/// The HubSpot company an account profile names, if it names a valid one.
pub(super) fn hubspot_company(p: &AccountProfile) -> Option<u64> {
    p.crm_ids
        .get(domain::account::HUBSPOT_COMPANY_ID)
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Serialize, Deserialize)]
pub(super) struct PropertyItem {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) field: String,
    pub(super) data: domain::hubspot::profile::CrmProperty,
    /// Epoch milliseconds of the change, for the newest-wins condition.
    pub(super) changed_ms: i64,
}

impl DynamoStore {
    /// The synced CRM properties recorded on a company, by profile field.
    pub(super) async fn company_properties(
        &self,
        t: &TenantId,
        company: u64,
    ) -> Result<BTreeMap<String, domain::hubspot::profile::CrmProperty>, StoreError> {
        let items: Vec<PropertyItem> = self
            .query_prefix(
                "company_properties",
                keys::hubspot_object_pk(t, "company", company),
                keys::HUBSPOT_PROPERTY_PREFIX,
            )
            .await?;
        Ok(items.into_iter().map(|p| (p.field, p.data)).collect())
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct AccountLink {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) account: AccountId,
}

impl DynamoStore {
    /// Links a HubSpot company to an account; refuses a company another account has.
    pub(super) async fn link_company(
        &self,
        t: &TenantId,
        company: u64,
        account: &AccountId,
    ) -> Result<(), StoreError> {
        let item = AccountLink {
            pk: keys::hubspot_object_pk(t, "company", company),
            sk: keys::HUBSPOT_ACCOUNT_SK.into(),
            account: account.clone(),
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("account link", e))?;
        let linked = self
            .put_if(
                "link_company",
                item,
                Some("attribute_not_exists(pk) OR account = :a"),
                &[(":a", s(account.as_str()))],
            )
            .await?;
        if linked {
            return Ok(());
        }
        let other = self
            .get(
                "link_company",
                keys::hubspot_object_pk(t, "company", company),
                keys::HUBSPOT_ACCOUNT_SK,
                true,
            )
            .await?
            .and_then(|i| serde_dynamo::from_item::<_, AccountLink>(i).ok())
            .map(|l| l.account.to_string())
            .unwrap_or_default();
        Err(StoreError::Taken {
            code: "hubspot_company_taken",
            message: format!("HubSpot company {company} is already linked to account '{other}'"),
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct CompanyLink {
    pub(super) pk: String,
    pub(super) sk: String,
    pub(super) company: u64,
}
