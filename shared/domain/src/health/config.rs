//! Health-scoring configuration: per tenant, with per-segment weights, bands and
//! milestones. Stored as one item per tenant; absent means the defaults.

use super::metric::Metric;
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
            usage_trend: 20.0,
            milestones: 5.0,
            friction: 20.0,
            engagement: 55.0,
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
/// after onboarding. A quantity of 0 means the first use of the meter.
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
    /// Fixed thresholds; `None`: calibrated on the run's score distribution (see
    /// [`HealthConfig::band_percentiles`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bands: Option<Bands>,
    /// `None`: the meter registry's `milestone` definitions (first use due by
    /// `first_use_due_days`), or the built-in milestones while the built-in key
    /// meters apply. See [`HealthConfig::resolve`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestones: Option<Vec<Milestone>>,
    /// Due day of registry milestones (first use) for this segment; `None`: the
    /// segment's default (14 / 30 / 45 / 60 days for SMB / mid-market / enterprise /
    /// strategic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_use_due_days: Option<u32>,
    /// The tier's primary KPI and benchmark on the adoption page; `None`: the tier's
    /// default ([`crate::adoption::kpi::TierKpi::default_for`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kpi: Option<crate::adoption::kpi::TierKpi>,
    /// Weight of each metric within its component (0-100; the component is their
    /// weighted mean). Metrics not named take their default: 2 for `key_active_days`
    /// (frequency ranks churners best on real histories; see
    /// docs/health-backtest-real-data.md), 1 for the others.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_weights: BTreeMap<Metric, f64>,
}

/// A metric's weight within its component when the config names none.
pub fn default_metric_weight(m: Metric) -> f64 {
    match m {
        Metric::KeyActiveDays => 2.0,
        _ => 1.0,
    }
}

impl SegmentConfig {
    pub fn metric_weight(&self, m: Metric) -> f64 {
        self.metric_weights
            .get(&m)
            .copied()
            .unwrap_or_else(|| default_metric_weight(m))
    }

    pub fn milestones(&self) -> &[Milestone] {
        self.milestones.as_deref().unwrap_or(&[])
    }
}

impl HealthConfig {
    /// The segment's adoption KPI: the configured one, else the tier's default.
    pub fn tier_kpi(&self, s: Segment) -> Option<crate::adoption::kpi::TierKpi> {
        self.segments
            .get(&s)
            .and_then(|c| c.kpi.clone())
            .or_else(|| {
                crate::adoption::kpi::TierKpi::default_for(
                    s,
                    &self.tickets_meter,
                    &self.escalated_meter,
                )
            })
    }
}

/// Where a segment's bands come from when the config sets none: the share of the
/// population below the red line (`red`) and below the green line (`yellow`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandPercentiles {
    pub red: f64,
    pub yellow: f64,
}

