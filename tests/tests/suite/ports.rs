//! The DynamoDB adapter against the behaviour suite every adapter of a port passes
//! (`memory::suite`; the in-memory adapter runs the same suite in its own tests).

use aws::dynamo::DynamoStore;
use chrono::NaiveDate;
use domain::audit::kpi::SampledEvent;
use domain::audit::store::AuditReader;
use domain::ids::TenantId;
use domain::ports::StoreError;
use e2e::TestStack;
use memory::suite;

/// The stack's store with the drift sample taking one account in `modulus`.
fn store(t: &TestStack, modulus: u32) -> DynamoStore {
    let mut s = (*t.stack.store).clone();
    s.audit_sample = modulus;
    s
}

struct Sample(DynamoStore);

#[async_trait::async_trait]
impl suite::SampleReader for Sample {
    async fn sampled_events(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError> {
        AuditReader::sampled_events(&self.0, tenant, day).await
    }
}

#[tokio::test]
async fn the_dynamo_ledger_keeps_a_claimed_events_first_owner() {
    let t = TestStack::fresh().await;
    suite::a_claimed_event_keeps_its_first_owner(&store(&t, 1), &t.tenant).await;
}

#[tokio::test]
async fn the_dynamo_ledger_answers_a_group_of_claims_as_single_claims() {
    let t = TestStack::fresh().await;
    suite::a_group_of_claims_answers_each_as_a_single_claim_would(&store(&t, 1), &t.tenant).await;
}

#[tokio::test]
async fn the_dynamo_ledger_samples_owned_events_once() {
    let t = TestStack::fresh().await;
    let s = store(&t, 1);
    suite::processing_a_chunk_copies_its_owned_events_to_the_drift_sample_once(
        &s,
        &Sample(s.clone()),
        &t.tenant,
    )
    .await;
}

#[tokio::test]
async fn the_dynamo_ledger_samples_a_duplicate_once() {
    let t = TestStack::fresh().await;
    let s = store(&t, 1);
    suite::a_duplicate_in_another_chunk_adds_no_sample(&s, &Sample(s.clone()), &t.tenant).await;
}

#[tokio::test]
async fn the_dynamo_ledger_samples_nothing_with_sampling_off() {
    let t = TestStack::fresh().await;
    let s = store(&t, 0);
    suite::an_unsampled_account_leaves_no_copy(&s, &Sample(s.clone()), &t.tenant).await;
}

#[tokio::test]
async fn dynamo_markers_belong_to_their_first_claimant() {
    let t = TestStack::fresh().await;
    suite::a_marker_belongs_to_its_first_claimant(t.stack.store.as_ref(), &t.tenant).await;
}

#[tokio::test]
async fn dynamo_entitlements_are_found_by_id_and_listed_by_account() {
    let t = TestStack::fresh().await;
    suite::entitlements_are_found_by_id_and_listed_by_account(t.stack.store.as_ref(), &t.tenant)
        .await;
}

#[tokio::test]
async fn dynamo_digests_hold_alerts_until_their_bucket_is_due() {
    let t = TestStack::fresh().await;
    suite::digests_hold_alerts_until_their_bucket_is_due(t.stack.store.as_ref(), &t.tenant).await;
}

#[tokio::test]
async fn dynamo_alert_history_keeps_each_accounts_newest_alerts_for_its_retention() {
    let t = TestStack::fresh().await;
    suite::an_accounts_recent_alerts_are_its_newest_within_the_retention(
        t.stack.store.as_ref(),
        &t.tenant,
    )
    .await;
}

#[tokio::test]
async fn the_dynamo_ledger_names_each_applied_unit_of_a_pack_and_writes_nothing() {
    let t = TestStack::fresh().await;
    suite::a_pack_meeting_applied_units_names_each_and_writes_nothing(&store(&t, 1), &t.tenant)
        .await;
}

#[tokio::test]
async fn the_dynamo_quarantine_pages_held_events_in_key_order() {
    let t = TestStack::fresh().await;
    suite::held_events_page_in_key_order_and_a_resend_replaces_its_copy(
        t.stack.store.as_ref(),
        &t.tenant,
    )
    .await;
}

#[tokio::test]
async fn dynamo_band_summaries_are_read_by_day_and_a_rerun_replaces_its_day() {
    let t = TestStack::fresh().await;
    suite::band_summaries_are_read_by_day_and_a_rerun_replaces_its_day(
        t.stack.store.as_ref(),
        &t.tenant,
    )
    .await;
}

#[tokio::test]
async fn the_dynamo_risk_index_pages_by_owner_and_by_band_change() {
    let t = TestStack::fresh().await;
    suite::the_risk_index_pages_by_owner_and_by_band_change(t.stack.store.as_ref(), &t.tenant)
        .await;
}
