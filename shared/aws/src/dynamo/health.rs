//! DynamoDB adapter of [`HealthStore`] (docs/adr/0006 for the item layout).

use super::{
    corrupt, data_item, delete_req, from_data, key, put_req, s, str_attr, svc, DynamoStore, Item,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use base64::Engine;
use chrono::NaiveDate;
use domain::health::config::HealthConfig;
use domain::health::model::{Band, Baseline};
use domain::health::record::HealthRecord;
use domain::health::store::{HealthStore, RiskEntry, RiskRows, RunHeader, Save, ShardItem};
use domain::ids::{AccountId, Segment, TenantId};
use domain::keys;
use domain::ports::{Page, StoreError};
use std::collections::{BTreeMap, HashMap};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn unb64(c: &str) -> Result<String, StoreError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() < 200 && s.contains('#'))
        .ok_or(StoreError::BadCursor)
}

impl DynamoStore {
    /// Adds a tenant to the registry scheduled jobs enumerate.
    pub async fn register_tenant(&self, t: &TenantId) -> Result<(), StoreError> {
        let item = key(keys::TENANTS_PK.to_owned(), keys::tenant_registry_sk(t));
        self.put("register_tenant", item, None).await.map(|_| ())
    }
}

#[async_trait]
impl HealthStore for DynamoStore {
    async fn get_health_config(&self, t: &TenantId) -> Result<Option<HealthConfig>, StoreError> {
        self.get_data(
            "get_health_config",
            keys::tenant_pk(t),
            keys::HEALTH_CONFIG_SK,
            false,
        )
        .await
    }

    async fn put_health_config(&self, t: &TenantId, cfg: &HealthConfig) -> Result<(), StoreError> {
        self.put_data(
            "put_health_config",
            keys::tenant_pk(t),
            keys::HEALTH_CONFIG_SK.to_owned(),
            cfg,
        )
        .await
    }

    async fn get_plays(
        &self,
        t: &TenantId,
    ) -> Result<Option<domain::health::plays::Plays>, StoreError> {
        self.get_data(
            "get_plays",
            keys::tenant_pk(t),
            keys::HEALTH_PLAYS_SK,
            false,
        )
        .await
    }

