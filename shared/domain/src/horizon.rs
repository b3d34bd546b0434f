//! Horizons (how old an accepted event may be) against the ledger's memory (how long
//! it remembers an event). See docs/adr/0001, "Horizons and retention".
//!
//! The ledger record of an event expires `R` days after the receipt of the chunk that
//! first claimed it. An event timestamped `t` is accepted at a receipt `r` only if
//! `r - H <= t <= r + F` (backfill horizon `H`, future skew `F`), so every receipt of
//! it lies in `[t - F, t + H]`: two receipts are at most `H + F` apart. A receipt is
//! claimed at most `D` after it (events-queue retention plus DLQ retention). A resend's
//! claim therefore comes at most `H + F + D` after the first receipt, and it is seen
//! as a duplicate only while the record lives:
//!
//! ```text
//! H + F + D <= R        i.e.   H <= R - MARGIN_DAYS   (F rounded up to a day)
//! ```
//!
//! Events without a timestamp take their receipt time, so no horizon bounds their
//! resends: the sender's retry window plus `D` must stay within `R`.

use chrono::Duration;

/// Events-queue retention (4 days) plus DLQ retention (14 days): the longest a
/// receipt can wait before its chunk is claimed (infra/template.json).
pub const DELIVERY_DAYS: u32 = 18;
/// The accepted future skew (5 minutes), rounded up to whole days.
pub const FUTURE_SKEW_DAYS: u32 = 1;
/// Days of retention a horizon must leave free: `F + D`.
pub const MARGIN_DAYS: u32 = DELIVERY_DAYS + FUTURE_SKEW_DAYS;
/// Smallest horizon (a horizon of 0 would refuse events a millisecond old).
pub const MIN_HORIZON_DAYS: u32 = 1;
/// Largest horizon anyone may configure (100 years), whatever the retention.
pub const MAX_HORIZON_DAYS: u32 = 36_500;
/// A new tenant's backfill horizon.
pub const DEFAULT_BACKFILL_DAYS: u32 = 35;
/// `LEDGER_RETENTION_DAYS` when unset: 120 days, so the widest horizon (an import's
/// default reach) is 101 days, room for a 90-day trial history and the 100-day demo.
/// It was 400 until issue #16: the ledger's storage for its retention is part of the
/// cost per event, and 400 days on Standard-IA priced a 1,000-event request burst at
/// $1.23 per million events against a $1.00 target; 120 days prices it at about $0.99
/// (docs/adr/0001, "The default retention and the cost per event").
pub const DEFAULT_RETENTION_DAYS: u32 = 120;
/// The least retention that guards the default backfill horizon.
pub const MIN_RETENTION_DAYS: u32 = DEFAULT_BACKFILL_DAYS + MARGIN_DAYS;
/// The most retention that a horizon can use.
pub const MAX_RETENTION_DAYS: u32 = MAX_HORIZON_DAYS + MARGIN_DAYS;

/// Why a horizon or a retention is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HorizonError {
    #[error("a horizon must be between {MIN_HORIZON_DAYS} and {MAX_HORIZON_DAYS} days, not {0}")]
    OutOfRange(i64),
    #[error(
        "a horizon of {horizon} days exceeds what the ledger can guard: it forgets an event {retention} days after its first receipt, \
         and this horizon accepts a resend up to {window} days after it ({horizon} + {FUTURE_SKEW_DAYS} day of clock skew + {DELIVERY_DAYS} days of queue and DLQ retention), \
         which would then be counted twice; use at most {widest} days, or raise LEDGER_RETENTION_DAYS to at least {window}"
    )]
    ExceedsRetention {
        horizon: u32,
        retention: u32,
        /// `horizon + MARGIN_DAYS`: how long after a first receipt a resend may come.
        window: u32,
        /// The largest horizon `retention` guards.
        widest: u32,
    },
    #[error(
        "the ledger retention must be between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days, not {0}: \
         it must outlast the default backfill horizon ({DEFAULT_BACKFILL_DAYS} days) plus {FUTURE_SKEW_DAYS} day of clock skew \
         plus {DELIVERY_DAYS} days of queue and DLQ retention"
    )]
    RetentionOutOfRange(i64),
}

impl HorizonError {
    /// The error code (HTTP bodies, CLI output).
    pub fn code(&self) -> &'static str {
        match self {
            Self::OutOfRange(_) => "horizon_out_of_range",
            Self::ExceedsRetention { .. } => "horizon_exceeds_retention",
            Self::RetentionOutOfRange(_) => "retention_out_of_range",
        }
    }
}

/// How long the ledger remembers an event (days after its first receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Retention(u32);

impl Retention {
    pub const DEFAULT: Self = Self(DEFAULT_RETENTION_DAYS);

    pub fn days(days: i64) -> Result<Self, HorizonError> {
        u32::try_from(days)
            .ok()
            .filter(|d| (MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(d))
            .map(Self)
            .ok_or(HorizonError::RetentionOutOfRange(days))
    }

    pub fn as_days(self) -> u32 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::days(i64::from(self.0))
    }

