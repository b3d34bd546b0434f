//! Every port of `domain` in memory, with the fault injection tests need, and the
//! behaviour suite each adapter of a port must pass (`suite`).

pub mod health;
pub mod ledger;
pub mod quarantine;
pub mod queue;
pub mod stores;
pub mod suite;

pub use ledger::{Fault, MemoryLedger};
pub use quarantine::MemoryQuarantine;
pub use queue::MemoryQueue;
pub use stores::{
    MemoryAlertHistory, MemoryBandSummaries, MemoryDigests, MemoryDirectory, MemoryEntitlements,
    MemoryMarkers,
};

#[cfg(test)]
mod small_ports_pass_the_suite {
    use super::*;
    use domain::ids::TenantId;

    fn tenant() -> TenantId {
        TenantId::parse("suite").expect("valid")
    }

    #[tokio::test]
    async fn memory_markers_belong_to_their_first_claimant() {
        suite::a_marker_belongs_to_its_first_claimant(&MemoryMarkers::default(), &tenant()).await;
    }

    #[tokio::test]
    async fn memory_entitlements_are_found_by_id_and_listed_by_account() {
        suite::entitlements_are_found_by_id_and_listed_by_account(
            &MemoryEntitlements::default(),
            &tenant(),
        )
        .await;
    }

    #[tokio::test]
    async fn memory_alert_history_keeps_each_accounts_newest_alerts_for_its_retention() {
        suite::an_accounts_recent_alerts_are_its_newest_within_the_retention(
            &MemoryAlertHistory::default(),
            &tenant(),
        )
        .await;
    }

    #[tokio::test]
    async fn memory_band_summaries_are_read_by_day_and_a_rerun_replaces_its_day() {
        suite::band_summaries_are_read_by_day_and_a_rerun_replaces_its_day(
            &MemoryBandSummaries::default(),
            &tenant(),
        )
        .await;
    }

    #[tokio::test]
    async fn the_memory_risk_index_pages_by_owner_and_by_band_change() {
        suite::the_risk_index_pages_by_owner_and_by_band_change(
            &crate::health::MemoryHealthStore::default(),
            &tenant(),
        )
        .await;
    }

    #[tokio::test]
    async fn memory_digests_hold_alerts_until_their_bucket_is_due() {
        suite::digests_hold_alerts_until_their_bucket_is_due(&MemoryDigests::default(), &tenant())
            .await;
    }

    #[tokio::test]
    async fn memory_quarantine_pages_held_events_in_key_order() {
        suite::held_events_page_in_key_order_and_a_resend_replaces_its_copy(
            &MemoryQuarantine::default(),
            &tenant(),
        )
        .await;
    }
}
