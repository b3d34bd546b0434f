//! Behaviour every [`LedgerStore`] adapter must show, written once and run against
//! each: [`MemoryLedger`](crate::MemoryLedger) in this crate's tests, the DynamoDB
//! adapter in the end-to-end suite (`tests/tests/suite/ports.rs`) against the
//! emulator. A failed expectation panics with the behaviour's name.
//!
//! The stores passed in must be empty for `tenant`; `sampling_all` copies every
//! account's events to the drift sample (modulus 1), `sampling_none` none (modulus 0).

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use domain::audit::kpi::SampledEvent;
use domain::chunk::Chunk;
use domain::event::UsageEvent;
use domain::health::model::Band;
use domain::health::record::HealthRecord;
use domain::health::store::{HealthStore, RiskEntry, RiskSelect, RiskSlot, Save};
use domain::ids::{AccountId, EventId, MeterName, Source, Stage, TenantId};
use domain::pipeline::{
    process_chunk, Claim, LedgerEntry, LedgerStore, PipelineConfig, UnitRef, UnitsOutcome,
};
use domain::ports::{
    AlertHistory, DigestStore, EntitlementStore, MarkerClaim, MarkerKind, MarkerStore, StoreError,
};
use domain::quarantine::{QuarantineReason, QuarantineStore, Quarantined};
use rust_decimal::Decimal;

/// Reads the drift sample back (the audit's `AuditReader::sampled_events`).
#[async_trait]
pub trait SampleReader: Send + Sync {
    async fn sampled_events(
        &self,
        tenant: &TenantId,
        day: NaiveDate,
    ) -> Result<Vec<SampledEvent>, StoreError>;
}

/// The day every event of the suite happens on.
pub fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap_or_default()
}

fn event(id: &str, account: &str, tenths: i64) -> Result<UsageEvent, String> {
    Ok(UsageEvent {
        stage: Stage::ALL[0],
        ..UsageEvent::new(
            EventId::parse(id).map_err(|e| e.to_string())?,
            AccountId::parse(account).map_err(|e| e.to_string())?,
            MeterName::parse("api_calls").map_err(|e| e.to_string())?,
            Decimal::new(tenths, 1),
            Utc.from_utc_datetime(&day().and_hms_opt(7, 30, 0).unwrap_or_default()),
        )
    })
}

fn chunk(tenant: &TenantId, id: &str, events: Vec<UsageEvent>) -> Chunk {
    Chunk {
        v: 1,
        chunk: id.to_owned(),
        tenant: tenant.clone(),
        source: Source::Api,
        received_at: Utc.from_utc_datetime(&day().and_hms_opt(8, 0, 0).unwrap_or_default()),
        events,
    }
}

fn entry<'a>(
    tenant: &'a TenantId,
    chunk: &'a str,
    pos: u32,
    ev: &'a UsageEvent,
) -> LedgerEntry<'a> {
    LedgerEntry {
        tenant,
        source: Source::Api,
        chunk,
        pos,
        segment: domain::ids::Segment::Unassigned,
        event: ev,
        received_at: Utc.from_utc_datetime(&day().and_hms_opt(8, 0, 0).unwrap_or_default()),
        expires_at: 4_000_000_000,
    }
}

fn quick() -> PipelineConfig {
    PipelineConfig {
        max_attempts: 2,
        backoff: std::time::Duration::from_millis(1),
        ..PipelineConfig::default()
    }
}

/// The first claim of an event is new; a later claim by another chunk is told who
/// owns it; the owner's own repeated claim is told it owns it.
pub async fn a_claimed_event_keeps_its_first_owner(store: &dyn LedgerStore, tenant: &TenantId) {
    let ev = event("suite-claim-1", "acct-claim", 10).expect("suite event");
    let first = store.claim(&entry(tenant, "chunk-a", 3, &ev)).await;
    assert_eq!(
        first.expect("first claim"),
        Claim::New,
        "a first claim is new"
    );
    let other = store.claim(&entry(tenant, "chunk-b", 0, &ev)).await;
    assert!(
        matches!(other.expect("second claim"), Claim::Existing { ref chunk, pos: 3, .. } if chunk == "chunk-a"),
        "a claim by another chunk names the first owner"
    );
    let again = store.claim(&entry(tenant, "chunk-a", 3, &ev)).await;
    assert!(
        matches!(again.expect("repeated claim"), Claim::Existing { ref chunk, pos: 3, .. } if chunk == "chunk-a"),
        "the owner's repeated claim names the owner itself"
    );
}

