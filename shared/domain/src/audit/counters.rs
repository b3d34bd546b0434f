//! Counters behind the audit KPIs. They are aggregated per request (ingest) and per
//! chunk (rollup) into one item per (tenant, receipt day, meter), so their write cost
//! is per request or chunk and meter, never per event.

use crate::event::{RejectCode, UsageEvent};
use crate::ids::{MeterName, Segment, Source};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where events of meters that are not defined (or not even valid names) are counted.
pub const UNKNOWN_METER: &str = "~unknown";

/// An event is late when it arrives more than this after its own timestamp.
pub fn late_after() -> Duration {
    Duration::hours(24)
}

macro_rules! counts {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Event counts of one meter on one receipt day. Field names are the stored
        /// attribute names (numbers, updated with `ADD`).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Counts {
            $( $(#[$doc])* #[serde(default)] pub $name: u64, )*
            /// Sum of |quantity| of corrections (negative events) counted.
            #[serde(default, with = "rust_decimal::serde::str")]
            pub correction_quantity: Decimal,
        }

        impl Counts {
            /// The non-zero counters as (attribute, value), for an `ADD` update.
            pub fn fields(&self) -> Vec<(&'static str, Decimal)> {
                let mut out = Vec::new();
                $( if self.$name != 0 { out.push((stringify!($name), Decimal::from(self.$name))); } )*
                if !self.correction_quantity.is_zero() {
                    out.push(("correction_quantity", self.correction_quantity));
                }
                out
            }

            pub fn add(&mut self, o: &Counts) {
                $( self.$name += o.$name; )*
                self.correction_quantity += o.correction_quantity;
            }

            /// Sets one counter by attribute name (reading stored items).
            pub fn set(&mut self, name: &str, v: Decimal) {
                use rust_decimal::prelude::ToPrimitive;
                match name {
                    $( stringify!($name) => self.$name = v.to_u64().unwrap_or(0), )*
                    "correction_quantity" => self.correction_quantity = v,
                    _ => {}
                }
            }

            pub fn is_zero(&self) -> bool {
                self.fields().is_empty()
            }
        }
    };
}

counts!(
    /// Ingest: events received for this meter (accepted or not).
    received,
    /// Ingest: refused for any reason.
    rejected,
    /// Ingest: refused for breaking the definition (unit, value type, properties).
    schema_violations,
    /// Ingest: refused for a timestamp too far in the future or past.
    timestamp_skewed,
    /// Ingest: refused because the meter is not defined.
    unknown_meter,
    /// Ingest: held in quarantine or refused because the definition is deleted.
    deleted_meter,
    /// Ingest: sent for a deprecated definition (counted and flagged, or held).
    deprecated,
    /// Ingest: held in quarantine (deleted or deprecated definition, per tenant policy).
    quarantined,
    /// API: held events released to the events queue (restore or replay).
    released,
    /// Ingest: sent under a legacy alias and mapped to this meter.
    alias_resolved,
    /// Ingest: the same id twice in one request.
    duplicates_in_request,
    /// Rollup: events counted (first seen).
    counted,
    /// Rollup: events already counted by another chunk (retries, replays).
    duplicates,
    /// Rollup: counted events of accounts without a profile (no segment, no owner).
    unassociated,
    /// Rollup: counted events whose timestamp was defaulted to the receipt time.
    timestamp_defaulted,
    /// Rollup: counted events that arrived more than 24 h after their timestamp.
    late,
    /// Rollup: counted corrections (negative quantities).
    corrections,
    /// Rollup: counted events that came from HubSpot webhooks.
    hubspot_counted,
);

/// What one ingest request adds, per meter (`~unknown` for undefined meters).
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub by_meter: BTreeMap<String, Counts>,
}

impl RequestCounts {
    fn at(&mut self, meter: &str) -> &mut Counts {
        self.by_meter.entry(meter.to_owned()).or_default()
    }

    /// An accepted event of `meter`, sent under a legacy alias or not.
    pub fn accepted(&mut self, meter: &MeterName, via_alias: bool, deprecated: bool) {
        let c = self.at(meter.as_str());
        c.received += 1;
        if deprecated {
            c.deprecated += 1;
        }
        if via_alias {
            c.alias_resolved += 1;
        }
    }

    /// A valid event held in quarantine (`deleted`: its definition is deleted).
    pub fn held(&mut self, meter: &MeterName, via_alias: bool, deleted: bool) {
        let c = self.at(meter.as_str());
        c.received += 1;
        c.quarantined += 1;
        if deleted {
            c.deleted_meter += 1;
        } else {
            c.deprecated += 1;
        }
        if via_alias {
            c.alias_resolved += 1;
        }
    }

    /// A refused event; `meter` is the defined meter it names, if any.
    pub fn rejected(&mut self, meter: Option<&MeterName>, code: RejectCode) {
        let key = match (meter, code) {
            (_, RejectCode::UnknownMeter) | (None, _) => UNKNOWN_METER,
            (Some(m), _) => m.as_str(),
        };
        let c = self.at(key);
        c.received += 1;
        c.rejected += 1;
        if code.is_schema_violation() {
            c.schema_violations += 1;
        }
        if code.is_timestamp_skew() {
            c.timestamp_skewed += 1;
        }
        match code {
            RejectCode::UnknownMeter => c.unknown_meter += 1,
            RejectCode::MeterDeleted => c.deleted_meter += 1,
            RejectCode::DuplicateInRequest => c.duplicates_in_request += 1,
            _ => {}
        }
    }
}

