//! `GET /v1/segments/{segment}/adoption?cohort=month`: adoption by tier. Reads the
//! segment's profiles, their latest health records (milestones reached, recent
//! scores) and, for the ratio KPIs, the segment's rollups; the figures are computed by
//! `domain::adoption`.

use crate::Api;
use chrono::{Duration, Utc};
use domain::adoption::{self, MeterTotals, Onboarded, KPI_WINDOW_DAYS, MAX_LAGGING};
use domain::health::config::HealthConfig;
use domain::ids::{Segment, Stage, TenantId};
use domain::keys::Scope;
use lambda::http::ErrorCode;
use lambda::http::{json, query_pairs, ApiError};
use lambda_http::{Body, Request, Response};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::json;

/// Accounts of one segment read at most (in pages of [`PAGE`]); beyond it the answer
/// says `truncated`.
pub const MAX_ADOPTION_ACCOUNTS: usize = 10_000;
const PAGE: usize = 200;

impl Api {
    pub(crate) async fn segment_adoption(
        &self,
        tenant: &TenantId,
        segment: &str,
        req: &Request,
    ) -> Result<Response<Body>, ApiError> {
        let segment = Segment::parse(segment)
            .filter(|s| *s != Segment::Unassigned)
            .ok_or_else(|| ApiError::not_found("segment"))?;
        for (k, v) in query_pairs(req) {
            match k.as_str() {
                "cohort" if v == "month" => {}
                "cohort" => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidParameter,
                        format!("cohort '{v}' is not supported; use cohort=month"),
                    ))
                }
                other => {
                    return Err(ApiError::new(
                        ErrorCode::UnknownParameter,
                        format!("unknown parameter '{other}'; expected cohort"),
                    ))
                }
            }
        }
        let today = Utc::now().date_naive();
        let stored = self.health.get_health_config(tenant).await?;
        let defs = self.definitions.list_definitions(tenant).await?;
        let resolved = HealthConfig::resolve(stored.as_ref(), &defs);
        let cfg = &resolved.config;
        let milestones = cfg.segment(segment).milestones().to_vec();
        let kpi = cfg.tier_kpi(segment).ok_or_else(|| {
            tracing::error!(segment = %segment, "no default KPI for a tier");
            ApiError::new(
                ErrorCode::InternalError,
                "an internal error occurred; it has been logged",
            )
        })?;

        // The segment's profiles, page by page, up to the bound.
        let mut profiles = Vec::new();
        let mut cursor: Option<String> = None;
        let mut truncated = false;
        loop {
            let page = self
                .accounts
                .list_accounts(tenant, Some(segment), PAGE, cursor.as_deref())
                .await?;
            profiles.extend(page.items);
            match page.next {
                Some(next) if profiles.len() < MAX_ADOPTION_ACCOUNTS => cursor = Some(next),
                Some(_) => {
                    truncated = true;
                    break;
                }
                None => break,
            }
        }
        profiles.truncate(MAX_ADOPTION_ACCOUNTS);
        let ids: Vec<_> = profiles.iter().map(|p| p.account.clone()).collect();
        let mut latest = self.health.latest(tenant, &ids).await?;
        let accounts: Vec<Onboarded> = profiles
            .into_iter()
            .map(|p| {
                let rec = latest.remove(&p.account);
                Onboarded {
                    onboarded: p.onboarding_date.unwrap_or(p.created_at.date_naive()),
                    name: Some(p.name),
                    owner: p.owner_email,
                    reached: rec
                        .as_ref()
                        .map(|r| r.milestones_reached.clone())
                        .unwrap_or_default(),
                    scores: rec
                        .map(|r| r.recent.iter().map(|s| (s.as_of, s.score)).collect())
                        .unwrap_or_default(),
                    account: p.account,
                }
            })
            .collect();

        // The ratio KPIs' meters over the window, delivered stage, summed exactly.
        let mut totals = MeterTotals::new();
        let from = today - Duration::days(KPI_WINDOW_DAYS - 1);
        for meter in kpi.meters() {
            if matches!(kpi, adoption::TierKpi::TimeToFirstValue { .. }) {
                break;
            }
            let rows = self
                .usage
                .read_rollups(tenant, &Scope::Segment(segment), from, today, Some(&meter))
                .await?;
            let mut sum = Decimal::ZERO;
            for r in rows.iter().filter(|r| r.key.stage == Stage::Delivered) {
                sum = sum.checked_add(r.total.quantity).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::UsageOverflow,
                        format!("the {meter} total of segment {segment} does not fit a decimal"),
                    )
                })?;
            }
            totals.insert(meter, sum.to_f64().unwrap_or(0.0));
        }

        let cohorts = adoption::cohorts(&milestones, &accounts, today);
        let (lagging, lagging_total) =
            adoption::lagging(&milestones, &accounts, today, MAX_LAGGING);
        let kpi_value = adoption::kpi(&kpi, &milestones, &accounts, &totals, today);
        let source = |key: String| resolved.sources.get(&key).copied();
        tracing::info!(tenant = %tenant, segment = %segment, accounts = accounts.len(), cohorts = cohorts.len(), lagging = lagging_total, "adoption computed");
        Ok(json(
            200,
            &json!({
                "segment": segment,
                "cohort": "month",
                "as_of": today,
                "accounts": accounts.len(),
                "truncated": truncated,
                "milestones": milestones,
                "milestones_source": source(format!("segments.{segment}.milestones")),
                "cohorts": cohorts,
                "kpi": {
                    "kind": kpi_value.kpi,
                    "unit": kpi_value.unit,
                    "value": kpi_value.value,
                    "benchmark": kpi_value.benchmark,
                    "higher_is_better": kpi_value.higher_is_better,
                    "meets_benchmark": kpi_value.meets_benchmark,
                    "meters": kpi_value.meters,
                    "sample": kpi_value.sample,
                    "window_days": KPI_WINDOW_DAYS,
                    "source": if cfg.segments.get(&segment).is_some_and(|c| c.kpi.is_some()) { "tenant_config" } else { "defaults" },
                },
                "lagging": lagging,
                "lagging_total": lagging_total,
            }),
        ))
    }
}