    async fn put_plays(
        &self,
        t: &TenantId,
        plays: &domain::health::plays::Plays,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_plays",
            keys::tenant_pk(t),
            keys::HEALTH_PLAYS_SK.to_owned(),
            plays,
        )
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let items = self
            .query_all("list_tenants", keys::TENANTS_PK.to_owned(), None, false)
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| str_attr(i, "sk"))
            .filter_map(keys::tenant_of_registry_sk)
            .collect())
    }

    async fn put_run(&self, t: &TenantId, run: &RunHeader) -> Result<(), StoreError> {
        self.put_data(
            "put_run",
            keys::health_run_pk(t, &run.run),
            keys::HEALTH_RUN_SK.to_owned(),
            run,
        )
        .await
    }

    async fn put_shard(
        &self,
        t: &TenantId,
        run: &str,
        shard: &ShardItem,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_shard",
            keys::health_run_pk(t, run),
            keys::health_shard_sk(shard.shard),
            shard,
        )
        .await
    }

    async fn get_shard(
        &self,
        t: &TenantId,
        run: &str,
        shard: u32,
    ) -> Result<Option<ShardItem>, StoreError> {
        self.get_data(
            "get_shard",
            keys::health_run_pk(t, run),
            &keys::health_shard_sk(shard),
            true,
        )
        .await
    }

    async fn count_shards(&self, t: &TenantId, run: &str) -> Result<usize, StoreError> {
        // Consistent: the fan-in must see the shard its own worker just wrote.
        self.count_items(
            "count_shards",
            keys::health_run_pk(t, run),
            keys::HEALTH_SHARD_PREFIX,
            true,
        )
        .await
    }

    async fn list_shards(&self, t: &TenantId, run: &str) -> Result<Vec<ShardItem>, StoreError> {
        let pk = keys::health_run_pk(t, run);
        let items = self
            .query_all(
                "list_shards",
                pk.clone(),
                Some((
                    keys::HEALTH_SHARD_PREFIX.to_owned(),
                    format!("{}~", keys::HEALTH_SHARD_PREFIX),
                )),
                true,
            )
            .await?;
        items.into_iter().map(|i| from_data(i, &pk)).collect()
    }

    async fn put_baselines(
        &self,
        t: &TenantId,
        run: &str,
        b: &BTreeMap<Segment, Baseline>,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_baselines",
            keys::health_run_pk(t, run),
            keys::HEALTH_BASELINE_SK.to_owned(),
            b,
        )
        .await
    }

    async fn get_baselines(
        &self,
        t: &TenantId,
        run: &str,
    ) -> Result<Option<BTreeMap<Segment, Baseline>>, StoreError> {
        self.get_data(
            "get_baselines",
            keys::health_run_pk(t, run),
            keys::HEALTH_BASELINE_SK,
            true,
        )
        .await
    }

    async fn latest(
        &self,
        t: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, HealthRecord>, StoreError> {
        let mut out = HashMap::new();
        for group in accounts.chunks(100) {
            let unique: std::collections::BTreeSet<&AccountId> = group.iter().collect();
            let mut left: Vec<Item> = unique
                .into_iter()
                .map(|a| key(keys::health_pk(t, a), keys::HEALTH_LATEST_SK.to_owned()))
                .collect();
            let mut round = 0u64;
            while !left.is_empty() {
                round += 1;
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut left)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| corrupt("latest", e))?;
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| svc("latest_health", e))?;
                for item in res
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let r: HealthRecord = from_data(item, "latest health")?;
                    out.insert(r.account.clone(), r);
                }
                if let Some(rest) = res.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    if round > 8 {
                        return Err(StoreError::Throttled(
                            "latest_health: unprocessed keys".into(),
                        ));
                    }
                    left = rest.keys;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * round)).await;
                }
            }
        }
        Ok(out)
    }

    async fn save_records(&self, t: &TenantId, saves: &[Save<'_>]) -> Result<(), StoreError> {
        // History, and the risk index moved; then the latest records (last, so a
        // retry still sees the previous one and moves the index the same way).
        let mut first = Vec::new();
        let mut last = Vec::new();
        for sv in saves {
            let r = sv.record;
            let pk = keys::health_pk(t, &r.account);
            first.push(put_req(data_item(
                pk.clone(),
                keys::health_day_sk(r.as_of),
                r,
            )?)?);
            // The (segment, band), owner and band-change entries: moved, then rewritten.
            let moves = sv.risk_moves(t);
            for (pk, sk) in moves.delete {
                first.push(delete_req(pk, sk)?);
            }
            if let Some(e) = &moves.entry {
                for (pk, sk) in moves.put {
                    first.push(put_req(data_item(pk, sk, e)?)?);
                }
            }
            last.push(put_req(data_item(
                pk,
                keys::HEALTH_LATEST_SK.to_owned(),
                r,
            )?)?);
        }
        self.batch_write("save_health_records", first).await?;
        self.batch_write("save_health_latest", last).await
    }

    async fn history(
        &self,
        t: &TenantId,
        a: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<HealthRecord>, StoreError> {
        let pk = keys::health_pk(t, a);
        let items = self
            .query_all(
                "health_history",
                pk.clone(),
                Some((keys::health_day_sk(from), keys::health_day_sk(to))),
                false,
            )
            .await?;
        items.into_iter().map(|i| from_data(i, &pk)).collect()
    }

    async fn list_risk(
        &self,
        t: &TenantId,
        segment: Option<Segment>,
        bands: &[Band],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RiskEntry>, StoreError> {
        let after = cursor.map(unb64).transpose()?;
        let segments: Vec<Segment> = match segment {
            Some(s) => vec![s],
            None => Segment::ALL
                .into_iter()
                .filter(|s| *s != Segment::Unassigned)
                .collect(),
        };
        let bands: Vec<Band> = if bands.is_empty() {
            Band::ALL.to_vec()
        } else {
            bands.to_vec()
        };
        let mut all: Vec<(String, RiskEntry)> = Vec::new();
        let mut more = false;
        for seg in &segments {
            for band in &bands {
                let pk = keys::health_risk_pk(t, *seg, band.as_str());
                let start = after.as_ref().map(|sk| key(pk.clone(), sk.clone()));
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(pk.clone()))
                    .limit(limit as i32 + 1)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| svc("list_risk", e))?;
                let items = page.items.unwrap_or_default();
                if items.len() > limit || page.last_evaluated_key.is_some_and(|k| !k.is_empty()) {
                    more = true;
                }
                for item in items {
                    let sk = str_attr(&item, "sk").unwrap_or_default().to_owned();
                    all.push((sk, from_data(item, &pk)?));
                }
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        if all.len() > limit {
            more = true;
        }
        all.truncate(limit);
        let next = if more {
            all.last().map(|(k, _)| b64(k))
        } else {
            None
        };
        Ok(Page {
            items: all.into_iter().map(|(_, e)| e).collect(),
            next,
        })
    }

    async fn risk_partition(
        &self,
        pk: &str,
        start: Option<&str>,
        n: usize,
    ) -> Result<RiskRows, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk.to_owned()))
            .limit(i32::try_from(n).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start.map(|sk| key(pk.to_owned(), sk.to_owned())))
            .send()
            .await
            .map_err(|e| svc("risk_partition", e))?;
        let more = page.last_evaluated_key.is_some_and(|k| !k.is_empty());
        let mut rows = Vec::new();
        for item in page.items.unwrap_or_default() {
            let sk = str_attr(&item, "sk").unwrap_or_default().to_owned();
            rows.push((sk, from_data(item, pk)?));
        }
        Ok((rows, more))
    }

    fn risk_cursor(&self, sk: &str) -> String {
        b64(sk)
    }

    fn risk_cursor_key(&self, cursor: &str) -> Result<String, StoreError> {
        unb64(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamo::item_size;
    use domain::health::config::HealthConfig;
    use domain::health::model::{self, Series, Subject};
    use domain::health::record;

    #[test]
    fn health_records_baselines_and_configs_round_trip_through_dynamodb_items() {
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let synth = domain::health::synth::Synth::new(domain::health::synth::SynthConfig {
            accounts: 12,
            seed: 7,
            start: as_of - chrono::Duration::days(200),
            end: as_of,
            churn_rate: 0.3,
        });
        let cfg = HealthConfig {
            min_segment_population: 2,
            ..HealthConfig::default()
        };
        let ms: Vec<_> = synth
            .accounts
            .iter()
            .map(|a| {
                let s: Series = synth.series(a, as_of);
                let subj: &Subject = &a.subject;
                model::measure(subj, &s, as_of, &cfg, &BTreeMap::new())
            })
            .collect();
        let b = model::baselines(&ms, &cfg);
        let item = data_item("p".into(), "s".into(), &b).unwrap();
        assert_eq!(
            from_data::<BTreeMap<Segment, Baseline>>(item, "b").unwrap(),
            b
        );
        let item = data_item("p".into(), "s".into(), &cfg).unwrap();
        assert_eq!(from_data::<HealthConfig>(item, "c").unwrap(), cfg);
        for m in &ms {
            let sc = model::score(m, &b[&m.segment], &cfg);
            let r = record::build(
                m,
                sc,
                b.get(&m.segment),
                Default::default(),
                as_of,
                None,
                chrono::Utc::now(),
            );
            let item = data_item("p".into(), "s".into(), &r).unwrap();
            assert!(item_size(&item) < 30_000, "{}", item_size(&item));
            assert_eq!(from_data::<HealthRecord>(item, "r").unwrap(), r);
        }
        assert!(unb64("not a cursor!").is_err());
        assert_eq!(unb64(&b64("0420#acct")).unwrap(), "0420#acct");
    }
}