/// Claims in a group (the importer's): each answer is the one a single claim gives.
/// Events already claimed, by another chunk or by this one, are named with their owner;
/// the rest are claimed, and a second group call finds them all as this chunk's own.
pub async fn a_group_of_claims_answers_each_as_a_single_claim_would(
    store: &dyn LedgerStore,
    tenant: &TenantId,
) {
    let events: Vec<UsageEvent> = (0..5)
        .map(|i| event(&format!("suite-group-{i}"), "acct-group", 10).expect("suite event"))
        .collect();
    let other = store
        .claim(&entry(tenant, "chunk-other", 7, &events[1]))
        .await;
    assert_eq!(other.expect("other chunk's claim"), Claim::New);
    let earlier = store.claim(&entry(tenant, "chunk-g", 3, &events[3])).await;
    assert_eq!(earlier.expect("an earlier delivery's claim"), Claim::New);
    let group: Vec<LedgerEntry<'_>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| entry(tenant, "chunk-g", i as u32, e))
        .collect();
    let answers = store.claim_group(&group).await.expect("group claim");
    let owners: Vec<Option<(String, u32)>> = answers
        .iter()
        .map(|c| match c {
            Claim::New => None,
            Claim::Existing { chunk, pos, .. } => Some((chunk.clone(), *pos)),
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            None,
            Some(("chunk-other".to_owned(), 7)),
            None,
            Some(("chunk-g".to_owned(), 3)),
            None
        ],
        "existing claims are named with their owner, the others are new"
    );
    let again = store
        .claim_group(&group)
        .await
        .expect("repeated group claim");
    assert!(
        again.iter().enumerate().all(|(i, c)| match c {
            Claim::Existing { chunk, pos, .. } if i == 1 => chunk == "chunk-other" && *pos == 7,
            Claim::Existing { chunk, pos, .. } => chunk == "chunk-g" && *pos == i as u32,
            Claim::New => false,
        }),
        "a repeated group finds every claim made: {again:?}"
    );
}

/// Step 2 of the claim protocol: an owned event of a sampled account is copied into
/// the drift sample once, however often the chunk is delivered, with what the drift
/// check re-sums.
pub async fn processing_a_chunk_copies_its_owned_events_to_the_drift_sample_once(
    sampling_all: &dyn LedgerStore,
    sample: &dyn SampleReader,
    tenant: &TenantId,
) {
    let events = vec![
        event("suite-sample-1", "acct-s1", 15).expect("suite event"),
        event("suite-sample-2", "acct-s2", -5).expect("suite event"),
    ];
    let c = chunk(tenant, "chunk-sample", events);
    for delivery in 0..2 {
        process_chunk(sampling_all, &c, &quick())
            .await
            .unwrap_or_else(|e| panic!("delivery {delivery} of the chunk: {e}"));
    }
    let mut got = sample
        .sampled_events(tenant, day())
        .await
        .expect("reading the drift sample");
    got.sort_by(|a, b| a.account.as_str().cmp(b.account.as_str()));
    let summary: Vec<(String, u8, Decimal)> = got
        .iter()
        .map(|s| (s.account.to_string(), s.hour, s.quantity))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("acct-s1".to_owned(), 7, Decimal::new(15, 1)),
            ("acct-s2".to_owned(), 7, Decimal::new(-5, 1)),
        ],
        "each owned event is sampled once, at its hour and quantity"
    );
}

/// An event another chunk owns is not copied again by the chunk that lost the claim.
pub async fn a_duplicate_in_another_chunk_adds_no_sample(
    sampling_all: &dyn LedgerStore,
    sample: &dyn SampleReader,
    tenant: &TenantId,
) {
    let ev = event("suite-dup-1", "acct-dup", 20).expect("suite event");
    for id in ["chunk-dup-1", "chunk-dup-2"] {
        process_chunk(sampling_all, &chunk(tenant, id, vec![ev.clone()]), &quick())
            .await
            .unwrap_or_else(|e| panic!("processing {id}: {e}"));
    }
    let got = sample
        .sampled_events(tenant, day())
        .await
        .expect("reading the drift sample");
    let dup = got
        .iter()
        .filter(|s| s.account.as_str() == "acct-dup")
        .count();
    assert_eq!(dup, 1, "the event is sampled once, by its owner");
}

/// With sampling off, counting writes no sample at all.
pub async fn an_unsampled_account_leaves_no_copy(
    sampling_none: &dyn LedgerStore,
    sample: &dyn SampleReader,
    tenant: &TenantId,
) {
    let ev = event("suite-off-1", "acct-off", 10).expect("suite event");
    process_chunk(
        sampling_none,
        &chunk(tenant, "chunk-off", vec![ev]),
        &quick(),
    )
    .await
    .expect("processing the chunk");
    let got = sample
        .sampled_events(tenant, day())
        .await
        .expect("reading the drift sample");
    assert!(
        got.iter().all(|s| s.account.as_str() != "acct-off"),
        "no copy of an unsampled account's event"
    );
}

