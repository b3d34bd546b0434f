//! Pure pre-aggregation of events into day rollup deltas.
//!
//! A rollup item covers one (scope, day, meter, stage, service line) and carries the
//! day total plus 24 hourly buckets, so hour and day windows cost one write together;
//! months are summed from days at read time (see docs/adr/0002).

use crate::event::UsageEvent;
use crate::ids::{MeterName, Segment, ServiceLine, Stage};
use crate::keys::Scope;
use chrono::{NaiveDate, Timelike};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    pub scope: Scope,
    pub day: NaiveDate,
    pub meter: MeterName,
    pub stage: Stage,
    pub service_line: ServiceLine,
}

/// Quantity and event count of one hour bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bucket {
    pub quantity: Decimal,
    pub events: i64,
}

impl Bucket {
    pub fn add(&mut self, other: Bucket) {
        self.quantity += other.quantity;
        self.events += other.events;
    }
}

/// What one batch adds to one rollup item, per hour of the day.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RollupDelta {
    pub hours: BTreeMap<u8, Bucket>,
}

impl RollupDelta {
    pub fn total(&self) -> Bucket {
        let mut t = Bucket::default();
        for b in self.hours.values() {
            t.add(*b);
        }
        t
    }
    pub fn merge(&mut self, other: &RollupDelta) {
        for (h, b) in &other.hours {
            self.hours.entry(*h).or_default().add(*b);
        }
    }
}

/// Every rollup an event belongs to: its account's and its segment's.
pub fn keys_for(ev: &UsageEvent, segment: Segment) -> [RollupKey; 2] {
    let day = ev.timestamp.date_naive();
    let mk = |scope| RollupKey {
        scope,
        day,
        meter: ev.meter.clone(),
        stage: ev.stage,
        service_line: ev.service_line.clone(),
    };
    [
        mk(Scope::Account(ev.account.clone())),
        mk(Scope::Segment(segment)),
    ]
}

/// Sums events into deltas keyed by rollup item, in a deterministic order.
pub fn aggregate<'a>(
    events: impl IntoIterator<Item = (&'a UsageEvent, Segment)>,
) -> BTreeMap<RollupKey, RollupDelta> {
    let mut out: BTreeMap<RollupKey, RollupDelta> = BTreeMap::new();
    for (ev, segment) in events {
        let hour = ev.timestamp.hour() as u8;
        for key in keys_for(ev, segment) {
            out.entry(key)
                .or_default()
                .hours
                .entry(hour)
                .or_default()
                .add(Bucket {
                    quantity: ev.quantity,
                    events: 1,
                });
        }
    }
    out
}

/// Splits deltas into transaction-sized parts. Deterministic: the same deltas always
/// give the same parts, which is what lets a redelivery skip parts already applied.
pub fn partition(
    deltas: BTreeMap<RollupKey, RollupDelta>,
    per_part: usize,
) -> Vec<Vec<(RollupKey, RollupDelta)>> {
    let per_part = per_part.max(1);
    let mut parts = Vec::new();
    let mut current = Vec::with_capacity(per_part);
    for entry in deltas {
        current.push(entry);
        if current.len() == per_part {
            parts.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// One stored day rollup with its hourly buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub key: RollupKey,
    pub total: Bucket,
    pub hours: [Bucket; 24],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::*;
    use chrono::{DateTime, Utc};

    fn ev(id: &str, account: &str, ts: &str, q: i64) -> UsageEvent {
        UsageEvent {
            id: EventId::parse(id).unwrap(),
            account: AccountId::parse(account).unwrap(),
            meter: MeterName::parse("api_calls").unwrap(),
            quantity: Decimal::from(q),
            unit: None,
            timestamp: DateTime::parse_from_rfc3339(ts)
                .unwrap()
                .with_timezone(&Utc),
            timestamp_defaulted: false,
            stage: Stage::Delivered,
            service_line: ServiceLine::default_line(),
            contact: None,
            entitlement: None,
            correction_reason: None,
            properties: None,
        }
    }

    #[test]
    fn events_land_in_the_hour_and_day_of_their_event_time() {
        let a = ev("1", "a", "2026-11-24T23:59:59Z", 2);
        let b = ev("2", "a", "2026-11-25T00:00:00Z", 3);
        let c = ev("3", "a", "2026-11-25T00:30:00Z", 4);
        let d = aggregate([(&a, Segment::Smb), (&b, Segment::Smb), (&c, Segment::Smb)]);
        assert_eq!(d.len(), 4, "two days x (account, segment)");
        let key = |day: u32| RollupKey {
            scope: Scope::Account(AccountId::parse("a").unwrap()),
            day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            meter: MeterName::parse("api_calls").unwrap(),
            stage: Stage::Delivered,
            service_line: ServiceLine::default_line(),
        };
        assert_eq!(
            d[&key(24)].hours[&23],
            Bucket {
                quantity: Decimal::from(2),
                events: 1
            }
        );
        assert_eq!(
            d[&key(25)].hours[&0],
            Bucket {
                quantity: Decimal::from(7),
                events: 2
            }
        );
        assert_eq!(d[&key(25)].total().quantity, Decimal::from(7));
    }

    #[test]
    fn partitions_are_deterministic_and_bounded() {
        let events: Vec<UsageEvent> = (0..50)
            .map(|i| {
                ev(
                    &i.to_string(),
                    &format!("acct{i}"),
                    "2026-11-25T10:00:00Z",
                    1,
                )
            })
            .collect();
        let deltas = aggregate(events.iter().map(|e| (e, Segment::Smb)));
        let a = partition(deltas.clone(), 7);
        let b = partition(deltas, 7);
        assert_eq!(a, b);
        assert!(a.iter().all(|p| p.len() <= 7));
        assert_eq!(a.iter().map(Vec::len).sum::<usize>(), 51);
    }
}
