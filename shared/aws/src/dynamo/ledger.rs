//! The counting protocol: journal, claims, drift sample, parts ([`ChunkJournal`], [`LedgerStore`]).

use super::*;

/// The import journal: one item per unfinished import chunk, its body as JSON text
/// (a chunk is at most 255 KiB, under DynamoDB's 400 KB item limit).
#[async_trait]
impl ChunkJournal for DynamoStore {
    async fn begin(&self, chunk: &domain::chunk::Chunk) -> Result<(), StoreError> {
        let body = serde_json::to_string(chunk).map_err(|e| corrupt(&chunk.chunk, e))?;
        self.put_data(
            "begin_import_chunk",
            keys::import_journal_pk(&chunk.tenant),
            keys::import_journal_sk(&chunk.chunk),
            &body,
        )
        .await
    }

    async fn finish(&self, tenant: &TenantId, chunk: &str) -> Result<(), StoreError> {
        self.delete(
            "finish_import_chunk",
            keys::import_journal_pk(tenant),
            keys::import_journal_sk(chunk),
            None,
        )
        .await
    }

    async fn unfinished(&self, tenant: &TenantId) -> Result<Vec<domain::chunk::Chunk>, StoreError> {
        let pk = keys::import_journal_pk(tenant);
        let bodies: Vec<String> = self
            .query_data(
                "unfinished_import_chunks",
                pk.clone(),
                keys::IMPORT_JOURNAL_PREFIX,
            )
            .await?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(|e| corrupt(&pk, e)))
            .collect()
    }
}

