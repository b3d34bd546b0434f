//! Meter definitions, their change log and the tenant policy ([`DefinitionStore`]).

use super::*;

#[async_trait]
impl DefinitionStore for DynamoStore {
    async fn put_definition(&self, tenant: &TenantId, def: &Definition) -> Result<(), StoreError> {
        let item = DataItem {
            pk: keys::tenant_pk(tenant),
            sk: keys::definition_sk(&def.meter),
            data: def,
        };
        let item = serde_dynamo::to_item(item).map_err(|e| corrupt("definition", e))?;
        self.put("put_definition", item, None).await.map(|_| ())
    }

    async fn get_definition(
        &self,
        tenant: &TenantId,
        meter: &MeterName,
    ) -> Result<Option<Definition>, StoreError> {
        let pk = keys::tenant_pk(tenant);
        match self
            .get(
                "get_definition",
                pk.clone(),
                &keys::definition_sk(meter),
                true,
            )
            .await?
        {
            None => Ok(None),
            Some(item) => {
                let d: DataItem<Definition> =
                    serde_dynamo::from_item(item).map_err(|e| corrupt(&pk, e))?;
                Ok(Some(d.data))
            }
        }
    }

    async fn list_definitions(&self, tenant: &TenantId) -> Result<Vec<Definition>, StoreError> {
        // Only the definitions' sort keys, not the whole tenant partition.
        self.query_data(
            "list_definitions",
            keys::tenant_pk(tenant),
            keys::DEFINITION_PREFIX,
        )
        .await
    }

    async fn definitions_page(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Definition>, StoreError> {
        let prefix = keys::DEFINITION_PREFIX;
        let page = self
            .query_items_page(
                "definitions_page",
                keys::tenant_pk(tenant),
                PageRange {
                    cursor_prefix: prefix,
                    sk: Some((prefix.to_owned(), format!("{prefix}~"))),
                    forward: true,
                },
                limit,
                cursor,
                false,
                |req| req,
            )
            .await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|i| from_data(i, "definition"))
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    async fn governance_policy(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<domain::quarantine::PolicyRecord>, StoreError> {
        self.get_data(
            "governance_policy",
            keys::tenant_pk(tenant),
            keys::GOVERNANCE_POLICY_SK,
            true,
        )
        .await
    }

    async fn put_governance_policy(
        &self,
        tenant: &TenantId,
        record: &domain::quarantine::PolicyRecord,
    ) -> Result<(), StoreError> {
        self.put_data(
            "put_governance_policy",
            keys::tenant_pk(tenant),
            keys::GOVERNANCE_POLICY_SK.to_owned(),
            record,
        )
        .await
    }
}

impl DynamoStore {
    /// BatchWriteItem in requests of 25, retrying unprocessed items.
    pub(super) async fn batch_write(
        &self,
        op: &'static str,
        requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let mut left = chunk.to_vec();
            let mut round = 0u64;
            while !left.is_empty() {
                round += 1;
                for w in &left {
                    if let Some(p) = w.put_request() {
                        self.meter.add(write_units(item_size(p.item())));
                    } else {
                        self.meter.add(1);
                    }
                }
                self.meter.request();
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(self.table.clone(), std::mem::take(&mut left))
                    .send()
                    .await
                    .map_err(|e| svc(op, e))?;
                if let Some(rest) = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|r| !r.is_empty())
                {
                    if round > 8 {
                        return Err(StoreError::Throttled(format!("{op}: unprocessed items")));
                    }
                    left = rest;
                    tokio::time::sleep(std::time::Duration::from_millis(25 * round)).await;
                }
            }
        }
        Ok(())
    }
}

pub(super) fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

pub(super) fn put_req(item: Item) -> Result<WriteRequest, StoreError> {
    let p = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| corrupt("put request", e))?;
    Ok(WriteRequest::builder().put_request(p).build())
}

pub(super) fn delete_req(pk: String, sk: String) -> Result<WriteRequest, StoreError> {
    let d = DeleteRequest::builder()
        .set_key(Some(key(pk, sk)))
        .build()
        .map_err(|e| corrupt("delete request", e))?;
    Ok(WriteRequest::builder().delete_request(d).build())
}

