//! `GET /v1/health/bands?days=90`: band counts per segment and day, as the daily score
//! run summarised them ([`domain::health::bands`]); one Query of at most `days` items.

use crate::Api;
use chrono::{Duration, NaiveDate, Utc};
use domain::health::bands::{DailyBands, BAND_CHART_DAYS, BAND_SUMMARY_DAYS};
use domain::ids::TenantId;
use lambda::http::ErrorCode;
use lambda::http::{json, query_pairs, ApiError};
use lambda_http::{Body, Request, Response};
use serde_json::json;

/// The body: the window, the newest day's counts (`latest`, `null` before the first
/// run) and every summarised day of the window, oldest first.
pub fn bands_body(from: NaiveDate, to: NaiveDate, days: &[DailyBands]) -> serde_json::Value {
    json!({
        "from": from,
        "to": to,
        "latest": days.last(),
        "days": days,
    })
}

impl Api {
    pub(crate) async fn health_bands(
        &self,
        tenant: &TenantId,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let mut span = BAND_CHART_DAYS;
        for (k, v) in query_pairs(req) {
            match k.as_str() {
                "days" => {
                    span = v
                        .parse::<i64>()
                        .ok()
                        .filter(|d| (1..=BAND_SUMMARY_DAYS).contains(d))
                        .ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::InvalidParameter,
                                format!("days must be a number from 1 to {BAND_SUMMARY_DAYS}"),
                            )
                        })?
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::UnknownParameter,
                        format!("unknown parameter '{other}'; expected days"),
                    ))
                }
            }
        }
        let to = Utc::now().date_naive();
        let from = to - Duration::days(span - 1);
        let days = self.band_summaries.band_summaries(tenant, from, to).await?;
        Ok(json(200, &bands_body(from, to, &days)))
    }
}