/// What one chunk adds, per meter: computed from every event of the chunk and the
/// ones it owns (counted), so a redelivery computes exactly the same numbers.
pub fn chunk_counts<'a>(
    all: impl IntoIterator<Item = &'a UsageEvent>,
    owned: &[(&UsageEvent, Segment)],
    source: Source,
    received_at: DateTime<Utc>,
) -> BTreeMap<MeterName, Counts> {
    let mut out: BTreeMap<MeterName, Counts> = BTreeMap::new();
    let mut total: BTreeMap<&MeterName, u64> = BTreeMap::new();
    for e in all {
        *total.entry(&e.meter).or_default() += 1;
    }
    for (ev, segment) in owned {
        let c = out.entry(ev.meter.clone()).or_default();
        c.counted += 1;
        if *segment == Segment::Unassigned {
            c.unassociated += 1;
        }
        if ev.timestamp_defaulted {
            c.timestamp_defaulted += 1;
        }
        if received_at - ev.timestamp > late_after() {
            c.late += 1;
        }
        if ev.quantity.is_sign_negative() && !ev.quantity.is_zero() {
            c.corrections += 1;
            c.correction_quantity += ev.quantity.abs();
        }
        if source == Source::Hubspot {
            c.hubspot_counted += 1;
        }
    }
    for (meter, n) in total {
        let c = out.entry(meter.clone()).or_default();
        c.duplicates = n.saturating_sub(c.counted);
    }
    out.retain(|_, c| !c.is_zero());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::*;
    use proptest::prelude::*;

    fn ev(id: &str, meter: &str, q: i64, hours_before: i64, now: DateTime<Utc>) -> UsageEvent {
        UsageEvent {
            id: EventId::parse(id).unwrap(),
            account: AccountId::parse("a").unwrap(),
            meter: MeterName::parse(meter).unwrap(),
            quantity: Decimal::from(q),
            unit: None,
            timestamp: now - Duration::hours(hours_before),
            timestamp_defaulted: hours_before == 0,
            stage: Stage::Delivered,
            service_line: ServiceLine::default_line(),
            contact: None,
            entitlement: None,
            correction_reason: (q < 0).then(|| "fix".to_owned()),
            properties: None,
        }
    }

    #[test]
    fn a_chunk_counts_duplicates_unassociated_late_defaulted_and_corrections_per_meter() {
        let now = Utc::now();
        let events = vec![
            ev("1", "api_calls", 1, 0, now),
            ev("2", "api_calls", -3, 30, now),
            ev("3", "api_calls", 1, 1, now),
            ev("4", "storage_gb", 1, 1, now),
        ];
        let owned = vec![
            (&events[0], Segment::Unassigned),
            (&events[1], Segment::Smb),
            (&events[3], Segment::Unassigned),
        ];
        let c = chunk_counts(&events, &owned, Source::Api, now);
        let api = &c[&MeterName::parse("api_calls").unwrap()];
        assert_eq!(
            (
                api.counted,
                api.duplicates,
                api.unassociated,
                api.timestamp_defaulted,
                api.late,
                api.corrections
            ),
            (2, 1, 1, 1, 1, 1)
        );
        assert_eq!(api.correction_quantity, Decimal::from(3));
        let st = &c[&MeterName::parse("storage_gb").unwrap()];
        assert_eq!((st.counted, st.duplicates, st.unassociated), (1, 0, 1));
    }

    #[test]
    fn refusals_are_counted_under_their_meter_or_as_unknown() {
        let mut r = RequestCounts::default();
        let m = MeterName::parse("api_calls").unwrap();
        r.rejected(Some(&m), RejectCode::UnitMismatch);
        r.rejected(Some(&m), RejectCode::TimestampInFuture);
        r.rejected(Some(&m), RejectCode::UnknownMeter);
        r.rejected(None, RejectCode::InvalidMeter);
        let api = &r.by_meter["api_calls"];
        assert_eq!(
            (
                api.received,
                api.rejected,
                api.schema_violations,
                api.timestamp_skewed
            ),
            (2, 2, 1, 1)
        );
        let unknown = &r.by_meter[UNKNOWN_METER];
        assert_eq!((unknown.received, unknown.unknown_meter), (2, 1));
    }

    proptest! {
        #[test]
        fn counts_added_in_any_grouping_equal_the_counts_of_the_whole(
            a in proptest::collection::vec(0u64..1000, 16), b in proptest::collection::vec(0u64..1000, 16)
        ) {
            let mk = |v: &[u64]| {
                let mut c = Counts::default();
                for (i, (name, _)) in [
                    "received","rejected","schema_violations","timestamp_skewed","unknown_meter","deleted_meter",
                    "deprecated","alias_resolved","duplicates_in_request","counted","duplicates","unassociated",
                    "timestamp_defaulted","late","corrections","hubspot_counted",
                ].iter().map(|n| (*n, ())).enumerate() {
                    c.set(name, Decimal::from(v[i]));
                }
                c
            };
            let (ca, cb) = (mk(&a), mk(&b));
            let mut sum = ca.clone();
            sum.add(&cb);
            let mut rebuilt = Counts::default();
            for (name, v) in ca.fields().into_iter().chain(cb.fields()) {
                let mut one = Counts::default();
                one.set(name, v);
                rebuilt.add(&one);
            }
            prop_assert_eq!(sum, rebuilt);
        }
    }
}
