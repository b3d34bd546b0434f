//! Health-scoring configuration: per tenant, with per-segment weights, bands and
//! milestones. Stored as one item per tenant; absent means the defaults.

use crate::ids::{MeterName, Segment};
use crate::input::{input_error, InputError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Component weights; they need not sum to 100 (they are normalised).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub usage_trend: f64,
    pub milestones: f64,
    pub friction: f64,
    pub engagement: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            usage_trend: 40.0,
            milestones: 25.0,
            friction: 20.0,
            engagement: 15.0,
        }
    }
}

/// Score thresholds: `green_min..=100` green, `yellow_min..green_min` yellow, else red.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bands {
    pub green_min: f64,
    pub yellow_min: f64,
}

impl Default for Bands {
    fn default() -> Self {
        Self {
            green_min: 65.0,
            yellow_min: 45.0,
        }
    }
}

/// A milestone: `quantity` of `meter` (cumulative since onboarding) due `due_days`
/// after onboarding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    pub name: String,
    pub meter: MeterName,
    pub quantity: f64,
    pub due_days: u32,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    pub weights: Weights,
    pub bands: Bands,
    pub milestones: Vec<Milestone>,
}

/// What a segment with fewer than `min_segment_population` scoreable accounts is
/// normalised against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The tenant's whole population (all segments), then the built-in defaults.
    AllSegments,
    /// The built-in defaults.
    Defaults,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Meters whose 30-day trend is the usage component.
    pub key_meters: Vec<MeterName>,
    /// Daily gauge of active users / contacts.
    pub active_users_meter: MeterName,
    pub tickets_meter: MeterName,
    pub reopened_meter: MeterName,
    pub escalated_meter: MeterName,
    pub segments: BTreeMap<Segment, SegmentConfig>,
    /// Accounts onboarded more recently are `insufficient_data`.
    pub min_account_age_days: u32,
    /// Fewer active days in the 90-day window is `insufficient_data`.
    pub min_active_days: u32,
    pub min_segment_population: usize,
    pub fallback: Fallback,
    /// A drop of at least this many points within `drop_window_days` raises a risk alert.
    pub drop_alert_points: f64,
    pub drop_window_days: u32,
    /// Push score, band and reasons to HubSpot company properties.
    pub crm_writeback: bool,
}

fn m(name: &str) -> MeterName {
    // Constant names, valid by construction (checked by a unit test).
    MeterName::parse(name).unwrap_or_else(|_| unreachable_meter())
}

#[cold]
fn unreachable_meter() -> MeterName {
    // Only reachable if a constant above were edited into an invalid name; the unit
    // test `default_configuration_is_valid` catches that before release.
    MeterName::parse("invalid").unwrap_or_else(|_| std::process::abort())
}

fn milestone(name: &str, meter: &str, quantity: f64, due_days: u32) -> Milestone {
    Milestone {
        name: name.to_owned(),
        meter: m(meter),
        quantity,
        due_days,
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        let tiers = [
            (Segment::Smb, 1.0, 14),
            (Segment::MidMarket, 5.0, 30),
            (Segment::Enterprise, 25.0, 45),
            (Segment::Strategic, 50.0, 60),
        ];
        let segments = tiers
            .into_iter()
            .map(|(s, scale, due)| {
                (
                    s,
                    SegmentConfig {
                        milestones: vec![
                            milestone("first_api_calls", "api_calls", 10.0 * scale, due / 2),
                            milestone("integration_live", "api_calls", 500.0 * scale, due),
                            milestone("team_onboarded", "seats_active", 20.0 * scale, due),
                        ],
                        ..SegmentConfig::default()
                    },
                )
            })
            .collect();
        Self {
            key_meters: vec![m("api_calls"), m("tickets_resolved")],
            active_users_meter: m("seats_active"),
            tickets_meter: m("tickets_opened"),
            reopened_meter: m("tickets_reopened"),
            escalated_meter: m("tickets_escalated"),
            segments,
            min_account_age_days: 30,
            min_active_days: 10,
            min_segment_population: 8,
            fallback: Fallback::AllSegments,
            drop_alert_points: 15.0,
            drop_window_days: 7,
            crm_writeback: false,
        }
    }
}