// ---------------------------------------------------------------------------------
// The small ports: markers, entitlements, digests. `tenant` must be unused in the
// store passed in.

/// A "done once" marker belongs to whoever claimed it first: a second owner is
/// told `Other`, the first owner is told it is `Mine` (not done until finished), and
/// the same key of another kind or tenant is a different marker.
pub async fn a_marker_belongs_to_its_first_claimant(store: &dyn MarkerStore, tenant: &TenantId) {
    let other_tenant = TenantId::parse(&format!("{tenant}-x")).unwrap_or_else(|_| tenant.clone());
    let claim = |t: &TenantId, kind, owner: &'static str| {
        let t = t.clone();
        async move {
            store
                .claim_marker(&t, kind, "k1", owner, i64::MAX / 2)
                .await
        }
    };
    let first = claim(tenant, MarkerKind::Raised, "m1").await;
    assert!(
        matches!(first, Ok(MarkerClaim::New)),
        "first claim: {first:?}"
    );
    let second = claim(tenant, MarkerKind::Raised, "m2").await;
    assert!(
        matches!(second, Ok(MarkerClaim::Other)),
        "another owner: {second:?}"
    );
    let again = claim(tenant, MarkerKind::Raised, "m1").await;
    assert!(
        matches!(again, Ok(MarkerClaim::Mine { done: false, .. })),
        "the first owner again, before finishing: {again:?}"
    );
    let finished = store.finish_marker(tenant, MarkerKind::Raised, "k1").await;
    assert!(finished.is_ok(), "finish: {finished:?}");
    let done = claim(tenant, MarkerKind::Raised, "m1").await;
    assert!(
        matches!(done, Ok(MarkerClaim::Mine { done: true, .. })),
        "the first owner after finishing: {done:?}"
    );
    let kind = claim(tenant, MarkerKind::Published, "m2").await;
    assert!(
        matches!(kind, Ok(MarkerClaim::New)),
        "another kind: {kind:?}"
    );
    let tenant2 = claim(&other_tenant, MarkerKind::Raised, "m2").await;
    assert!(
        matches!(tenant2, Ok(MarkerClaim::New)),
        "another tenant: {tenant2:?}"
    );
}

fn entitlement(id: &str, account: &str, limit: u32) -> domain::entitlement::Entitlement {
    let body = format!(
        r#"{{"account":"{account}","meter":"api_calls","limit":{limit},"period":"calendar_month"}}"#
    );
    let id = domain::ids::EntitlementId::parse(id).expect("suite ids are valid");
    domain::entitlement::entitlement_from_body(id, body.as_bytes(), Utc::now(), None)
        .expect("suite entitlements are valid")
}

/// Entitlements are found by id and listed by account, a put replaces, a delete
/// removes, and another tenant sees none of them.
pub async fn entitlements_are_found_by_id_and_listed_by_account(
    store: &dyn EntitlementStore,
    tenant: &TenantId,
) {
    let other_tenant = TenantId::parse(&format!("{tenant}-x")).unwrap_or_else(|_| tenant.clone());
    let (e1, e2, e3) = (
        entitlement("e1", "acme", 100),
        entitlement("e2", "acme", 200),
        entitlement("e3", "globex", 300),
    );
    for e in [&e1, &e2, &e3] {
        assert!(store.put_entitlement(tenant, e).await.is_ok());
    }
    let got = store.get_entitlement(tenant, &e2.id).await.ok().flatten();
    assert_eq!(got.as_ref(), Some(&e2), "found by id");
    let acme = AccountId::parse("acme").expect("valid");
    let mut listed: Vec<_> = store
        .list_entitlements(tenant, &acme)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.id)
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![e1.id.clone(), e2.id.clone()],
        "listed by account"
    );
    let raised = entitlement("e1", "acme", 150);
    assert!(store.put_entitlement(tenant, &raised).await.is_ok());
    let got = store.get_entitlement(tenant, &e1.id).await.ok().flatten();
    assert_eq!(got.map(|e| e.limit), Some(raised.limit), "a put replaces");
    assert!(store.delete_entitlement(tenant, &raised).await.is_ok());
    assert_eq!(
        store.get_entitlement(tenant, &e1.id).await.ok().flatten(),
        None,
        "deleted"
    );
    assert_eq!(
        store
            .list_entitlements(tenant, &acme)
            .await
            .unwrap_or_default()
            .len(),
        1,
        "the other stays"
    );
    assert_eq!(
        store
            .get_entitlement(&other_tenant, &e2.id)
            .await
            .ok()
            .flatten(),
        None,
        "another tenant's id is not found"
    );
}

