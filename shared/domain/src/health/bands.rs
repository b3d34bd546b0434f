//! Band counts per segment and day (issue #12: the portfolio's counts and their
//! 90-day chart). The score run writes one [`DailyBands`] per tenant and day when every
//! shard is measured and the baselines are known: each account's band is then exactly
//! the one its score phase stores (bands are a pure function of the measurement, the
//! segment's baseline and the config). A later run of the same day replaces it.
//! DynamoDB adapter: `aws/src/dynamo/bands.rs`; in-memory: `memory::MemoryBandSummaries`.

use super::config::HealthConfig;
use super::model::{self, Band, Baseline, Measurement};
use crate::ids::{Segment, TenantId};
use crate::ports::error::StoreError;
use async_trait::async_trait;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Days the portfolio chart shows (and `GET /v1/health/bands` answers by default).
pub const BAND_CHART_DAYS: i64 = 90;
/// Days a summary is kept (the longest `days` the API accepts).
pub const BAND_SUMMARY_DAYS: i64 = 400;

/// Accounts of one segment by band on one day; `insufficient`: measured but not
/// scored (too little data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BandCounts {
    pub red: u32,
    pub yellow: u32,
    pub green: u32,
    pub insufficient: u32,
}

impl BandCounts {
    pub fn of(&self, band: Option<Band>) -> u32 {
        match band {
            Some(Band::Red) => self.red,
            Some(Band::Yellow) => self.yellow,
            Some(Band::Green) => self.green,
            None => self.insufficient,
        }
    }

    fn slot(&mut self, band: Option<Band>) -> &mut u32 {
        match band {
            Some(Band::Red) => &mut self.red,
            Some(Band::Yellow) => &mut self.yellow,
            Some(Band::Green) => &mut self.green,
            None => &mut self.insufficient,
        }
    }

    /// Every account counted (saturating: counts are bounded by a run's accounts).
    pub fn total(&self) -> u32 {
        self.red
            .saturating_add(self.yellow)
            .saturating_add(self.green)
            .saturating_add(self.insufficient)
    }
}

/// One day's band counts of a tenant, per segment, and the run that wrote them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyBands {
    pub as_of: NaiveDate,
    pub run: String,
    pub segments: BTreeMap<Segment, BandCounts>,
}

impl DailyBands {
    /// Counts each (segment, band) once; segments absent from `accounts` are absent.
    pub fn count(
        as_of: NaiveDate,
        run: &str,
        accounts: impl IntoIterator<Item = (Segment, Option<Band>)>,
    ) -> Self {
        let mut segments: BTreeMap<Segment, BandCounts> = BTreeMap::new();
        for (segment, band) in accounts {
            let n = segments.entry(segment).or_default().slot(band);
            *n = n.saturating_add(1);
        }
        Self {
            as_of,
            run: run.to_owned(),
            segments,
        }
    }

    /// The bands the score phase will store for these measurements: each scored
    /// against its segment's baseline (no baseline: not scored).
    pub fn of_run<'a>(
        as_of: NaiveDate,
        run: &str,
        measurements: impl IntoIterator<Item = &'a Measurement>,
        baselines: &BTreeMap<Segment, Baseline>,
        cfg: &HealthConfig,
    ) -> Self {
        Self::count(
            as_of,
            run,
            measurements.into_iter().map(|m| {
                let band = baselines
                    .get(&m.segment)
                    .and_then(|b| model::score(m, b, cfg))
                    .map(|s| s.band);
                (m.segment, band)
            }),
        )
    }

    /// All segments together.
    pub fn total(&self) -> BandCounts {
        let mut t = BandCounts::default();
        for c in self.segments.values() {
            t.red = t.red.saturating_add(c.red);
            t.yellow = t.yellow.saturating_add(c.yellow);
            t.green = t.green.saturating_add(c.green);
            t.insufficient = t.insufficient.saturating_add(c.insufficient);
        }
        t
    }
}

/// Storage of the daily summaries.
#[async_trait]
pub trait BandSummaryStore: Send + Sync {
    /// Stores the day's summary, replacing one stored for the same day.
    async fn put_band_summary(&self, t: &TenantId, day: &DailyBands) -> Result<(), StoreError>;
    /// Summaries of the days from `from` to `to` (inclusive) that have one, oldest first.
    async fn band_summaries(
        &self,
        t: &TenantId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<DailyBands>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 20).expect("a day")
    }

    #[test]
    fn each_account_is_counted_under_its_segment_and_band() {
        let d = DailyBands::count(
            day(),
            "run-1",
            [
                (Segment::Smb, Some(Band::Red)),
                (Segment::Smb, Some(Band::Red)),
                (Segment::Smb, Some(Band::Green)),
                (Segment::Enterprise, None),
                (Segment::Enterprise, Some(Band::Yellow)),
            ],
        );
        let smb = d.segments.get(&Segment::Smb).copied().unwrap_or_default();
        assert_eq!(
            (smb.red, smb.yellow, smb.green, smb.insufficient),
            (2, 0, 1, 0)
        );
        let ent = d
            .segments
            .get(&Segment::Enterprise)
            .copied()
            .unwrap_or_default();
        assert_eq!((ent.yellow, ent.insufficient), (1, 1));
        assert!(!d.segments.contains_key(&Segment::Strategic));
        assert_eq!(d.total().total(), 5);
    }

    fn band(i: u8) -> Option<Band> {
        match i % 4 {
            0 => Some(Band::Red),
            1 => Some(Band::Yellow),
            2 => Some(Band::Green),
            _ => None,
        }
    }

    proptest! {
        #[test]
        fn counts_add_up_to_the_accounts_in_any_order(
            accounts in proptest::collection::vec((0usize..4, any::<u8>()), 0..200)
        ) {
            let rows: Vec<(Segment, Option<Band>)> =
                accounts.iter().map(|(s, b)| (Segment::ALL[*s], band(*b))).collect();
            let d = DailyBands::count(day(), "r", rows.iter().copied());
            let mut reversed = rows.clone();
            reversed.reverse();
            prop_assert_eq!(&d, &DailyBands::count(day(), "r", reversed));
            prop_assert_eq!(d.total().total() as usize, rows.len());
            for (seg, counts) in &d.segments {
                for b in [Some(Band::Red), Some(Band::Yellow), Some(Band::Green), None] {
                    let n = rows.iter().filter(|(s, x)| s == seg && *x == b).count();
                    prop_assert_eq!(counts.of(b) as usize, n);
                }
            }
        }
    }
}