impl Default for BandPercentiles {
    fn default() -> Self {
        // Red: the lowest 9 % (chosen by `make backtest`: 43 % precision at 64 %
        // recall on the generator, where ~6 % churn within 60 days).
        Self {
            red: 0.09,
            yellow: 0.3,
        }
    }
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
    /// Meters whose 30-day trend is the usage component. Empty in a stored config:
    /// the registry's `key_feature` definitions, else the built-in meters.
    #[serde(default)]
    pub key_meters: Vec<MeterName>,
    /// Daily gauge of active users / contacts.
    pub active_users_meter: MeterName,
    pub tickets_meter: MeterName,
    pub reopened_meter: MeterName,
    pub escalated_meter: MeterName,
    /// Segments a stored config leaves out take the default weights and bands.
    #[serde(default)]
    pub segments: BTreeMap<Segment, SegmentConfig>,
    /// Accounts onboarded more recently are `insufficient_data`.
    pub min_account_age_days: u32,
    /// Fewer active days in the 90-day window is `insufficient_data`.
    pub min_active_days: u32,
    pub min_segment_population: usize,
    pub fallback: Fallback,
    /// Segments without fixed bands: red below this percentile of the segment's
    /// scores, green from the `yellow` percentile up.
    pub band_percentiles: BandPercentiles,
    /// Fewer scored accounts in a segment: the tenant-wide distribution; fewer in the
    /// whole tenant too: the fixed default bands (65 / 45).
    pub min_band_population: usize,
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

/// Per segment: scale of the built-in milestones and the default due day.
const TIERS: [(Segment, f64, u32); 4] = [
    (Segment::Smb, 1.0, 14),
    (Segment::MidMarket, 5.0, 30),
    (Segment::Enterprise, 25.0, 45),
    (Segment::Strategic, 50.0, 60),
];

/// Default due day (days after onboarding) of a registry milestone's first use.
pub fn default_first_use_due_days(s: Segment) -> u32 {
    TIERS.iter().find(|t| t.0 == s).map(|t| t.2).unwrap_or(30)
}

fn builtin_key_meters() -> Vec<MeterName> {
    vec![m("api_calls"), m("tickets_resolved")]
}

fn builtin_milestones(s: Segment) -> Vec<Milestone> {
    let (scale, due) = TIERS
        .iter()
        .find(|t| t.0 == s)
        .map(|t| (t.1, t.2))
        .unwrap_or((1.0, 30));
    vec![
        milestone("first_api_calls", "api_calls", 10.0 * scale, due / 2),
        milestone("integration_live", "api_calls", 500.0 * scale, due),
        milestone("team_onboarded", "seats_active", 20.0 * scale, due),
    ]
}

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingSource {
    /// The tenant's stored health config (`PUT /v1/health/config`).
    TenantConfig,
    /// The meter registry: `key_feature` / `milestone` definitions.
    Registry,
    /// Built-in defaults.
    Defaults,
    /// Bands: calibrated by each run on the score distribution (the segment's, the
    /// tenant's below `min_band_population`, else the fixed 65 / 45); each record's
    /// baseline names which.
    Calibrated,
}

/// The config a run scores with, and where each registry-driven setting came from
/// (keys such as `key_meters`, `segments.smb.milestones`, `segments.smb.bands`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    pub config: HealthConfig,
    pub sources: BTreeMap<String, SettingSource>,
}