/// A tenant's daily band summaries: the days asked for, oldest first, only those that
/// have one; a later run of a day replaces that day's; each tenant its own.
pub async fn band_summaries_are_read_by_day_and_a_rerun_replaces_its_day(
    store: &dyn domain::health::bands::BandSummaryStore,
    tenant: &TenantId,
) {
    use domain::health::bands::DailyBands;
    use domain::health::model::Band;
    use domain::ids::Segment;
    let first = day();
    let on = |offset: i64, run: &str, reds: usize| {
        DailyBands::count(
            first + chrono::Duration::days(offset),
            run,
            std::iter::repeat_n((Segment::Smb, Some(Band::Red)), reds).chain([
                (Segment::Enterprise, Some(Band::Green)),
                (Segment::Enterprise, None),
            ]),
        )
    };
    // Days 0, 1, 3 and 5 (none on 2 and 4), written out of order.
    for (offset, reds) in [(3, 3), (0, 1), (5, 5), (1, 2)] {
        assert!(store
            .put_band_summary(tenant, &on(offset, "run-a", reds))
            .await
            .is_ok());
    }
    // Day 3 scored again by a later run: it replaces the first.
    assert!(store
        .put_band_summary(tenant, &on(3, "run-b", 7))
        .await
        .is_ok());
    let read = store
        .band_summaries(
            tenant,
            first + chrono::Duration::days(1),
            first + chrono::Duration::days(4),
        )
        .await
        .unwrap_or_default();
    assert_eq!(
        read,
        vec![on(1, "run-a", 2), on(3, "run-b", 7)],
        "the days in range that have a summary, oldest first, the later run's"
    );
    let all = store
        .band_summaries(tenant, first, first + chrono::Duration::days(400))
        .await
        .unwrap_or_default();
    assert_eq!(
        all.iter()
            .map(|d| d.segments.get(&Segment::Smb).map_or(0, |c| c.red))
            .collect::<Vec<_>>(),
        vec![1, 2, 7, 5]
    );
    assert_eq!(
        all.first()
            .and_then(|d| d.segments.get(&Segment::Enterprise))
            .map(|c| (c.green, c.insufficient)),
        Some((1, 1)),
        "the counts come back as written"
    );
    let other = TenantId::parse("suite-other").expect("valid");
    assert!(
        store
            .band_summaries(&other, first, first + chrono::Duration::days(10))
            .await
            .unwrap_or_default()
            .is_empty(),
        "each tenant its own"
    );
    assert!(
        store
            .band_summaries(tenant, first + chrono::Duration::days(5), first)
            .await
            .unwrap_or_default()
            .is_empty(),
        "an empty range"
    );
}

fn alert(tenant: &TenantId, meter: &str) -> domain::alert::Alert {
    let def =
        domain::definition::Definition::new(MeterName::parse(meter).expect("valid"), Utc::now());
    let entry = domain::governance::ChangeEntry {
        meter: def.meter.clone(),
        at: Utc::now(),
        actor: "cli:suite".into(),
        action: domain::governance::ChangeAction::Deleted,
        changed: vec!["status".into()],
        before: None,
        after: def,
    };
    domain::governance::change_alert(tenant, &entry).expect("a deletion raises an alert")
}