    /// The largest horizon this retention guards: `R - F - D`.
    pub fn max_horizon_days(self) -> u32 {
        self.0.saturating_sub(MARGIN_DAYS)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A horizon in days, within bounds and guarded by the ledger's retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Horizon(u32);

impl Horizon {
    /// A new tenant's backfill horizon (guarded by every accepted retention).
    pub const DEFAULT_BACKFILL: Self = Self(DEFAULT_BACKFILL_DAYS);

    pub fn parse(days: i64, retention: Retention) -> Result<Self, HorizonError> {
        let horizon = u32::try_from(days)
            .ok()
            .filter(|d| (MIN_HORIZON_DAYS..=MAX_HORIZON_DAYS).contains(d))
            .ok_or(HorizonError::OutOfRange(days))?;
        if horizon > retention.max_horizon_days() {
            return Err(HorizonError::ExceedsRetention {
                horizon,
                retention: retention.as_days(),
                window: horizon.saturating_add(MARGIN_DAYS),
                widest: retention.max_horizon_days(),
            });
        }
        Ok(Self(horizon))
    }

    /// The largest horizon `retention` guards (the import's default).
    pub fn widest(retention: Retention) -> Self {
        Self(retention.max_horizon_days().max(MIN_HORIZON_DAYS))
    }

    pub fn as_days(self) -> u32 {
        self.0
    }
}

/// The largest horizon a retention given as a duration guards (0 when it guards none).
pub fn widest_horizon_days(retention: Duration) -> u32 {
    u32::try_from(retention.num_days())
        .unwrap_or(if retention.num_days() < 0 {
            0
        } else {
            u32::MAX
        })
        .saturating_sub(MARGIN_DAYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_defaults_agree_the_default_retention_guards_the_default_backfill() {
        assert!(Horizon::parse(i64::from(DEFAULT_BACKFILL_DAYS), Retention::DEFAULT).is_ok());
        assert!(Horizon::parse(
            i64::from(DEFAULT_BACKFILL_DAYS),
            Retention::days(i64::from(MIN_RETENTION_DAYS)).unwrap()
        )
        .is_ok());
        assert_eq!(
            Retention::days(i64::from(DEFAULT_RETENTION_DAYS)),
            Ok(Retention::DEFAULT)
        );
        assert_eq!(Horizon::widest(Retention::DEFAULT).as_days(), 101);
    }

    #[test]
    fn a_horizon_beyond_the_retention_is_refused_with_its_code_and_the_days_involved() {
        let e = Horizon::parse(3650, Retention::DEFAULT).unwrap_err();
        assert_eq!(e.code(), "horizon_exceeds_retention");
        let text = e.to_string();
        assert!(text.contains("forgets an event 120 days"), "{text}");
        assert!(text.contains("at most 101 days"), "{text}");
        assert!(text.contains("at least 3669"), "{text}");
        assert_eq!(
            Horizon::parse(102, Retention::DEFAULT).unwrap_err().code(),
            "horizon_exceeds_retention"
        );
        assert_eq!(
            Horizon::parse(101, Retention::DEFAULT).map(Horizon::as_days),
            Ok(101)
        );
    }

    #[test]
    fn horizons_and_retentions_out_of_range_are_refused_with_their_codes() {
        for days in [-1, 0, 36_501, i64::from(u32::MAX), i64::MAX] {
            let r = Retention(MAX_RETENTION_DAYS);
            assert_eq!(
                Horizon::parse(days, r).unwrap_err().code(),
                "horizon_out_of_range",
                "{days}"
            );
        }
        for days in [
            -5,
            0,
            30,
            i64::from(MIN_RETENTION_DAYS) - 1,
            i64::from(MAX_RETENTION_DAYS) + 1,
        ] {
            assert_eq!(
                Retention::days(days).unwrap_err().code(),
                "retention_out_of_range",
                "{days}"
            );
        }
    }

    proptest! {
        /// The inequality itself: for every accepted horizon, the latest claim of a
        /// resend (last receipt + delivery delay) comes no later than the expiry of
        /// the first receipt's record.
        #[test]
        fn every_accepted_horizon_keeps_resends_within_the_ledgers_memory(
            retention in i64::from(MIN_RETENTION_DAYS)..=i64::from(MAX_RETENTION_DAYS),
            horizon in 1i64..=36_500,
        ) {
            let r = Retention::days(retention).unwrap();
            if let Ok(h) = Horizon::parse(horizon, r) {
                let first_receipt = -Duration::minutes(5); // t - F, with t = 0
                let last_receipt = Duration::days(i64::from(h.as_days())); // t + H
                let last_claim = last_receipt + Duration::days(i64::from(DELIVERY_DAYS));
                prop_assert!(last_claim <= first_receipt + r.duration());
            } else {
                prop_assert!(horizon > i64::from(r.max_horizon_days()));
            }
        }
    }
}
