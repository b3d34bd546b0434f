//! Pure pre-aggregation of events into day rollup deltas.
//!
//! A rollup item covers one (scope, day, meter, stage, service line) and carries the
//! day total plus 24 hourly buckets, so hour and day windows cost one write together;
//! months are summed from days at read time (see docs/adr/0002).

use crate::event::UsageEvent;
use crate::ids::{MeterName, Segment, ServiceLine, Stage, TenantId};
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

/// How many buckets a chunk's rollup deltas are split into by [`bucket_of`]: units of
/// the same bucket from different chunks of one invocation share their rollup items, so
/// they are written together (docs/adr/0001, "Merged units"). Part of the protocol:
/// a unit's content, and so what its marker stands for, depends on it. Changing it
/// while chunks are queued (or in the DLQ) would let a redelivery re-apply deltas under
/// a marker name it has not seen, so it is pinned by a test.
pub const UNIT_BUCKETS: u32 = 4;

/// Which bucket a rollup item belongs to: FNV-1a over its table key (stable across
/// processes, platforms and compiler versions, unlike `std`'s hasher), mod `buckets`.
pub fn bucket_of(tenant: &TenantId, key: &RollupKey, buckets: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let pk = crate::keys::usage_pk(tenant, &key.scope);
    let sk = crate::keys::usage_sk(key.day, &key.meter, key.stage, &key.service_line);
    for b in pk.bytes().chain(std::iter::once(b'|')).chain(sk.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let m = u64::from(buckets.max(1));
    u32::try_from(h % m).unwrap_or(0)
}

/// One unit of a chunk's rollup deltas: the atom of exactly-once. It is applied, with
/// its marker `(chunk, bucket, piece)`, in one transaction or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub bucket: u32,
    pub piece: u32,
    pub deltas: Vec<(RollupKey, RollupDelta)>,
}

/// Splits one chunk's deltas into units: by [`bucket_of`], then each bucket's sorted
/// items cut into pieces of at most `per_unit`. Deterministic: the same deltas always
/// give the same units, which is what lets a redelivery skip those already applied.
pub fn units(
    tenant: &TenantId,
    deltas: BTreeMap<RollupKey, RollupDelta>,
    buckets: u32,
    per_unit: usize,
) -> Vec<Unit> {
    let mut by_bucket: BTreeMap<u32, BTreeMap<RollupKey, RollupDelta>> = BTreeMap::new();
    for (k, d) in deltas {
        by_bucket
            .entry(bucket_of(tenant, &k, buckets))
            .or_default()
            .insert(k, d);
    }
    let mut out = Vec::new();
    for (bucket, deltas) in by_bucket {
        for (piece, deltas) in partition(deltas, per_unit).into_iter().enumerate() {
            out.push(Unit {
                bucket,
                piece: u32::try_from(piece).unwrap_or(u32::MAX),
                deltas,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::*;
    use chrono::{DateTime, Utc};

    fn ev(id: &str, account: &str, ts: &str, q: i64) -> UsageEvent {
        UsageEvent::new(
            EventId::parse(id).unwrap(),
            AccountId::parse(account).unwrap(),
            MeterName::parse("api_calls").unwrap(),
            Decimal::from(q),
            DateTime::parse_from_rfc3339(ts)
                .unwrap()
                .with_timezone(&Utc),
        )
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

    #[test]
    fn the_unit_layout_never_changes_silently() {
        // Changing either breaks exactly-once for chunks queued across the change
        // (docs/adr/0001): drain the events queue and its DLQ first, then update this.
        assert_eq!(UNIT_BUCKETS, 4);
        let t = TenantId::parse("acme").unwrap();
        let key = |a: &str| RollupKey {
            scope: Scope::Account(AccountId::parse(a).unwrap()),
            day: NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            meter: MeterName::parse("api_calls").unwrap(),
            stage: Stage::Delivered,
            service_line: ServiceLine::default_line(),
        };
        let got: Vec<u32> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|a| bucket_of(&t, &key(a), 1_000_003))
            .collect();
        assert_eq!(got, PINNED_BUCKETS);
    }

    // FNV-1a of "TENANT#acme#USAGE#ACCOUNT#a|2026-11-25#api_calls#delivered#default" etc.
    const PINNED_BUCKETS: [u32; 6] = [398431, 977766, 875797, 304047, 346497, 77052];

    #[test]
    fn units_are_deterministic_bucketed_and_bounded() {
        let t = TenantId::parse("acme").unwrap();
        let events: Vec<UsageEvent> = (0..60)
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
        let a = units(&t, deltas.clone(), 4, 5);
        assert_eq!(a, units(&t, deltas.clone(), 4, 5));
        assert!(a
            .iter()
            .all(|u| !u.deltas.is_empty() && u.deltas.len() <= 5));
        assert!(a.iter().all(|u| u
            .deltas
            .iter()
            .all(|(k, _)| bucket_of(&t, k, 4) == u.bucket)));
        let mut all: Vec<RollupKey> = a
            .iter()
            .flat_map(|u| u.deltas.iter().map(|(k, _)| k.clone()))
            .collect();
        all.sort();
        assert_eq!(all, deltas.into_keys().collect::<Vec<_>>());
        let mut ids: Vec<(u32, u32)> = a.iter().map(|u| (u.bucket, u.piece)).collect();
        ids.dedup();
        assert_eq!(ids.len(), a.len(), "every unit has its own marker name");
    }
}