impl DynamoStore {
    /// One page of a partition's `data` items: up to `limit`, from after the cursor
    /// (a sort key starting with `cursor_prefix`); `next` when more may follow.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn query_page<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        cursor_prefix: &str,
        limit: usize,
        cursor: Option<&str>,
        consistent: bool,
        customize: impl Fn(
            aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Page<T>, StoreError> {
        let page = self
            .query_items_page(
                op,
                pk.clone(),
                PageRange {
                    cursor_prefix,
                    sk: None,
                    forward: true,
                },
                limit,
                cursor,
                consistent,
                customize,
            )
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, DataItem<T>>(item)
                    .map(|d| d.data)
                    .map_err(|e| corrupt(&pk, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// One page of a partition's items (optionally only sort keys in `range.sk`,
    /// inclusive): up to `limit`, from after the cursor; `next` when more may follow.
    /// A cursor is the base64 of the last sort key returned; one that does not start
    /// with `range.cursor_prefix` or lies outside `range.sk` is refused (`BadCursor`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn query_items_page(
        &self,
        op: &'static str,
        pk: String,
        range: PageRange<'_>,
        limit: usize,
        cursor: Option<&str>,
        consistent: bool,
        customize: impl Fn(
            aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> Result<Page<Item>, StoreError> {
        let limit = limit.max(1);
        let mut start: Option<Item> =
            match cursor {
                None => None,
                Some(c) => {
                    let sk = decode_cursor(c, range.cursor_prefix)?;
                    if range.sk.as_ref().is_some_and(|(lo, hi)| {
                        sk.as_str() < lo.as_str() || sk.as_str() > hi.as_str()
                    }) {
                        return Err(StoreError::BadCursor);
                    }
                    Some(key(pk.clone(), sk))
                }
            };
        let mut items = Vec::new();
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(consistent)
                .scan_index_forward(range.forward)
                .limit(i32::try_from(limit - items.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            req = match &range.sk {
                Some((lo, hi)) => req
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone())),
                None => req.key_condition_expression("pk = :pk"),
            };
            self.meter.request();
            let page = customize(req).send().await.map_err(|e| svc(op, e))?;
            let got = page.items.unwrap_or_default();
            self.meter.read_page(consistent, &got);
            items.extend(got);
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => {
                    if items.len() >= limit {
                        let next = str_attr(&k, "sk").map(encode_cursor);
                        return Ok(Page { items, next });
                    }
                    start = Some(k);
                }
                _ => return Ok(Page { items, next: None }),
            }
        }
    }
}

/// Which sort keys a paged query reads, and in which order.
pub(crate) struct PageRange<'a> {
    /// Every sort key the query can return (and so every cursor) starts with this.
    pub cursor_prefix: &'a str,
    /// Inclusive sort-key bounds (`None`: the whole partition).
    pub sk: Option<(String, String)>,
    pub forward: bool,
}

pub(super) fn data_item<T: Serialize + ?Sized>(
    pk: String,
    sk: String,
    data: &T,
) -> Result<Item, StoreError> {
    serde_dynamo::to_item(DataItem { pk, sk, data }).map_err(|e| corrupt("data item", e))
}

pub(super) fn from_data<T: serde::de::DeserializeOwned>(
    item: Item,
    what: &str,
) -> Result<T, StoreError> {
    serde_dynamo::from_item::<_, DataItem<T>>(item)
        .map(|d| d.data)
        .map_err(|e| corrupt(what, e))
}

impl DynamoStore {
    pub(super) async fn put_data<T: Serialize + Sync + ?Sized>(
        &self,
        op: &'static str,
        pk: String,
        sk: String,
        data: &T,
    ) -> Result<(), StoreError> {
        let item = data_item(pk, sk, data)?;
        self.put(op, item, None).await.map(|_| ())
    }

    pub(super) async fn get_data<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        sk: &str,
        consistent: bool,
    ) -> Result<Option<T>, StoreError> {
        match self.get(op, pk.clone(), sk, consistent).await? {
            None => Ok(None),
            Some(item) => from_data(item, &pk).map(Some),
        }
    }

    /// The `data` of every item of one partition whose sort key starts with `prefix`.
    pub(super) async fn query_data<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        pk: String,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        Ok(self
            .query_prefix::<DataItem<T>>(op, pk, prefix)
            .await?
            .into_iter()
            .map(|d| d.data)
            .collect())
    }
}

pub(super) fn encode_cursor(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

pub(super) fn decode_cursor(cursor: &str, prefix: &str) -> Result<String, StoreError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    let sk = String::from_utf8(bytes).map_err(|_| StoreError::BadCursor)?;
    if !sk.is_empty() && sk.starts_with(prefix) && sk.len() < 512 {
        Ok(sk)
    } else {
        Err(StoreError::BadCursor)
    }
}