/// An account's recent alerts: newest first, its own only, one per alert (recording
/// it again replaces it), the newest [`domain::alert::RECENT_ALERTS_KEPT`] kept, none
/// older than [`domain::alert::ALERT_HISTORY_DAYS`] answered.
pub async fn an_accounts_recent_alerts_are_its_newest_within_the_retention(
    store: &dyn AlertHistory,
    tenant: &TenantId,
) {
    use domain::alert::{ALERT_HISTORY_DAYS, RECENT_ALERTS_KEPT};
    let now = Utc::now();
    let acme = AccountId::parse("acme").expect("valid");
    let other = AccountId::parse("globex").expect("valid");
    let raised = |i: usize, account: &AccountId| {
        let mut a = alert(tenant, "logins");
        a.key = format!("suite:{account}:{i:03}");
        a.account = account.clone();
        a.raised_at = now - chrono::Duration::minutes(1_000 - i as i64);
        a
    };
    // Oldest first, more than are kept; one of them recorded twice.
    for i in 0..RECENT_ALERTS_KEPT + 5 {
        assert!(store.record_alert(&raised(i, &acme)).await.is_ok(), "{i}");
    }
    assert!(store
        .record_alert(&raised(RECENT_ALERTS_KEPT + 4, &acme))
        .await
        .is_ok());
    assert!(store.record_alert(&raised(0, &other)).await.is_ok());
    let keys = |alerts: Vec<domain::alert::Alert>| -> Vec<String> {
        alerts.into_iter().map(|a| a.key).collect()
    };
    let three = keys(
        store
            .recent_alerts(tenant, &acme, 3, now)
            .await
            .unwrap_or_default(),
    );
    let newest = RECENT_ALERTS_KEPT + 4;
    assert_eq!(
        three,
        (newest - 2..=newest)
            .rev()
            .map(|i| format!("suite:acme:{i:03}"))
            .collect::<Vec<_>>(),
        "newest first, at most the limit, recorded twice shown once"
    );
    let all = keys(
        store
            .recent_alerts(tenant, &acme, 1_000, now)
            .await
            .unwrap_or_default(),
    );
    assert_eq!(all.len(), RECENT_ALERTS_KEPT, "only the newest are kept");
    assert_eq!(all.last().map(String::as_str), Some("suite:acme:005"));
    assert_eq!(
        keys(
            store
                .recent_alerts(tenant, &other, 10, now)
                .await
                .unwrap_or_default()
        ),
        vec!["suite:globex:000".to_owned()],
        "each account its own"
    );
    // Past the retention, an alert is not answered (the TTL removes it in time).
    let later = now + chrono::Duration::days(ALERT_HISTORY_DAYS);
    assert!(store
        .recent_alerts(tenant, &other, 10, later)
        .await
        .unwrap_or_default()
        .is_empty());
    let nobody = AccountId::parse("initech").expect("valid");
    assert!(store
        .recent_alerts(tenant, &nobody, 10, now)
        .await
        .unwrap_or_default()
        .is_empty());
}

/// Held alerts wait in their bucket until it is due; holding one again replaces it;
/// a closed bucket is no longer due; policies and cooldowns are kept per tenant.
pub async fn digests_hold_alerts_until_their_bucket_is_due(
    store: &dyn DigestStore,
    tenant: &TenantId,
) {
    use domain::digest::{Cadence, DigestBucket};
    let start = day();
    let bucket = DigestBucket {
        tenant: tenant.clone(),
        segment: domain::ids::Segment::Smb,
        cadence: Cadence::Daily,
        start,
        end: start.succ_opt().unwrap_or(start),
    };
    let (a1, a2) = (alert(tenant, "logins"), alert(tenant, "exports"));
    for (a, why) in [(&a1, "first"), (&a2, "second"), (&a1, "again")] {
        assert!(store.hold_for_digest(&bucket, a, why).await.is_ok());
    }
    let mut entries = store.digest_entries(&bucket).await.unwrap_or_default();
    entries.sort_by(|x, y| x.0.key.cmp(&y.0.key));
    let reasons: Vec<&str> = entries.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(entries.len(), 2, "one entry per alert key: {reasons:?}");
    assert!(
        reasons.contains(&"again"),
        "holding again replaces: {reasons:?}"
    );
    let mine =
        |buckets: Vec<DigestBucket>| buckets.into_iter().filter(|b| &b.tenant == tenant).count();
    let before_end = Utc.from_utc_datetime(&start.and_hms_opt(23, 0, 0).unwrap_or_default());
    let at_end = Utc.from_utc_datetime(&bucket.end.and_hms_opt(0, 0, 1).unwrap_or_default());
    assert_eq!(
        mine(store.due_digests(before_end).await.unwrap_or_default()),
        0,
        "not due yet"
    );
    assert_eq!(
        mine(store.due_digests(at_end).await.unwrap_or_default()),
        1,
        "due"
    );
    assert!(store.close_digest(&bucket).await.is_ok());
    assert_eq!(
        mine(store.due_digests(at_end).await.unwrap_or_default()),
        0,
        "closed"
    );
    assert_eq!(
        store.last_published(tenant, "risk").await.ok().flatten(),
        None
    );
    let at = Utc.from_utc_datetime(&start.and_hms_opt(9, 0, 0).unwrap_or_default());
    assert!(store.record_published(tenant, "risk", at).await.is_ok());
    assert_eq!(
        store.last_published(tenant, "risk").await.ok().flatten(),
        Some(at)
    );
    assert_eq!(
        store.alert_policy(tenant).await.ok().flatten(),
        None,
        "no policy yet"
    );
}

