//! A synthetic tenant for tests, the demo and the backtest: accounts across the four
//! segments with seasonality (weekdays, month ends), onboarding ramps, bursts and
//! quiet weeks, and churners whose usage and active users decay while tickets rise.
//! Deterministic per seed. The ground truth ([`Truth`]) is for evaluation only:
//! the scorer sees nothing but the daily usage it generates.

use super::model::{Series, Subject, WINDOW_DAYS};
use crate::ids::{AccountId, MeterName, Segment};
use chrono::{Datelike, Duration, NaiveDate, Weekday};

/// SplitMix64: small, fast, good enough for synthetic data; no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-12);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// Poisson by inversion (small means) or a rounded normal (large means).
    pub fn poisson(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0);
        }
        let l = (-mean).exp();
        let mut k = 0.0;
        let mut p = 1.0;
        loop {
            p *= self.f();
            if p <= l {
                return k;
            }
            k += 1.0;
        }
    }
}

/// What really happens to an account (never read by the scorer).
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    /// The day the account churns (stops using and cancels), if it does.
    pub churn_date: Option<NaiveDate>,
    /// When its decline starts (before the churn date).
    pub decay_start: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SynthAccount {
    pub subject: Subject,
    pub name: String,
    pub seats: f64,
    /// Usage per seat and day (api calls).
    pub intensity: f64,
    /// Support tickets per seat and day.
    pub ticket_rate: f64,
    /// Days to reach steady usage after onboarding.
    pub ramp_days: f64,
    /// Starts of quiet weeks (vacations, outages) and burst weeks (campaigns).
    pub gaps: Vec<NaiveDate>,
    pub bursts: Vec<NaiveDate>,
    pub truth: Truth,
    seed: u64,
}

pub const METERS: [&str; 6] = [
    "api_calls",
    "tickets_resolved",
    "seats_active",
    "tickets_opened",
    "tickets_reopened",
    "tickets_escalated",
];

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub accounts: usize,
    pub seed: u64,
    /// Generated history covers `[start, end]`.
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Share of accounts that churn between `start + 120 d` and `end`.
    pub churn_rate: f64,
}

pub struct Synth {
    pub cfg: SynthConfig,
    pub accounts: Vec<SynthAccount>,
    meters: Vec<MeterName>,
}

fn seg_params(s: Segment, r: &mut Rng) -> (f64, f64, f64) {
    // seats, api calls per seat-day, tickets per seat-day
    match s {
        Segment::Smb => (r.range(3.0, 15.0), r.range(10.0, 40.0), r.range(0.02, 0.06)),
        Segment::MidMarket => (
            r.range(20.0, 100.0),
            r.range(15.0, 50.0),
            r.range(0.01, 0.03),
        ),
        Segment::Enterprise => (
            r.range(150.0, 800.0),
            r.range(20.0, 60.0),
            r.range(0.004, 0.012),
        ),
        _ => (
            r.range(800.0, 3000.0),
            r.range(25.0, 70.0),
            r.range(0.002, 0.006),
        ),
    }
}

impl Synth {
    /// Each account with its true outcome, as a backtest's outcomes file gives them.
    pub fn outcomes(&self) -> Vec<(Subject, super::backtest::Outcome)> {
        self.accounts
            .iter()
            .map(|a| {
                let outcome = super::backtest::Outcome {
                    churn_date: a.truth.churn_date,
                };
                (a.subject.clone(), outcome)
            })
            .collect()
    }

    /// The accounts by id.
    pub fn by_id(&self) -> std::collections::BTreeMap<AccountId, &SynthAccount> {
        self.accounts
            .iter()
            .map(|a| (a.subject.account.clone(), a))
            .collect()
    }

    pub fn new(cfg: SynthConfig) -> Self {
        let mut r = Rng::new(cfg.seed);
        let span = (cfg.end - cfg.start).num_days().max(1);
        let accounts = (0..cfg.accounts)
            .map(|i| {
                let x = r.f();
                let segment = if x < 0.5 {
                    Segment::Smb
                } else if x < 0.8 {
                    Segment::MidMarket
                } else if x < 0.95 {
                    Segment::Enterprise
                } else {
                    Segment::Strategic
                };
                let (seats, intensity, ticket_rate) = seg_params(segment, &mut r);
                // Onboarded up to 400 days before the end; ~6 % very recently.
                let onboard_back = if r.f() < 0.06 {
                    r.range(3.0, 25.0)
                } else {
                    r.range(40.0, 400.0)
                };
                let onboarding = cfg.end - Duration::days(onboard_back as i64);
                let churns = r.f() < cfg.churn_rate && span > 150;
                let churn_date =
                    churns.then(|| cfg.start + Duration::days(r.range(120.0, span as f64) as i64));
                let decay_start =
                    churn_date.map(|c| c - Duration::days(r.range(40.0, 90.0) as i64));
                let n_gaps = (r.f() * 3.0) as usize;
                let gaps = (0..n_gaps)
                    .map(|_| cfg.start + Duration::days(r.range(0.0, span as f64) as i64))
                    .collect();
                let n_bursts = (r.f() * 2.5) as usize;
                let bursts = (0..n_bursts)
                    .map(|_| cfg.start + Duration::days(r.range(0.0, span as f64) as i64))
                    .collect();
                let account =
                    AccountId::parse(&format!("acct-{i:06}")).unwrap_or_else(|_| unreachable_id());
                SynthAccount {
                    subject: Subject {
                        account,
                        segment,
                        onboarding_date: Some(onboarding),
                        seats: None,
                    },
                    name: format!("Synthetic {} #{i}", segment.as_str()),
                    seats: seats.round().max(1.0),
                    intensity,
                    ticket_rate,
                    ramp_days: r.range(7.0, 45.0),
                    gaps,
                    bursts,
                    truth: Truth {
                        churn_date,
                        decay_start,
                    },
                    seed: r.next_u64(),
                }
            })
            .collect();
        let meters = METERS
            .iter()
            .filter_map(|m| MeterName::parse(m).ok())
            .collect();
        Self {
            cfg,
            accounts,
            meters,
        }
    }

