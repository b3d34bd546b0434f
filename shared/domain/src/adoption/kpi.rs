//! A tier's primary KPI and its benchmark: a leaf the health config names, so the
//! config and the adoption figures that read it never import each other in a circle.

use crate::ids::{MeterName, Segment};
use serde::{Deserialize, Serialize};

/// A tier's primary KPI and its benchmark. Per segment in the health config
/// (`segments.<tier>.kpi`); absent: [`TierKpi::default_for`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TierKpi {
    /// Median days from onboarding to the first milestone reached on one of `meters`
    /// (every milestone of the tier when empty). Lower is better.
    TimeToFirstValue {
        #[serde(default)]
        meters: Vec<MeterName>,
        benchmark_days: f64,
    },
    /// `met_meter` / `total_meter` over the last 30 days of the segment's delivered
    /// usage, in percent. Higher is better.
    SlaHitRate {
        met_meter: MeterName,
        total_meter: MeterName,
        benchmark_percent: f64,
    },
    /// `escalated_meter` / `tickets_meter` over the last 30 days, in percent. Lower
    /// is better.
    EscalationRate {
        escalated_meter: MeterName,
        tickets_meter: MeterName,
        benchmark_percent: f64,
    },
    /// Median change of the accounts' health scores over the last 30 days, in points.
    /// Higher is better.
    HealthTrend { benchmark_points: f64 },
}

fn meter(name: &str) -> Option<MeterName> {
    MeterName::parse(name).ok()
}

impl TierKpi {
    /// The documented defaults: SMB time to first value (7 days), mid-market SLA hit
    /// rate (`tickets_sla_met` / `tickets_resolved`, 90 %), enterprise escalation rate
    /// (`escalated` / `tickets` meters of the health config, 5 %), strategic health
    /// trend (0 points: not declining).
    pub fn default_for(
        segment: Segment,
        tickets: &MeterName,
        escalated: &MeterName,
    ) -> Option<TierKpi> {
        Some(match segment {
            Segment::Smb | Segment::Unassigned => TierKpi::TimeToFirstValue {
                meters: Vec::new(),
                benchmark_days: 7.0,
            },
            Segment::MidMarket => TierKpi::SlaHitRate {
                met_meter: meter("tickets_sla_met")?,
                total_meter: meter("tickets_resolved")?,
                benchmark_percent: 90.0,
            },
            Segment::Enterprise => TierKpi::EscalationRate {
                escalated_meter: escalated.clone(),
                tickets_meter: tickets.clone(),
                benchmark_percent: 5.0,
            },
            Segment::Strategic => TierKpi::HealthTrend {
                benchmark_points: 0.0,
            },
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TierKpi::TimeToFirstValue { .. } => "time_to_first_value",
            TierKpi::SlaHitRate { .. } => "sla_hit_rate",
            TierKpi::EscalationRate { .. } => "escalation_rate",
            TierKpi::HealthTrend { .. } => "health_trend",
        }
    }

    pub fn benchmark(&self) -> f64 {
        match self {
            TierKpi::TimeToFirstValue { benchmark_days, .. } => *benchmark_days,
            TierKpi::SlaHitRate {
                benchmark_percent, ..
            }
            | TierKpi::EscalationRate {
                benchmark_percent, ..
            } => *benchmark_percent,
            TierKpi::HealthTrend { benchmark_points } => *benchmark_points,
        }
    }

    pub fn unit(&self) -> &'static str {
        match self {
            TierKpi::TimeToFirstValue { .. } => "days",
            TierKpi::SlaHitRate { .. } | TierKpi::EscalationRate { .. } => "percent",
            TierKpi::HealthTrend { .. } => "points",
        }
    }

    pub fn higher_is_better(&self) -> bool {
        matches!(
            self,
            TierKpi::SlaHitRate { .. } | TierKpi::HealthTrend { .. }
        )
    }

    /// The meters the tenant maps to this KPI (read from the segment's rollups).
    pub fn meters(&self) -> Vec<MeterName> {
        match self {
            TierKpi::TimeToFirstValue { meters, .. } => meters.clone(),
            TierKpi::SlaHitRate {
                met_meter,
                total_meter,
                ..
            } => vec![met_meter.clone(), total_meter.clone()],
            TierKpi::EscalationRate {
                escalated_meter,
                tickets_meter,
                ..
            } => vec![escalated_meter.clone(), tickets_meter.clone()],
            TierKpi::HealthTrend { .. } => Vec::new(),
        }
    }

    /// Checks a configured KPI (`400 invalid_health_config` names `field`).
    pub fn validate(&self, field: &str) -> Result<(), String> {
        let b = self.benchmark();
        let ok = b.is_finite()
            && match self {
                TierKpi::TimeToFirstValue { meters, .. } => {
                    (0.0..=365.0).contains(&b) && meters.len() <= 10
                }
                TierKpi::SlaHitRate { .. } | TierKpi::EscalationRate { .. } => {
                    (0.0..=100.0).contains(&b)
                }
                TierKpi::HealthTrend { .. } => (-100.0..=100.0).contains(&b),
            };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{field}: benchmark out of range (days 0-365, percent 0-100, points -100-100; at most 10 meters)"
            ))
        }
    }
}
