//! `PUT/GET/DELETE /v1/hubspot/portals/{portal_id}`: which tenant receives a HubSpot
//! portal's webhooks, managed with an admin-scoped key (no table items by hand on AWS).

use domain::ids::TenantId;
use domain::ports::PortalAdmin;
use lambda::http::ErrorCode;
use lambda::http::{json, ApiError};
use lambda_http::{Body, Response};
use serde_json::json;

/// Largest portal id accepted (HubSpot portal ids are positive 32-bit-ish integers;
/// the bound keeps keys short and numbers exact in JSON).
pub const MAX_PORTAL_ID: u64 = 9_007_199_254_740_991;

/// The portal id of the path, validated.
pub fn portal_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|p| (1..=MAX_PORTAL_ID).contains(p) && !raw.starts_with('0'))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidPortalId,
                "the portal id is HubSpot's account id: a positive whole number",
            )
        })
}

fn body(portal: u64, tenant: &TenantId) -> serde_json::Value {
    json!({"portal_id": portal, "tenant": tenant})
}

pub async fn put(
    portals: &dyn PortalAdmin,
    tenant: &TenantId,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let portal = portal_id(raw)?;
    let created = portals.claim_portal(portal, tenant).await?;
    tracing::info!(tenant = %tenant, portal, created, "HubSpot portal mapped");
    Ok(json(if created { 201 } else { 200 }, &body(portal, tenant)))
}

pub async fn get(
    portals: &dyn PortalAdmin,
    tenant: &TenantId,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let portal = portal_id(raw)?;
    // Another tenant's portal is as absent as an unmapped one (404, not 403).
    if portals.owns_portal(portal, tenant).await? {
        Ok(json(200, &body(portal, tenant)))
    } else {
        Err(ApiError::not_found("portal"))
    }
}

pub async fn delete(
    portals: &dyn PortalAdmin,
    tenant: &TenantId,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let portal = portal_id(raw)?;
    if portals.release_portal(portal, tenant).await? {
        tracing::info!(tenant = %tenant, portal, "HubSpot portal unmapped");
        Ok(json(200, &json!({"portal_id": portal, "deleted": true})))
    } else {
        Err(ApiError::not_found("portal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_ids_are_positive_whole_numbers_without_leading_zeros() {
        assert_eq!(portal_id("62515").unwrap(), 62515);
        for bad in ["0", "-1", "012", "1.5", "abc", "", "9007199254740992"] {
            assert_eq!(
                portal_id(bad).unwrap_err().code,
                "invalid_portal_id",
                "{bad}"
            );
        }
    }
}