    /// Quantities of every meter on `day` (all zero before onboarding or after churn).
    pub fn day(&self, a: &SynthAccount, day: NaiveDate) -> [f64; 6] {
        let mut out = [0.0; 6];
        let Some(onboarded) = a.subject.onboarding_date else {
            return out;
        };
        if day < onboarded || a.truth.churn_date.is_some_and(|c| day >= c) {
            return out;
        }
        let mut r =
            Rng::new(a.seed ^ (day.num_days_from_ce() as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let age = (day - onboarded).num_days() as f64;
        let ramp = 1.0 - (-age / a.ramp_days).exp();
        let weekday = match day.weekday() {
            Weekday::Sat | Weekday::Sun => 0.25,
            _ => 1.0,
        };
        let month_end = if day.day() >= 26 { 1.15 } else { 1.0 };
        // Decline: usage and users decay toward ~10 %, tickets rise up to 3x.
        let decay = match a.truth.decay_start {
            Some(d) if day >= d => {
                let total = a
                    .truth
                    .churn_date
                    .map_or(60.0, |c| (c - d).num_days().max(1) as f64);
                ((day - d).num_days() as f64 / total).min(1.0)
            }
            _ => 0.0,
        };
        let usage_factor = (1.0 - 0.9 * decay) * ramp;
        let in_window = |starts: &Vec<NaiveDate>| {
            starts
                .iter()
                .any(|s| day >= *s && day < *s + Duration::days(7))
        };
        let gap = if in_window(&a.gaps) { 0.05 } else { 1.0 };
        let burst = if in_window(&a.bursts) { 3.5 } else { 1.0 };
        let noise = (1.0 + 0.15 * r.normal()).max(0.2);
        let users = (a.seats * (0.55 + 0.35 * ramp) * (1.0 - 0.8 * decay) * weekday * gap
            + r.normal() * a.seats.sqrt() * 0.2)
            .round()
            .clamp(0.0, a.seats);
        let calls = (users * a.intensity * usage_factor.max(0.02) * month_end * burst * noise)
            .round()
            .max(0.0);
        let tickets_mean = a.seats
            * a.ticket_rate
            * weekday
            * (1.0 + 2.0 * decay)
            * if age < 30.0 { 1.8 } else { 1.0 };
        let opened = r.poisson(tickets_mean);
        let resolved = r.poisson(users * 0.08 * usage_factor * burst);
        let reopened = r.poisson(opened * (0.08 + 0.2 * decay));
        let escalated = r.poisson(opened * (0.02 + 0.1 * decay));
        out[0] = calls;
        out[1] = resolved;
        out[2] = users;
        out[3] = opened;
        out[4] = reopened;
        out[5] = escalated;
        out
    }

    pub fn meters(&self) -> &[MeterName] {
        &self.meters
    }

    /// The scoring window's series as the rollups would hold it.
    pub fn series(&self, a: &SynthAccount, as_of: NaiveDate) -> Series {
        let mut s = Series::empty(as_of);
        for i in 0..WINDOW_DAYS {
            let day = s.start + Duration::days(i as i64);
            let q = self.day(a, day);
            for (m, v) in self.meters.iter().zip(q) {
                if v > 0.0 {
                    s.add(m, day, v);
                }
            }
        }
        s
    }

    /// Accounts that churn within `horizon_days` after `as_of` (and have not before).
    pub fn churns_within(&self, a: &SynthAccount, as_of: NaiveDate, horizon_days: i64) -> bool {
        a.truth
            .churn_date
            .is_some_and(|c| c > as_of && c <= as_of + Duration::days(horizon_days))
    }

    pub fn active_at(&self, a: &SynthAccount, as_of: NaiveDate) -> bool {
        a.truth.churn_date.is_none_or(|c| c > as_of)
    }
}

#[cold]
fn unreachable_id() -> AccountId {
    AccountId::parse("acct").unwrap_or_else(|_| std::process::abort())
}