#[async_trait]
impl LedgerStore for DynamoStore {
    async fn segments(
        &self,
        tenant: &TenantId,
        accounts: &[AccountId],
    ) -> Result<HashMap<AccountId, Segment>, StoreError> {
        let pk = keys::accounts_pk(tenant);
        let mut out = HashMap::new();
        for group in accounts.chunks(100) {
            let mut keys_left: Vec<Item> = group
                .iter()
                .map(|a| {
                    HashMap::from([
                        ("pk".to_owned(), s(pk.clone())),
                        ("sk".to_owned(), s(keys::account_sk(a))),
                    ])
                })
                .collect();
            let mut rounds = 0;
            while !keys_left.is_empty() {
                rounds += 1;
                let sent = keys_left.len();
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys_left)))
                    .projection_expression("sk, #d.#s")
                    .expression_attribute_names("#d", "data")
                    .expression_attribute_names("#s", "segment")
                    .build()
                    .map_err(|e| StoreError::Service {
                        op: "segments",
                        message: e.to_string(),
                    })?;
                let res = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| svc("segments", e))?;
                let found = res
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default();
                let unprocessed = res
                    .unprocessed_keys
                    .as_ref()
                    .and_then(|u| u.get(&self.table))
                    .map_or(0, |k| k.keys.len());
                self.meter
                    .read_items(false, sent.saturating_sub(unprocessed), &found);
                for item in found {
                    let account = str_attr(&item, "sk").and_then(keys::account_of_sk);
                    let segment = match item.get("data") {
                        Some(AttributeValue::M(m)) => {
                            str_attr(m, "segment").and_then(Segment::parse)
                        }
                        _ => None,
                    };
                    if let (Some(a), Some(seg)) = (account, segment) {
                        out.insert(a, seg);
                    }
                }
                if let Some(left) = res.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    if rounds > 8 {
                        return Err(StoreError::Throttled("segments: unprocessed keys".into()));
                    }
                    keys_left = left.keys;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * rounds)).await;
                }
            }
        }
        Ok(out)
    }

    async fn claim(&self, e: &LedgerEntry<'_>) -> Result<Claim, StoreError> {
        let (pk, item) = ledger_item(e)?;
        let size = item_size(&item);
        self.meter.request();
        self.meter.add_ledger(write_units(size));
        let res = self
            .client
            .put_item()
            .table_name(&self.ledger_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let existing = match res {
            Ok(_) => {
                self.meter.stored_in_ledger(size);
                return Ok(Claim::New);
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                match err.into_service_error() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item,
                    _ => None,
                }
            }
            Err(err) => return Err(svc("claim", err)),
        };
        self.existing_claim(&pk, existing).await
    }

    /// The group's claims as conditional puts in one transaction. A cancelled
    /// transaction writes nothing and names, per action, the claims that already
    /// existed (`ConditionalCheckFailed`, with the item: `ALL_OLD`); those are answered
    /// as [`LedgerStore::claim`] answers them and the rest are sent again, until a
    /// transaction commits or nothing is left. Each round settles at least one claim.
    async fn claim_group(&self, entries: &[LedgerEntry<'_>]) -> Result<Vec<Claim>, StoreError> {
        let mut answers: Vec<Option<Claim>> = vec![None; entries.len()];
        let mut items = Vec::with_capacity(entries.len());
        for e in entries {
            items.push(ledger_item(e)?);
        }
        loop {
            let left: Vec<usize> = (0..entries.len())
                .filter(|&i| answers[i].is_none())
                .collect();
            if left.is_empty() {
                break;
            }
            let mut actions = Vec::with_capacity(left.len());
            let (mut units, mut bytes) = (0u64, 0usize);
            for &i in &left {
                let item = items[i].1.clone();
                let size = item_size(&item);
                units += write_units(size);
                bytes += size;
                let put = Put::builder()
                    .table_name(&self.ledger_table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .map_err(|e| StoreError::Service {
                        op: "claim_group",
                        message: e.to_string(),
                    })?;
                actions.push(TransactWriteItem::builder().put(put).build());
            }
            self.meter.request();
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await;
            let reasons = match res {
                Ok(_) => {
                    // Transactional writes cost twice a plain write.
                    self.meter.add_ledger(units * 2);
                    self.meter.stored_in_ledger_all(bytes, left.len());
                    for &i in &left {
                        answers[i] = Some(Claim::New);
                    }
                    break;
                }
                Err(err) => match err.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().to_vec()
                    }
                    _ => return Err(svc("claim_group", err)),
                },
            };
            // A cancelled transaction still reads every condition (upper bound: as writes).
            self.meter.add_ledger(units);
            if reasons.len() != left.len() {
                return Err(StoreError::Service {
                    op: "claim_group",
                    message: format!(
                        "{} cancellation reasons for {} claims",
                        reasons.len(),
                        left.len()
                    ),
                });
            }
            let mut settled = 0;
            for (&i, reason) in left.iter().zip(reasons) {
                match reason.code() {
                    Some("ConditionalCheckFailed") => {
                        answers[i] = Some(self.existing_claim(&items[i].0, reason.item).await?);
                        settled += 1;
                    }
                    None | Some("None") => {}
                    Some(code) if code == "TransactionConflict" => {
                        return Err(StoreError::Conflict(format!("claim_group: {code}")));
                    }
                    Some(code) if code.contains("Throughput") || code.contains("Throttl") => {
                        return Err(StoreError::Throttled(format!("claim_group: {code}")));
                    }
                    Some(code) => {
                        return Err(StoreError::Service {
                            op: "claim_group",
                            message: format!(
                                "transaction cancelled: {code} {:?}",
                                reason.message()
                            ),
                        })
                    }
                }
            }
            if settled == 0 {
                return Err(StoreError::Service {
                    op: "claim_group",
                    message: "transaction cancelled without a reason".into(),
                });
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    async fn sample(&self, e: &LedgerEntry<'_>) -> Result<(), StoreError> {
        self.write_sample(e).await
    }

    async fn apply_units(
        &self,
        tenant: &TenantId,
        units: &[UnitRef<'_>],
        deltas: &[(RollupKey, RollupDelta)],
    ) -> Result<UnitsOutcome, StoreError> {
        let build_err = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Service {
            op: "apply_units",
            message: e.to_string(),
        };
        // Markers first: cancellation reason `i` < units.len() is unit `i`'s.
        let mut units_wru = 0;
        let mut actions = Vec::with_capacity(units.len() + deltas.len());
        for u in units {
            let marker: Item = HashMap::from([
                ("pk".to_owned(), s(keys::part_pk(tenant, u.chunk))),
                ("sk".to_owned(), s(keys::unit_sk(u.bucket, u.piece))),
                ("rollups".to_owned(), n(u.items)),
                ("expires_at".to_owned(), n(u.expires_at)),
            ]);
            units_wru += write_units(item_size(&marker)) * 2;
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(marker))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_err)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        for (key, delta) in deltas {
            let pk = keys::usage_pk(tenant, &key.scope);
            let sk = keys::usage_sk(key.day, &key.meter, key.stage, &key.service_line);
            units_wru += write_units(max_rollup_item_size(&pk, &sk)) * 2;
            let total = delta.total();
            let mut expr = vec!["#q :q".to_owned(), "#n :n".to_owned()];
            let mut names = HashMap::from([
                ("#q".to_owned(), "q".to_owned()),
                ("#n".to_owned(), "n".to_owned()),
            ]);
            let mut values = HashMap::from([
                (":q".to_owned(), n(total.quantity)),
                (":n".to_owned(), n(total.events)),
            ]);
            for (h, b) in &delta.hours {
                let (qn, cn) = hour_names(*h);
                expr.push(format!("#{qn} :{qn}"));
                expr.push(format!("#{cn} :{cn}"));
                values.insert(format!(":{qn}"), n(b.quantity));
                values.insert(format!(":{cn}"), n(b.events));
                names.insert(format!("#{qn}"), qn);
                names.insert(format!("#{cn}"), cn);
            }
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .update_expression(format!("ADD {}", expr.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build_err)?;
            actions.push(TransactWriteItem::builder().update(update).build());
        }
        self.meter.request();
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        match res {
            Ok(_) => {
                self.meter.add(units_wru);
                Ok(UnitsOutcome::Applied)
            }
            Err(err) => {
                let reasons: Vec<String> = match err.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_owned()).collect()
                    }
                    _ => return Err(svc("apply_units", err)),
                };
                // A failed transaction still consumes (non-doubled) units for the checks.
                self.meter.add(1);
                let applied: Vec<usize> = reasons
                    .iter()
                    .take(units.len())
                    .enumerate()
                    .filter(|(_, r)| r.as_str() == "ConditionalCheckFailed")
                    .map(|(i, _)| i)
                    .collect();
                if !applied.is_empty() {
                    return Ok(UnitsOutcome::AlreadyApplied(applied));
                }
                if reasons.iter().any(|r| r == "TransactionConflict") {
                    return Err(StoreError::Conflict(format!("apply_units: {reasons:?}")));
                }
                if reasons
                    .iter()
                    .any(|r| r.contains("Throughput") || r.contains("Throttl"))
                {
                    return Err(StoreError::Throttled(format!("apply_units: {reasons:?}")));
                }
                Err(StoreError::Service {
                    op: "apply_units",
                    message: format!("transaction cancelled: {reasons:?}"),
                })
            }
        }
    }
}