/// Step 3: a pack of units is all-or-nothing. A pack that meets markers of units
/// already applied names every one of them (by its index in the pack) and writes
/// nothing, not even the other units' markers, so those can be sent again without it.
pub async fn a_pack_meeting_applied_units_names_each_and_writes_nothing(
    store: &dyn LedgerStore,
    tenant: &TenantId,
) {
    let ev = event("suite-pack-1", "acct-pack", 10).expect("suite event");
    let deltas: Vec<_> = domain::rollup::aggregate([(&ev, domain::ids::Segment::Unassigned)])
        .into_iter()
        .collect();
    let unit = |chunk: &'static str, bucket: u32| UnitRef {
        chunk,
        bucket,
        piece: 0,
        items: deltas.len(),
        expires_at: 4_000_000_000,
    };
    let apply = |units: Vec<UnitRef<'static>>| {
        let deltas = deltas.clone();
        async move { store.apply_units(tenant, &units, &deltas).await }
    };
    assert_eq!(
        apply(vec![unit("pack-a", 0)]).await.expect("first pack"),
        UnitsOutcome::Applied,
        "a new unit is applied"
    );
    assert_eq!(
        apply(vec![unit("pack-b", 0)]).await.expect("second pack"),
        UnitsOutcome::Applied,
        "another chunk's unit of the same items is applied too"
    );
    assert_eq!(
        apply(vec![
            unit("pack-c", 1),
            unit("pack-a", 0),
            unit("pack-d", 0),
            unit("pack-b", 0)
        ])
        .await
        .expect("mixed pack"),
        UnitsOutcome::AlreadyApplied(vec![1, 3]),
        "every applied unit of the pack is named"
    );
    assert_eq!(
        apply(vec![unit("pack-c", 1), unit("pack-d", 0)])
            .await
            .expect("the rest of the pack"),
        UnitsOutcome::Applied,
        "the cancelled pack wrote none of its new markers"
    );
    assert_eq!(
        apply(vec![unit("pack-d", 0)]).await.expect("a replay"),
        UnitsOutcome::AlreadyApplied(vec![0]),
        "a unit applied once is never applied again"
    );
}

/// A held copy of `id` (from `source`) for `meter`, of `tenths` / 10 units.
/// A scored record of [`day`]: red under 45; `changed` days ago the band was the other.
fn scored(i: usize, score: f64, owner: &str, changed: Option<i64>) -> HealthRecord {
    use domain::health::record::{HealthState, RecentScore};
    let band = if score < 45.0 { Band::Red } else { Band::Green };
    let other = if score < 45.0 { Band::Green } else { Band::Red };
    let recent = changed
        .map(|d| {
            vec![
                RecentScore {
                    as_of: day() - chrono::Duration::days(d + 1),
                    score: 50.0,
                    band: other,
                },
                RecentScore {
                    as_of: day() - chrono::Duration::days(d),
                    score,
                    band,
                },
            ]
        })
        .unwrap_or_default();
    HealthRecord {
        account: AccountId::parse(&format!("acct-{i:03}")).expect("an account id"),
        segment: [domain::ids::Segment::Smb, domain::ids::Segment::Enterprise][i % 2],
        as_of: day(),
        state: HealthState::Scored,
        score: Some(score),
        band: Some(band),
        components: Default::default(),
        baseline: None,
        reasons: Vec::new(),
        insufficient_reason: None,
        expansion_signal: false,
        milestones_reached: Default::default(),
        recent,
        alert_state: Default::default(),
        info: domain::health::record::AccountInfo {
            owner: Some(owner.to_owned()),
            ..Default::default()
        },
        computed_at: Utc.from_utc_datetime(&day().and_hms_opt(6, 0, 0).unwrap_or_default()),
    }
}

/// Every page of a listing, in order.
async fn all_pages(
    store: &dyn HealthStore,
    tenant: &TenantId,
    sel: &RiskSelect,
    limit: usize,
) -> Vec<RiskEntry> {
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    for _ in 0..100 {
        let page = store
            .list_risk_in(tenant, sel, day(), limit, cursor.as_deref())
            .await
            .expect("a risk page");
        assert!(page.items.len() <= limit, "at most a page");
        seen.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return seen,
        }
    }
    panic!("a listing that never ends");
}

fn accounts_in_order(rows: &[RiskEntry]) -> Vec<String> {
    rows.iter().map(|e| e.account.to_string()).collect()
}

