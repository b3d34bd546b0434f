//! Tenants and key lookups ([`Directory`]).

use super::*;

#[async_trait]
impl Directory for DynamoStore {
    async fn key_grant(
        &self,
        key_hash: &str,
    ) -> Result<Option<domain::auth::KeyGrant>, StoreError> {
        let pk = keys::api_key_pk(key_hash);
        match self
            .get("get_api_key", pk.clone(), keys::API_KEY_SK, false)
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let k: ApiKeyItem = serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(k.grant(key_hash)))
            }
        }
    }

    async fn tenant_policy(&self, tenant: &TenantId) -> Result<Option<TenantPolicy>, StoreError> {
        let pk = keys::tenant_pk(tenant);
        let items = self
            .query_all("tenant_policy", pk.clone(), None, false)
            .await?;
        let mut policy: Option<TenantPolicy> = None;
        let mut meters = HashMap::new();
        let mut defs = Vec::new();
        let mut choice = domain::quarantine::GovernancePolicy::default();
        for item in items {
            match str_attr(&item, "sk") {
                Some(keys::PROFILE_SK) => {
                    let t: TenantItem =
                        serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                    policy = Some(TenantPolicy {
                        backfill_days: t.backfill_days,
                        ..Default::default()
                    });
                }
                Some(sk) if sk.starts_with(keys::DEFINITION_PREFIX) => {
                    let d: DataItem<Definition> =
                        serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                    meters.insert(d.data.meter.clone(), MeterRule::from(&d.data));
                    defs.push(d.data);
                }
                Some(keys::GOVERNANCE_POLICY_SK) => {
                    let p: DataItem<domain::quarantine::PolicyRecord> =
                        serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                    choice = p.data.policy;
                }
                _ => {}
            }
        }
        let mut governance = domain::governance::PolicyRules::from_definitions(&defs);
        governance.policy = choice;
        Ok(policy.map(|p| TenantPolicy {
            meters,
            governance,
            ..p
        }))
    }
}
