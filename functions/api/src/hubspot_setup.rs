//! `POST /v1/hubspot/setup`: creates (or repairs) the tenant's `usage_health` company
//! property group and properties in its HubSpot portal with the tenant's write-back
//! token ([`domain::hubspot::setup`]); idempotent, so it is safe to run again.

use domain::health::writeback::Tokens;
use domain::hubspot::client::HubSpotClient;
use domain::ids::TenantId;
use lambda::http::ErrorCode;
use lambda::http::{json, ApiError};
use lambda_http::{Body, Response};

/// What the route needs: HubSpot's API and the per-tenant write-back tokens.
pub struct HubSpotSetup {
    pub client: HubSpotClient,
    pub tokens: Tokens,
}

impl HubSpotSetup {
    /// Runs the setup for `tenant`: its report, or the error as the API answers it.
    pub async fn run(
        &self,
        tenant: &TenantId,
    ) -> Result<domain::hubspot::setup::SetupReport, ApiError> {
        let token = self
            .tokens
            .token(tenant)
            .await
            .map_err(|e| {
                tracing::error!(tenant = %tenant, error = %e, code = e.code(), "write-back tokens unavailable");
                ApiError::new(ErrorCode::TemporarilyUnavailable, "the HubSpot tokens could not be read; retry")
            })?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::NoHubspotToken,
                    format!("no HubSpot private-app token is configured for tenant {tenant}: add it to the write-back tokens secret"),
                )
            })?;
        domain::hubspot::setup::run(&self.client, &token)
            .await
            .map_err(|e| {
                tracing::warn!(tenant = %tenant, error = %e, code = e.code(), "HubSpot setup failed");
                ApiError::domain(502, e.code(), e.to_string())
            })
    }
}

pub async fn post(setup: &HubSpotSetup, tenant: &TenantId) -> Result<Response<Body>, ApiError> {
    let report = setup.run(tenant).await?;
    Ok(json(200, &report))
}
