//! KPI definitions: every rate keeps its numerator and denominator so reports are
//! exact, and `None` means "nothing to measure" rather than 0 %.

use super::counters::Counts;
use crate::ids::{AccountId, MeterName, ServiceLine, Stage};
use crate::rollup::Bucket;
use crate::rollup::RollupRow;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// numerator / denominator, exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Rate {
    pub numerator: u64,
    pub denominator: u64,
    /// `numerator / denominator`, absent when the denominator is 0.
    pub value: Option<f64>,
}

impl Rate {
    pub fn of(numerator: u64, denominator: u64) -> Self {
        Self {
            numerator,
            denominator,
            value: (denominator > 0).then(|| numerator as f64 / denominator as f64),
        }
    }
    pub fn percent(&self) -> String {
        match self.value {
            Some(v) => format!(
                "{:.1}% ({}/{})",
                v * 100.0,
                self.numerator,
                self.denominator
            ),
            None => "n/a".to_owned(),
        }
    }
}

/// The data-quality KPIs of a tenant or of one definition over the audit window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Kpis {
    pub events_received: u64,
    pub events_counted: u64,
    /// (ledger duplicates + repeated ids in one request) / (counted + both).
    pub duplicate_rate: Rate,
    /// Counted events of accounts without a profile / counted.
    pub unassociated_rate: Rate,
    /// Counted events whose timestamp was defaulted / counted.
    pub timestamp_defaulted_rate: Rate,
    /// Refused for skewed timestamps (future / beyond the horizon) / received.
    pub timestamp_skewed_rate: Rate,
    /// Counted events arriving > 24 h after their timestamp / counted.
    pub late_rate: Rate,
    /// Refused for breaking the definition (unit, value type, properties) / received.
    pub schema_violation_rate: Rate,
    /// Events of undefined meters.
    pub unknown_meter_events: u64,
    /// Events held in quarantine or refused because their definition is deleted.
    pub deleted_meter_events: u64,
    /// Events sent for a deprecated definition (counted and flagged, or held).
    pub deprecated_events: u64,
    /// Events held in quarantine in the window (deleted / deprecated definitions).
    #[serde(default)]
    pub quarantined_events: u64,
    /// Held events released to be counted (restore or replay) in the window.
    #[serde(default)]
    pub released_events: u64,
    /// Events sent under a legacy alias.
    pub alias_events: u64,
    /// HubSpot changes no mapping rule matched / (those + HubSpot events counted).
    pub unmapped_source_rate: Rate,
    /// Corrections counted / counted, and their total |quantity|.
    pub correction_rate: Rate,
    #[serde(with = "rust_decimal::serde::str")]
    pub correction_quantity: Decimal,
}

impl Kpis {
    pub fn from_counts(c: &Counts, unmapped: u64) -> Self {
        let dups = c.duplicates + c.duplicates_in_request;
        Self {
            events_received: c.received,
            events_counted: c.counted,
            duplicate_rate: Rate::of(dups, c.counted + dups),
            unassociated_rate: Rate::of(c.unassociated, c.counted),
            timestamp_defaulted_rate: Rate::of(c.timestamp_defaulted, c.counted),
            timestamp_skewed_rate: Rate::of(c.timestamp_skewed, c.received),
            late_rate: Rate::of(c.late, c.counted),
            schema_violation_rate: Rate::of(c.schema_violations, c.received),
            unknown_meter_events: c.unknown_meter,
            deleted_meter_events: c.deleted_meter,
            deprecated_events: c.deprecated,
            quarantined_events: c.quarantined,
            released_events: c.released,
            alias_events: c.alias_resolved,
            unmapped_source_rate: Rate::of(unmapped, unmapped + c.hubspot_counted),
            correction_rate: Rate::of(c.corrections, c.counted),
            correction_quantity: c.correction_quantity,
        }
    }
}

/// One sampled ledger event, as the drift check re-sums it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledEvent {
    pub account: AccountId,
    pub day: NaiveDate,
    pub hour: u8,
    pub meter: MeterName,
    pub stage: Stage,
    pub service_line: ServiceLine,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
}

/// A rollup window whose stored numbers differ from the ledger's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftMismatch {
    pub account: AccountId,
    pub day: NaiveDate,
    pub meter: MeterName,
    pub stage: Stage,
    pub service_line: ServiceLine,
    #[serde(with = "rust_decimal::serde::str")]
    pub ledger_quantity: Decimal,
    pub ledger_events: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub rollup_quantity: Decimal,
    pub rollup_events: i64,
}

