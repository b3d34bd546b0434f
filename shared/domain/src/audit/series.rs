//! Hourly series of critical definitions per account: what the audit's per-account
//! anomaly and balance checks read, kept in a partition of their own so the audit
//! reads only critical meters' data (docs/adr/0007).
//!
//! The rollup adds each chunk's owned events of critical meters once per chunk (a
//! marker in the same transaction, like the chunk's quality counters), so the series
//! count every event exactly once.

use super::kpi::NegativeBalance;
use crate::event::UsageEvent;
use crate::ids::{AccountId, MeterName, Stage};
use chrono::{NaiveDate, Timelike};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashSet};

/// One account's events of one critical meter on one day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriticalDay {
    /// Events per hour of the day (UTC).
    pub hours: [u64; 24],
    /// Summed quantity per stage (for negative balances).
    pub quantity: BTreeMap<Stage, Decimal>,
}

impl CriticalDay {
    pub fn add(&mut self, o: &CriticalDay) {
        for (a, b) in self.hours.iter_mut().zip(o.hours) {
            *a += b;
        }
        for (stage, q) in &o.quantity {
            *self.quantity.entry(*stage).or_default() += q;
        }
    }

    /// Stored attributes (`h07`, `q_delivered`) and what to add to each.
    pub fn fields(&self) -> Vec<(String, Decimal)> {
        let mut out: Vec<(String, Decimal)> = self
            .hours
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(h, n)| (format!("h{h:02}"), Decimal::from(*n)))
            .collect();
        out.extend(
            self.quantity
                .iter()
                .filter(|(_, q)| !q.is_zero())
                .map(|(s, q)| (format!("q_{}", s.as_str()), *q)),
        );
        out
    }

    /// Sets one stored attribute (reading items); unknown names are ignored.
    pub fn set(&mut self, name: &str, v: Decimal) {
        use rust_decimal::prelude::ToPrimitive;
        if let Some(h) = name
            .strip_prefix('h')
            .and_then(|h| h.parse::<usize>().ok())
            .filter(|h| *h < 24)
        {
            self.hours[h] = v.to_u64().unwrap_or(0);
        } else if let Some(stage) = name.strip_prefix("q_").and_then(Stage::parse) {
            self.quantity.insert(stage, v);
        }
    }

    pub fn events(&self) -> u64 {
        self.hours.iter().sum()
    }
}

/// One stored day of one account's critical meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriticalRow {
    pub day: NaiveDate,
    pub meter: MeterName,
    pub data: CriticalDay,
}

/// A chunk's additions, keyed like the stored items.
pub type Series = BTreeMap<(AccountId, NaiveDate, MeterName), CriticalDay>;

/// Sums the owned events of critical meters per (account, event day, meter).
pub fn critical_series<'a>(
    owned: impl IntoIterator<Item = &'a UsageEvent>,
    critical: &HashSet<MeterName>,
) -> Series {
    let mut out = Series::new();
    for e in owned {
        if !critical.contains(&e.meter) {
            continue;
        }
        let d = out
            .entry((e.account.clone(), e.timestamp.date_naive(), e.meter.clone()))
            .or_default();
        d.hours[e.timestamp.hour() as usize] += 1;
        *d.quantity.entry(e.stage).or_default() += e.quantity;
    }
    out
}

/// Stages of one account's critical meters whose quantities sum below zero.
pub fn negative_balances(account: &AccountId, rows: &[CriticalRow]) -> Vec<NegativeBalance> {
    let mut sums: BTreeMap<(MeterName, Stage), Decimal> = BTreeMap::new();
    for r in rows {
        for (stage, q) in &r.data.quantity {
            *sums.entry((r.meter.clone(), *stage)).or_default() += q;
        }
    }
    super::kpi::below_zero(account, sums)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EventId;
    use chrono::{DateTime, Duration, Utc};
    use proptest::prelude::*;

    fn ev(i: usize, account: &str, meter: &str, at: DateTime<Utc>, q: i64) -> UsageEvent {
        UsageEvent {
            stage: if q < 0 {
                Stage::Billed
            } else {
                Stage::Delivered
            },
            ..UsageEvent::new(
                EventId::parse(&format!("e{i}")).unwrap(),
                AccountId::parse(account).unwrap(),
                MeterName::parse(meter).unwrap(),
                Decimal::from(q),
                at,
            )
        }
    }

    fn critical(m: &[&str]) -> HashSet<MeterName> {
        m.iter().map(|m| MeterName::parse(m).unwrap()).collect()
    }

    #[test]
    fn only_critical_meters_are_kept_per_account_day_and_hour() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T23:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let events = [
            ev(1, "a", "logins", t0, 1),
            ev(2, "a", "logins", t0 + Duration::minutes(10), 2),
            ev(3, "a", "logins", t0 + Duration::hours(1), 1),
            ev(4, "b", "logins", t0, 1),
            ev(5, "a", "exports", t0, 1),
        ];
        let s = critical_series(&events, &critical(&["logins"]));
        assert_eq!(s.len(), 3);
        let day = |d: &str| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
        let a = &s[&(
            AccountId::parse("a").unwrap(),
            day("2026-11-24"),
            MeterName::parse("logins").unwrap(),
        )];
        assert_eq!((a.hours[23], a.events()), (2, 2));
        assert_eq!(a.quantity[&Stage::Delivered], Decimal::from(3));
        assert_eq!(
            a.fields(),
            vec![
                ("h23".to_owned(), Decimal::from(2)),
                ("q_delivered".to_owned(), Decimal::from(3))
            ]
        );
        let mut back = CriticalDay::default();
        for (name, v) in a.fields() {
            back.set(&name, v);
        }
        back.set("expires_at", Decimal::ONE);
        assert_eq!(&back, a);
    }

    #[test]
    fn a_stage_whose_corrections_outweigh_its_usage_is_a_negative_balance() {
        let now = Utc::now();
        let events = [
            ev(1, "a", "logins", now, 2),
            ev(2, "a", "logins", now, -5),
            ev(3, "a", "logins", now, 1),
        ];
        let rows: Vec<CriticalRow> = critical_series(&events, &critical(&["logins"]))
            .into_iter()
            .map(|((_, day, meter), data)| CriticalRow { day, meter, data })
            .collect();
        let neg = negative_balances(&AccountId::parse("a").unwrap(), &rows);
        assert_eq!(neg.len(), 1);
        assert_eq!(
            (neg[0].stage, neg[0].quantity),
            (Stage::Billed, Decimal::from(-5))
        );
    }

    proptest! {
        #[test]
        fn splitting_events_across_chunks_adds_up_to_the_whole(
            raw in proptest::collection::vec((0usize..3, 0usize..2, 0i64..72, -3i64..5), 0..200),
            cut in 0usize..200,
        ) {
            let t0 = DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z").unwrap().with_timezone(&Utc);
            let events: Vec<UsageEvent> = raw.iter().enumerate().map(|(i, (a, m, h, q))| {
                ev(i, ["a", "b", "c"][*a], ["logins", "exports"][*m], t0 + Duration::hours(*h), *q)
            }).collect();
            let crit = critical(&["logins"]);
            let whole = critical_series(&events, &crit);
            let cut = cut.min(events.len());
            let mut parts = critical_series(&events[..cut], &crit);
            for (k, v) in critical_series(&events[cut..], &crit) {
                parts.entry(k).or_default().add(&v);
            }
            prop_assert_eq!(&parts, &whole);
            let counted: u64 = whole.values().map(CriticalDay::events).sum();
            prop_assert_eq!(counted as usize, raw.iter().filter(|r| r.1 == 0).count());
        }
    }
}