impl HealthConfig {
    pub fn segment(&self, s: Segment) -> SegmentConfig {
        self.segments.get(&s).cloned().unwrap_or_default()
    }

    /// Parses and validates a `PUT /v1/health/config` body; missing fields take
    /// their defaults.
    pub fn from_body(body: &[u8]) -> Result<Self, InputError> {
        let cfg: HealthConfig = serde_json::from_slice(body)
            .map_err(|e| input_error("invalid_health_config", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), InputError> {
        let bad = |msg: String| Err(input_error("invalid_health_config", msg));
        if self.key_meters.is_empty() || self.key_meters.len() > 10 {
            return bad("key_meters must list 1 to 10 meters".into());
        }
        if self.segments.contains_key(&Segment::Unassigned) {
            return bad("segments: 'unassigned' accounts are not scored".into());
        }
        for (s, c) in &self.segments {
            let w = c.weights;
            let all = [w.usage_trend, w.milestones, w.friction, w.engagement];
            if all.iter().any(|x| !x.is_finite() || *x < 0.0) || all.iter().sum::<f64>() <= 0.0 {
                return bad(format!(
                    "segments.{s}.weights must be non-negative with a positive sum"
                ));
            }
            let b = c.bands;
            if !(0.0..=100.0).contains(&b.yellow_min)
                || !(0.0..=100.0).contains(&b.green_min)
                || b.yellow_min >= b.green_min
            {
                return bad(format!(
                    "segments.{s}.bands need 0 <= yellow_min < green_min <= 100"
                ));
            }
            if c.milestones.len() > 20 {
                return bad(format!("segments.{s}.milestones: at most 20"));
            }
            for ms in &c.milestones {
                if ms.name.is_empty() || ms.name.len() > 64 {
                    return bad(format!("segments.{s}.milestones: name of 1-64 characters"));
                }
                if !ms.quantity.is_finite() || ms.quantity <= 0.0 || ms.due_days == 0 {
                    return bad(format!(
                        "segments.{s}.milestones.{}: quantity > 0 and due_days >= 1",
                        ms.name
                    ));
                }
            }
        }
        if self.min_account_age_days > 365 {
            return bad("min_account_age_days must be 0-365".into());
        }
        if self.min_active_days > 90 {
            return bad("min_active_days must be 0-90".into());
        }
        if self.min_segment_population < 2 {
            return bad("min_segment_population must be at least 2".into());
        }
        if !self.drop_alert_points.is_finite() || !(1.0..=100.0).contains(&self.drop_alert_points) {
            return bad("drop_alert_points must be 1-100".into());
        }
        if !(1..=30).contains(&self.drop_window_days) {
            return bad("drop_window_days must be 1-30".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_configuration_is_valid_and_weighs_40_25_20_15() {
        let c = HealthConfig::default();
        c.validate().unwrap();
        assert_eq!(c.segment(Segment::Enterprise).weights, Weights::default());
        assert_eq!(c.key_meters[0].as_str(), "api_calls");
        assert_eq!(c.segment(Segment::Smb).milestones.len(), 3);
    }

    #[test]
    fn a_partial_body_keeps_the_defaults_and_bad_bodies_say_why() {
        let c = HealthConfig::from_body(
            br#"{"drop_alert_points": 10, "segments": {"smb": {"bands": {"green_min": 80, "yellow_min": 50}}}}"#,
        )
        .unwrap();
        assert_eq!(c.drop_alert_points, 10.0);
        assert_eq!(c.segment(Segment::Smb).bands.green_min, 80.0);
        assert_eq!(c.segment(Segment::Smb).weights, Weights::default());
        for body in [
            &br#"{"weights": 1}"#[..],
            br#"{"segments": {"smb": {"bands": {"green_min": 40, "yellow_min": 50}}}}"#,
            br#"{"segments": {"smb": {"weights": {"usage_trend": -1, "milestones": 0, "friction": 0, "engagement": 0}}}}"#,
            br#"{"segments": {"unassigned": {}}}"#,
            br#"{"key_meters": []}"#,
            br#"{"key_meters": ["bad meter!"]}"#,
            br#"{"drop_alert_points": 0}"#,
            b"[",
        ] {
            assert_eq!(
                HealthConfig::from_body(body).err().map(|e| e.code),
                Some("invalid_health_config"),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
