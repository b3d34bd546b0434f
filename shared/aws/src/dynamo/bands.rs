//! Daily band summaries ([`BandSummaryStore`]): one item per tenant and day under one
//! partition, sorted by day, expiring after [`BAND_SUMMARY_DAYS`]. A chart of 90 days
//! is one Query of 90 small items.

use super::*;
use domain::health::bands::{BandSummaryStore, DailyBands, BAND_SUMMARY_DAYS};

#[derive(Serialize, Deserialize)]
struct BandsItem {
    pk: String,
    sk: String,
    data: DailyBands,
    expires_at: i64,
}

#[async_trait]
impl BandSummaryStore for DynamoStore {
    async fn put_band_summary(&self, t: &TenantId, day: &DailyBands) -> Result<(), StoreError> {
        let pk = keys::health_bands_pk(t);
        let kept_until = day.as_of + chrono::Duration::days(BAND_SUMMARY_DAYS + 1);
        let item = BandsItem {
            pk: pk.clone(),
            sk: keys::health_bands_sk(day.as_of),
            data: day.clone(),
            expires_at: kept_until
                .and_hms_opt(0, 0, 0)
                .map_or(0, |d| d.and_utc().timestamp()),
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt(&pk, e))?;
        self.put("put_band_summary", item, None).await.map(|_| ())
    }

    async fn band_summaries(
        &self,
        t: &TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyBands>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let pk = keys::health_bands_pk(t);
        let items = self
            .query_pages(
                "band_summaries",
                &self.table,
                pk.clone(),
                Some((keys::health_bands_sk(from), keys::health_bands_sk(to))),
                false,
                true,
                None,
            )
            .await?;
        items
            .into_iter()
            .map(|i| {
                serde_dynamo::from_item::<_, BandsItem>(i)
                    .map(|b| b.data)
                    .map_err(|e| corrupt(&pk, e))
            })
            .collect()
    }
}