impl Default for HealthConfig {
    /// The built-in configuration, fully resolved (what a tenant with neither a
    /// stored config nor registry flags scores with).
    fn default() -> Self {
        let segments = TIERS
            .into_iter()
            .map(|(s, _, _)| {
                (
                    s,
                    SegmentConfig {
                        milestones: Some(builtin_milestones(s)),
                        ..SegmentConfig::default()
                    },
                )
            })
            .collect();
        Self {
            key_meters: builtin_key_meters(),
            active_users_meter: m("seats_active"),
            tickets_meter: m("tickets_opened"),
            reopened_meter: m("tickets_reopened"),
            escalated_meter: m("tickets_escalated"),
            segments,
            min_account_age_days: 30,
            min_active_days: 10,
            min_segment_population: 8,
            fallback: Fallback::AllSegments,
            band_percentiles: BandPercentiles::default(),
            min_band_population: 50,
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

    /// A config that sets nothing registry-driven: what a tenant without a stored
    /// config starts from before [`HealthConfig::resolve`].
    pub fn unset() -> Self {
        Self {
            key_meters: Vec::new(),
            segments: BTreeMap::new(),
            ..Self::default()
        }
    }

    /// The effective config: the stored one (if any) where it says something, the
    /// registry for key meters (`key_feature` definitions) and milestones (first use
    /// of each `milestone` definition, due by the segment's due day), then the
    /// built-in defaults. The built-in milestones only apply with the built-in key
    /// meters: a tenant with its own key features is never held to `api_calls`.
    pub fn resolve(
        stored: Option<&HealthConfig>,
        registry: &[crate::definition::Definition],
    ) -> Resolved {
        use crate::event::DefinitionStatus;
        let mut cfg = stored.cloned().unwrap_or_else(Self::unset);
        let mut sources = BTreeMap::new();
        let live = |d: &&crate::definition::Definition| d.status != DefinitionStatus::Deleted;
        let key: Vec<MeterName> = registry
            .iter()
            .filter(live)
            .filter(|d| d.key_feature)
            .map(|d| d.meter.clone())
            .take(10)
            .collect();
        let registry_milestones: Vec<MeterName> = registry
            .iter()
            .filter(live)
            .filter(|d| d.milestone)
            .map(|d| d.meter.clone())
            .take(20)
            .collect();
        let key_source = if !cfg.key_meters.is_empty() {
            SettingSource::TenantConfig
        } else if !key.is_empty() {
            cfg.key_meters = key;
            SettingSource::Registry
        } else {
            cfg.key_meters = builtin_key_meters();
            SettingSource::Defaults
        };
        sources.insert("key_meters".to_owned(), key_source);
        let defaults = SegmentConfig::default();
        for (s, _, _) in TIERS {
            let stored_seg = cfg.segments.get(&s).cloned();
            let mut seg = stored_seg.clone().unwrap_or_default();
            let from_tenant = |same: bool| {
                if stored_seg.is_some() && !same {
                    SettingSource::TenantConfig
                } else {
                    SettingSource::Defaults
                }
            };
            sources.insert(
                format!("segments.{s}.weights"),
                from_tenant(seg.weights == defaults.weights),
            );
            sources.insert(
                format!("segments.{s}.bands"),
                if seg.bands.is_some() {
                    SettingSource::TenantConfig
                } else {
                    SettingSource::Calibrated
                },
            );
            let due = seg
                .first_use_due_days
                .unwrap_or_else(|| default_first_use_due_days(s));
            sources.insert(
                format!("segments.{s}.first_use_due_days"),
                if seg.first_use_due_days.is_some() {
                    SettingSource::TenantConfig
                } else {
                    SettingSource::Defaults
                },
            );
            let ms_source = if seg.milestones.is_some() {
                SettingSource::TenantConfig
            } else if !registry_milestones.is_empty() || key_source != SettingSource::Defaults {
                seg.milestones = Some(
                    registry_milestones
                        .iter()
                        .map(|meter| Milestone {
                            name: format!("first_{meter}"),
                            meter: meter.clone(),
                            quantity: 0.0,
                            due_days: due,
                        })
                        .collect(),
                );
                SettingSource::Registry
            } else {
                seg.milestones = Some(builtin_milestones(s));
                SettingSource::Defaults
            };
            sources.insert(format!("segments.{s}.milestones"), ms_source);
            cfg.segments.insert(s, seg);
        }
        Resolved {
            config: cfg,
            sources,
        }
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
        // Every number must be storable: DynamoDB keeps 0 and magnitudes from 1e-130 to
        // 1e126, so anything finer or larger is refused here, not failed on write.
        if let Some(x) = serde_json::to_value(self)
            .ok()
            .as_ref()
            .and_then(unstorable_number)
        {
            return bad(format!(
                "{x} cannot be stored: numbers must be 0 or between 1e-100 and 1e100 in magnitude"
            ));
        }
        if self.key_meters.len() > 10 {
            return bad(
                "key_meters must list at most 10 meters (none: the registry's key features)".into(),
            );
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
            if c.bands.is_some_and(|b| {
                !(0.0..=100.0).contains(&b.yellow_min)
                    || !(0.0..=100.0).contains(&b.green_min)
                    || b.yellow_min >= b.green_min
            }) {
                return bad(format!(
                    "segments.{s}.bands need 0 <= yellow_min < green_min <= 100"
                ));
            }
            if c.metric_weights
                .values()
                .any(|w| !w.is_finite() || !(0.0..=100.0).contains(w))
            {
                return bad(format!("segments.{s}.metric_weights must be 0-100"));
            }
            if c.milestones().len() > 20 {
                return bad(format!("segments.{s}.milestones: at most 20"));
            }
            if c.first_use_due_days
                .is_some_and(|d| !(1..=365).contains(&d))
            {
                return bad(format!("segments.{s}.first_use_due_days must be 1-365"));
            }
            if let Some(k) = &c.kpi {
                if let Err(m) = k.validate(&format!("segments.{s}.kpi")) {
                    return bad(m);
                }
            }
            for ms in c.milestones() {
                if ms.name.is_empty() || ms.name.len() > 64 {
                    return bad(format!("segments.{s}.milestones: name of 1-64 characters"));
                }
                if !ms.quantity.is_finite() || ms.quantity < 0.0 || ms.due_days == 0 {
                    return bad(format!(
                        "segments.{s}.milestones.{}: quantity >= 0 (0: first use) and due_days >= 1",
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
        let p = self.band_percentiles;
        if !(p.red.is_finite()
            && p.yellow.is_finite()
            && 0.0 < p.red
            && p.red < p.yellow
            && p.yellow < 1.0)
        {
            return bad("band_percentiles need 0 < red < yellow < 1".into());
        }
        if !(5..=1_000_000).contains(&self.min_band_population) {
            return bad("min_band_population must be 5-1000000".into());
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

/// The first number in `v` that is neither 0 nor between 1e-100 and 1e100 in magnitude.
fn unstorable_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|x| *x != 0.0 && !(1e-100..=1e100).contains(&x.abs())),
        serde_json::Value::Array(items) => items.iter().find_map(unstorable_number),
        serde_json::Value::Object(map) => map.values().find_map(unstorable_number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_too_small_or_too_large_to_store_is_refused_not_a_server_error() {
        // Found by the API fuzzer: 5e-324 passed validation and DynamoDB refused to
        // store it (its numbers span 1e-130 to 1e126), so the PUT answered 500.
        for body in [
            &br#"{"band_percentiles": {"red": 5e-324, "yellow": 0.3}}"#[..],
            br#"{"segments": {"smb": {"weights": {"usage_trend": 1e-200, "milestones": 1, "friction": 1, "engagement": 1}}}}"#,
        ] {
            let err = HealthConfig::from_body(body).expect_err("refused");
            assert_eq!(err.code, "invalid_health_config", "{err:?}");
        }
        assert!(
            HealthConfig::from_body(br#"{"band_percentiles": {"red": 0.001, "yellow": 0.3}}"#)
                .is_ok()
        );
    }

    #[test]
    fn default_configuration_is_valid_and_weighs_20_5_20_55_as_the_backtest_chose() {
        let c = HealthConfig::default();
        c.validate().unwrap();
        assert_eq!(c.segment(Segment::Enterprise).weights, Weights::default());
        assert_eq!(c.key_meters[0].as_str(), "api_calls");
        assert_eq!(c.segment(Segment::Smb).milestones().len(), 3);
    }

    #[test]
    fn a_partial_body_keeps_the_defaults_and_bad_bodies_say_why() {
        let c = HealthConfig::from_body(
            br#"{"drop_alert_points": 10, "segments": {"smb": {"bands": {"green_min": 80, "yellow_min": 50}}}}"#,
        )
        .unwrap();
        assert_eq!(c.drop_alert_points, 10.0);
        assert_eq!(
            c.segment(Segment::Smb).bands.map(|b| b.green_min),
            Some(80.0)
        );
        assert_eq!(c.segment(Segment::Smb).weights, Weights::default());
        assert_eq!(
            c.tier_kpi(Segment::Enterprise).map(|k| k.name()),
            Some("escalation_rate"),
            "a tier without a kpi keeps its default"
        );
        let k = HealthConfig::from_body(
            br#"{"segments": {"smb": {"kpi": {"kind": "health_trend", "benchmark_points": 2}}}}"#,
        )
        .unwrap();
        assert_eq!(k.tier_kpi(Segment::Smb).map(|k| k.benchmark()), Some(2.0));
        for body in [
            &br#"{"weights": 1}"#[..],
            br#"{"segments": {"smb": {"bands": {"green_min": 40, "yellow_min": 50}}}}"#,
            br#"{"segments": {"smb": {"weights": {"usage_trend": -1, "milestones": 0, "friction": 0, "engagement": 0}}}}"#,
            br#"{"segments": {"unassigned": {}}}"#,
            br#"{"key_meters": ["a","b","c","d","e","f","g","h","i","j","k"]}"#,
            br#"{"key_meters": ["bad meter!"]}"#,
            br#"{"drop_alert_points": 0}"#,
            br#"{"segments": {"smb": {"kpi": {"kind": "sla_hit_rate", "met_meter": "a", "total_meter": "b", "benchmark_percent": 120}}}}"#,
            br#"{"segments": {"smb": {"kpi": {"kind": "happiness", "benchmark_points": 1}}}}"#,
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