/// The risk index by owner and by band change: a page of either is complete, each
/// entry once, riskiest first; re-scoring the same day moves entries rather than
/// adding them; a new owner takes the entry from the old one; filters the partition
/// does not key on (segment, band, the other filter) keep only what they name; each
/// tenant its own. Pages of 4 over 40 accounts of 3 owners.
pub async fn the_risk_index_pages_by_owner_and_by_band_change(
    store: &dyn HealthStore,
    tenant: &TenantId,
) {
    let owners = ["ann@example.com", "Bob@Example.com", "cy@example.com"];
    // Account i: score (i * 37) % 100, owner i % 3, band changed (i % 9) days ago for
    // i % 4 == 0 (0 to 8 days: some within the week, some not).
    let first: Vec<HealthRecord> = (0..40)
        .map(|i| {
            let changed = (i % 4 == 0).then_some((i % 9) as i64);
            scored(i, ((i * 37) % 100) as f64, owners[i % 3], changed)
        })
        .collect();
    let saves: Vec<Save> = first
        .iter()
        .map(|r| Save {
            record: r,
            previous_slot: None,
        })
        .collect();
    assert!(store.save_records(tenant, &saves).await.is_ok());
    // Re-scored the same day: every account a new score; account 3 moves from ann to
    // Bob; account 8 (band changed 8 days ago) changes band again today.
    let second: Vec<HealthRecord> = (0..first.len())
        .map(|i| {
            let owner = if i == 3 { owners[1] } else { owners[i % 3] };
            let changed = if i == 8 {
                Some(0)
            } else {
                (i % 4 == 0).then_some((i % 9) as i64)
            };
            scored(i, ((i * 37 + 11) % 100) as f64, owner, changed)
        })
        .collect();
    let saves: Vec<Save> = second
        .iter()
        .zip(&first)
        .map(|(r, old)| Save {
            record: r,
            previous_slot: RiskSlot::of(old),
        })
        .collect();
    assert!(store.save_records(tenant, &saves).await.is_ok());
    let entries: Vec<RiskEntry> = second.iter().filter_map(RiskEntry::of).collect();
    let expected = |keep: &dyn Fn(&RiskEntry) -> bool| {
        let mut rows: Vec<&RiskEntry> = entries.iter().filter(|e| keep(e)).collect();
        rows.sort_by_key(|e| domain::keys::health_risk_sk(e.score, &e.account));
        rows.iter()
            .map(|e| e.account.to_string())
            .collect::<Vec<_>>()
    };
    let owner = |o: &str| RiskSelect {
        owner: Some(o.to_owned()),
        ..RiskSelect::default()
    };
    let week = day() - chrono::Duration::days(6);
    let is = |e: &RiskEntry, o: &str| {
        e.owner.as_deref().map(str::to_lowercase) == Some(o.to_lowercase())
    };
    for o in owners {
        let listed = all_pages(store, tenant, &owner(&o.to_uppercase()), 4).await;
        assert_eq!(
            accounts_in_order(&listed),
            expected(&|e| is(e, o)),
            "every account of {o} once, riskiest first, at today's score"
        );
    }
    let ann = all_pages(store, tenant, &owner(owners[0]), 4).await;
    assert!(
        !accounts_in_order(&ann).contains(&"acct-003".to_owned()),
        "moved away"
    );
    let bob = all_pages(store, tenant, &owner(owners[1]), 4).await;
    assert!(
        accounts_in_order(&bob).contains(&"acct-003".to_owned()),
        "moved to Bob"
    );
    let changed = RiskSelect {
        changed_since: Some(week),
        ..RiskSelect::default()
    };
    let listed = all_pages(store, tenant, &changed, 4).await;
    let within = |e: &RiskEntry| e.band_changed_on.is_some_and(|c| c >= week);
    assert_eq!(
        accounts_in_order(&listed),
        expected(&within),
        "band changed this week"
    );
    assert!(
        accounts_in_order(&listed).contains(&"acct-008".to_owned()),
        "changed again today"
    );
    assert!(!listed.is_empty() && listed.len() < entries.len());
    let narrowed = RiskSelect {
        segment: Some(domain::ids::Segment::Smb),
        bands: vec![Band::Red],
        changed_since: Some(week),
        owner: Some(owners[0].to_owned()),
    };
    let listed = all_pages(store, tenant, &narrowed, 2).await;
    assert_eq!(
        accounts_in_order(&listed),
        expected(&|e| narrowed.keeps(e)),
        "segment, band and window filtered within the owner's partition"
    );
    let red_week = RiskSelect {
        bands: vec![Band::Red],
        ..changed.clone()
    };
    assert_eq!(
        accounts_in_order(&all_pages(store, tenant, &red_week, 3).await),
        expected(&|e| within(e) && e.band == Band::Red)
    );
    let other = TenantId::parse("suite-other").expect("valid");
    assert!(
        all_pages(store, &other, &owner(owners[0]), 4)
            .await
            .is_empty()
            && all_pages(store, &other, &changed, 4).await.is_empty(),
        "each tenant its own"
    );
}

fn held(source: Source, id: &str, meter: &str, tenths: i64) -> Quarantined {
    let mut event = event(id, "acct-held", tenths).expect("suite event");
    event.meter = MeterName::parse(meter).expect("suite meter");
    Quarantined {
        source,
        reason: QuarantineReason::MeterDeleted,
        received_at: Utc.from_utc_datetime(&day().and_hms_opt(8, 0, 0).unwrap_or_default()),
        event,
    }
}