type WindowKey = (MeterName, Stage, ServiceLine);

/// Re-sums one (account, day) from its ledger sample and compares every rollup item
/// of that account and day, hour by hour and in total. Returns the windows checked
/// (rollup items) and the mismatches.
pub fn compare_window(
    account: &AccountId,
    day: NaiveDate,
    ledger: &[SampledEvent],
    rows: &[RollupRow],
) -> (usize, Vec<DriftMismatch>) {
    let mut want: BTreeMap<WindowKey, ([Bucket; 24], Bucket)> = BTreeMap::new();
    for e in ledger
        .iter()
        .filter(|e| &e.account == account && e.day == day)
    {
        let w = want
            .entry((e.meter.clone(), e.stage, e.service_line.clone()))
            .or_insert(([Bucket::default(); 24], Bucket::default()));
        let b = Bucket {
            quantity: e.quantity,
            events: 1,
        };
        w.0[usize::from(e.hour.min(23))].add(b);
        w.1.add(b);
    }
    let mut have: BTreeMap<WindowKey, ([Bucket; 24], Bucket)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.key.day == day) {
        have.insert(
            (r.key.meter.clone(), r.key.stage, r.key.service_line.clone()),
            (r.hours, r.total),
        );
    }
    let mut keys: Vec<&WindowKey> = want.keys().chain(have.keys()).collect();
    keys.sort();
    keys.dedup();
    let zero = ([Bucket::default(); 24], Bucket::default());
    let mut out = Vec::new();
    for k in &keys {
        let w = want.get(*k).unwrap_or(&zero);
        let h = have.get(*k).unwrap_or(&zero);
        let same_total = w.1.quantity == h.1.quantity && w.1.events == h.1.events;
        if !same_total || w.0 != h.0 {
            out.push(DriftMismatch {
                account: account.clone(),
                day,
                meter: k.0.clone(),
                stage: k.1,
                service_line: k.2.clone(),
                ledger_quantity: w.1.quantity,
                ledger_events: w.1.events,
                rollup_quantity: h.1.quantity,
                rollup_events: h.1.events,
            });
        }
    }
    (keys.len(), out)
}

/// An (account, meter, stage) whose usage over the window sums below zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegativeBalance {
    pub account: AccountId,
    pub meter: MeterName,
    pub stage: Stage,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
}

pub fn negative_balances(account: &AccountId, rows: &[RollupRow]) -> Vec<NegativeBalance> {
    let mut sums: BTreeMap<(MeterName, Stage), Decimal> = BTreeMap::new();
    for r in rows {
        *sums.entry((r.key.meter.clone(), r.key.stage)).or_default() += r.total.quantity;
    }
    below_zero(account, sums)
}

