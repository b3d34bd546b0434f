//! Rollup reads ([`UsageReader`]).

use super::*;

#[async_trait]
impl UsageReader for DynamoStore {
    async fn read_rollups(
        &self,
        tenant: &TenantId,
        scope: &Scope,
        from: NaiveDate,
        to: NaiveDate,
        meter: Option<&MeterName>,
    ) -> Result<Vec<RollupRow>, StoreError> {
        let pk = keys::usage_pk(tenant, scope);
        let items = self
            .query_all(
                "read_rollups",
                pk.clone(),
                Some(keys::usage_sk_range(from, to)),
                true,
            )
            .await?;
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let sk = str_attr(&item, "sk").unwrap_or_default();
            let (day, m, stage, service_line) = keys::parse_usage_sk(sk)
                .ok_or_else(|| corrupt(sk, "unparseable rollup sort key"))?;
            if meter.is_some_and(|want| want != &m) {
                continue;
            }
            let mut hours = [Bucket::default(); 24];
            for (h, bucket) in hours.iter_mut().enumerate() {
                let (q, c) = hour_names(h as u8);
                *bucket = Bucket {
                    quantity: dec(&item, &q),
                    events: int(&item, &c),
                };
            }
            rows.push(RollupRow {
                key: RollupKey {
                    scope: scope.clone(),
                    day,
                    meter: m,
                    stage,
                    service_line,
                },
                total: Bucket {
                    quantity: dec(&item, "q"),
                    events: int(&item, "n"),
                },
                hours,
            });
        }
        Ok(rows)
    }
}