/// The ledger record of a claim, and its key.
fn ledger_item(e: &LedgerEntry<'_>) -> Result<(String, Item), StoreError> {
    let pk = keys::ledger_pk(e.tenant, e.source, &e.event.id);
    let item = LedgerItem {
        pk: pk.clone(),
        sk: keys::EVENT_SK,
        chunk: e.chunk,
        pos: e.pos,
        segment: e.segment,
        received_at: e.received_at,
        expires_at: e.expires_at,
    };
    let item: Item = serde_dynamo::to_item(item).map_err(|err| corrupt(&pk, err))?;
    Ok((pk, item))
}

impl DynamoStore {
    /// Who owns a claim whose condition failed: from the old item the failure
    /// returned, or read back when an emulator returned none.
    async fn existing_claim(&self, pk: &str, existing: Option<Item>) -> Result<Claim, StoreError> {
        let existing = match existing {
            Some(i) if i.contains_key("chunk") => i,
            _ => self
                .get_from(
                    &self.ledger_table,
                    "claim_lookup",
                    pk.to_owned(),
                    keys::EVENT_SK,
                    true,
                )
                .await?
                .ok_or_else(|| {
                    StoreError::Conflict(format!("{pk} vanished after a failed condition"))
                })?,
        };
        let view: LedgerClaimView =
            serde_dynamo::from_item(existing).map_err(|err| corrupt(pk, err))?;
        Ok(Claim::Existing {
            chunk: view.chunk,
            pos: view.pos,
            segment: view.segment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::event::UsageEvent;
    use domain::ids::Source;

    #[test]
    fn a_ledger_record_holds_the_claim_and_not_the_event_body() {
        let tenant = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let event = UsageEvent::new(
            domain::ids::EventId::parse("evt-00000001").unwrap_or_else(|e| panic!("{e}")),
            AccountId::parse("account-001").unwrap_or_else(|e| panic!("{e}")),
            MeterName::parse("api_calls").unwrap_or_else(|e| panic!("{e}")),
            Decimal::from(3),
            Utc::now(),
        );
        let entry = LedgerEntry {
            tenant: &tenant,
            source: Source::Api,
            chunk: "0193a8f2-6c1e-7d4b-9a51-2f0e8c7d6b5a",
            pos: 17,
            segment: Segment::Smb,
            event: &event,
            received_at: Utc::now(),
            expires_at: 1_800_000_000,
        };
        let (pk, item) = ledger_item(&entry).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pk, "TENANT#acme#EVENT#api#evt-00000001");
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "chunk",
                "expires_at",
                "pk",
                "pos",
                "received_at",
                "segment",
                "sk"
            ]
        );
        // What the claim view reads back from a failed condition.
        let view: LedgerClaimView =
            serde_dynamo::from_item(item.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (view.chunk.as_str(), view.pos, view.segment),
            (entry.chunk, 17, Segment::Smb)
        );
        assert!(item_size(&item) < 200, "{} bytes", item_size(&item));
    }
}