/// The (meter, stage) sums of one account that are below zero.
pub fn below_zero(
    account: &AccountId,
    sums: BTreeMap<(MeterName, Stage), Decimal>,
) -> Vec<NegativeBalance> {
    sums.into_iter()
        .filter(|(_, q)| q.is_sign_negative() && !q.is_zero())
        .map(|((meter, stage), quantity)| NegativeBalance {
            account: account.clone(),
            meter,
            stage,
            quantity,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Scope;
    use crate::rollup::RollupKey;

    fn ev(meter: &str, hour: u8, q: i64) -> SampledEvent {
        SampledEvent {
            account: AccountId::parse("a").unwrap(),
            day: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            hour,
            meter: MeterName::parse(meter).unwrap(),
            stage: Stage::Delivered,
            service_line: ServiceLine::default_line(),
            quantity: Decimal::from(q),
        }
    }

    fn row(meter: &str, hours: &[(usize, i64, i64)]) -> RollupRow {
        let mut r = RollupRow {
            key: RollupKey {
                scope: Scope::Account(AccountId::parse("a").unwrap()),
                day: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
                meter: MeterName::parse(meter).unwrap(),
                stage: Stage::Delivered,
                service_line: ServiceLine::default_line(),
            },
            total: Bucket::default(),
            hours: [Bucket::default(); 24],
        };
        for &(h, q, n) in hours {
            let b = Bucket {
                quantity: Decimal::from(q),
                events: n,
            };
            r.hours[h].add(b);
            r.total.add(b);
        }
        r
    }

    #[test]
    fn rates_keep_numerator_and_denominator_and_are_absent_without_data() {
        let c = Counts {
            counted: 8,
            duplicates: 1,
            duplicates_in_request: 1,
            unassociated: 2,
            received: 10,
            ..Default::default()
        };
        let k = Kpis::from_counts(&c, 0);
        assert_eq!(k.duplicate_rate, Rate::of(2, 10));
        assert_eq!(k.duplicate_rate.value, Some(0.2));
        assert_eq!(k.unassociated_rate.value, Some(0.25));
        assert_eq!(k.unmapped_source_rate.value, None);
        assert_eq!(k.duplicate_rate.percent(), "20.0% (2/10)");
    }

    #[test]
    fn a_rollup_that_matches_its_ledger_has_no_drift() {
        let a = AccountId::parse("a").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let ledger = vec![
            ev("api_calls", 3, 2),
            ev("api_calls", 3, 5),
            ev("api_calls", 9, 1),
        ];
        let rows = vec![row("api_calls", &[(3, 7, 2), (9, 1, 1)])];
        assert_eq!(compare_window(&a, day, &ledger, &rows), (1, vec![]));
    }

    #[test]
    fn a_corrupted_hour_or_an_extra_rollup_is_drift() {
        let a = AccountId::parse("a").unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let ledger = vec![ev("api_calls", 3, 2)];
        // Same total, wrong hour.
        let (_, m) = compare_window(&a, day, &ledger, &[row("api_calls", &[(4, 2, 1)])]);
        assert_eq!(m.len(), 1);
        // A rollup no ledger event explains.
        let (n, m) = compare_window(
            &a,
            day,
            &ledger,
            &[
                row("api_calls", &[(3, 2, 1)]),
                row("storage_gb", &[(1, 1, 1)]),
            ],
        );
        assert_eq!((n, m.len()), (2, 1));
        assert_eq!(m[0].meter.as_str(), "storage_gb");
    }

    proptest::proptest! {
        #[test]
        fn rollups_aggregated_from_the_sampled_events_never_drift_in_any_order(
            events in proptest::collection::vec((0u8..24, 0usize..3, -5i64..50), 1..60),
            seed in 0u64..1000,
        ) {
            use crate::event::UsageEvent;
            use crate::ids::{EventId, Segment};
            let a = AccountId::parse("a").unwrap();
            let day = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
            let meters = ["api_calls", "storage_gb", "seats"];
            let evs: Vec<UsageEvent> = events.iter().enumerate().map(|(i, (h, m, q))| UsageEvent::new(EventId::parse(&format!("e{i}")).unwrap(), a.clone(), MeterName::parse(meters[*m]).unwrap(), Decimal::from(*q), day.and_hms_opt(u32::from(*h), 30, 0).unwrap().and_utc())).collect();
            let sample: Vec<SampledEvent> = evs.iter().map(|e| SampledEvent {
                account: a.clone(), day, hour: chrono::Timelike::hour(&e.timestamp) as u8, meter: e.meter.clone(),
                stage: e.stage, service_line: e.service_line.clone(), quantity: e.quantity,
            }).collect();
            // Aggregate in a shuffled order, as chunks would.
            let mut order: Vec<&UsageEvent> = evs.iter().collect();
            let n = order.len();
            for i in 0..n { order.swap(i, (i * 7 + seed as usize) % n); }
            let rows: Vec<RollupRow> = crate::rollup::aggregate(order.into_iter().map(|e| (e, Segment::Smb)))
                .into_iter()
                .filter(|(k, _)| matches!(k.scope, Scope::Account(_)))
                .map(|(key, delta)| {
                    let mut hours = [Bucket::default(); 24];
                    for (h, b) in &delta.hours { hours[usize::from(*h)] = *b; }
                    RollupRow { total: delta.total(), key, hours }
                })
                .collect();
            let (checked, drift) = compare_window(&a, day, &sample, &rows);
            proptest::prop_assert!(drift.is_empty());
            proptest::prop_assert_eq!(checked, rows.len());
        }
    }

    #[test]
    fn usage_below_zero_over_the_window_is_a_negative_balance() {
        let a = AccountId::parse("a").unwrap();
        let rows = vec![
            row("api_calls", &[(1, 3, 1), (2, -5, 1)]),
            row("storage_gb", &[(1, 1, 1)]),
        ];
        let n = negative_balances(&a, &rows);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].quantity, Decimal::from(-2));
    }
}