/// Every page of `meter`'s held events, `limit` at a time, in the order given.
async fn all_held(
    store: &dyn QuarantineStore,
    tenant: &TenantId,
    meter: &MeterName,
    limit: usize,
) -> Vec<Quarantined> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = store
            .held(tenant, meter, limit, cursor.as_deref())
            .await
            .expect("held events can be read");
        assert!(page.items.len() <= limit, "a page holds at most its limit");
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("paging did not end");
}

/// Held events are kept per (tenant, meter) and page in key order (`<source>#<id>`);
/// a resent event replaces its own copy; released events are gone and the rest stay.
pub async fn held_events_page_in_key_order_and_a_resend_replaces_its_copy(
    store: &dyn QuarantineStore,
    tenant: &TenantId,
) {
    let meter = MeterName::parse("held_meter").expect("suite meter");
    let mut events: Vec<Quarantined> = (0..5)
        .map(|i| held(Source::Api, &format!("e-{i}"), "held_meter", 10))
        .collect();
    events.push(held(Source::Import, "e-0", "held_meter", 10));
    events.push(held(Source::Api, "e-9", "other_meter", 10));
    assert!(store.hold(tenant, &events).await.is_ok());
    // The sender resends e-2 with another quantity: its copy is replaced.
    assert!(store
        .hold(tenant, &[held(Source::Api, "e-2", "held_meter", 70)])
        .await
        .is_ok());
    let all = all_held(store, tenant, &meter, 2).await;
    let keys: Vec<String> = all.iter().map(Quarantined::key).collect();
    assert_eq!(
        keys,
        [
            "api#e-0",
            "api#e-1",
            "api#e-2",
            "api#e-3",
            "api#e-4",
            "import#e-0"
        ],
        "one copy per (source, id), in key order, this meter only"
    );
    assert_eq!(all[2].event.quantity, Decimal::new(70, 1), "the resend won");
    let count = |t: &TenantId, m: &MeterName| {
        let (t, m) = (t.clone(), m.clone());
        async move { store.count_held(&t, &m).await.ok() }
    };
    assert_eq!(
        count(tenant, &meter).await,
        Some(6),
        "the count is the copies held"
    );
    assert!(store
        .release(tenant, &meter, &["api#e-1".into(), "import#e-0".into()])
        .await
        .is_ok());
    assert_eq!(
        count(tenant, &meter).await,
        Some(4),
        "released ones leave the count"
    );
    let left: Vec<String> = all_held(store, tenant, &meter, 10)
        .await
        .iter()
        .map(Quarantined::key)
        .collect();
    assert_eq!(left, ["api#e-0", "api#e-2", "api#e-3", "api#e-4"]);
    let other = MeterName::parse("other_meter").expect("suite meter");
    assert_eq!(all_held(store, tenant, &other, 10).await.len(), 1);
    let stranger = TenantId::parse("quarantine-stranger").expect("tenant id");
    assert!(
        all_held(store, &stranger, &meter, 10).await.is_empty(),
        "another tenant sees nothing"
    );
    assert_eq!(
        count(&stranger, &meter).await,
        Some(0),
        "nor counts anything"
    );
    assert_eq!(count(tenant, &other).await, Some(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryLedger;

    fn tenant() -> TenantId {
        TenantId::parse("suite").expect("tenant id")
    }

    fn ledger(modulus: u32) -> MemoryLedger {
        let mut l = MemoryLedger::new();
        l.audit_sample = modulus;
        l
    }

    #[tokio::test]
    async fn the_memory_ledger_names_each_applied_unit_of_a_pack_and_writes_nothing() {
        a_pack_meeting_applied_units_names_each_and_writes_nothing(&ledger(1), &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_keeps_a_claimed_events_first_owner() {
        a_claimed_event_keeps_its_first_owner(&ledger(1), &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_answers_a_group_of_claims_as_single_claims() {
        a_group_of_claims_answers_each_as_a_single_claim_would(&ledger(1), &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_samples_owned_events_once() {
        let l = ledger(1);
        processing_a_chunk_copies_its_owned_events_to_the_drift_sample_once(&l, &l, &tenant())
            .await;
    }

    #[tokio::test]
    async fn the_memory_ledger_samples_a_duplicate_once() {
        let l = ledger(1);
        a_duplicate_in_another_chunk_adds_no_sample(&l, &l, &tenant()).await;
    }

    #[tokio::test]
    async fn the_memory_ledger_samples_nothing_with_sampling_off() {
        let l = ledger(0);
        an_unsampled_account_leaves_no_copy(&l, &l, &tenant()).await;
    }
}
