//! Configuration read from the environment (names per DESIGN §7).

use std::env;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {message}")]
    Invalid { name: &'static str, message: String },
}

pub fn required(name: &'static str) -> Result<String, ConfigError> {
    env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::Missing(name))
}

pub fn number<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            message: e.to_string(),
        }),
        _ => Ok(default),
    }
}

/// Resource names shared by all functions.
#[derive(Debug, Clone)]
pub struct Resources {
    pub table: String,
    pub events_queue_url: String,
}

impl Resources {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            table: required("USAGE_TABLE")?,
            events_queue_url: required("EVENTS_QUEUE_URL")?,
        })
    }
}

/// How long ledger records (the dedupe memory) are kept, `LEDGER_RETENTION_DAYS`
/// (default 120). Refused outside 54..=36,519 days: the least must guard the default
/// backfill horizon (docs/adr/0001, "Horizons and retention").
pub fn ledger_retention() -> Result<domain::horizon::Retention, ConfigError> {
    let days: i64 = number(
        "LEDGER_RETENTION_DAYS",
        i64::from(domain::horizon::DEFAULT_RETENTION_DAYS),
    )?;
    domain::horizon::Retention::days(days).map_err(|e| ConfigError::Invalid {
        name: "LEDGER_RETENTION_DAYS",
        message: format!("{} ({})", e, e.code()),
    })
}

/// Drift sample size, `AUDIT_SAMPLE_MODULUS`: the events of one account in this many
/// are copied for the audit's ledger re-sum (default 32; 1 = every account, 0 = none).
pub fn audit_sample_modulus() -> Result<u32, ConfigError> {
    number("AUDIT_SAMPLE_MODULUS", aws::dynamo::DEFAULT_AUDIT_SAMPLE)
}

/// The opt-in to legacy (v1/v2) HubSpot signatures: `HUBSPOT_LEGACY_SIGNATURES` (`v1`,
/// `v2` or `v1,v2`; empty or unset: v3 only) and `HUBSPOT_LEGACY_REPLAY_WINDOW_HOURS`
/// (how old a legacy request's changes may be, default 168).
pub fn hubspot_legacy_policy() -> Result<Option<domain::hubspot::replay::LegacyPolicy>, ConfigError>
{
    let versions = env::var("HUBSPOT_LEGACY_SIGNATURES").unwrap_or_default();
    let window = env::var("HUBSPOT_LEGACY_REPLAY_WINDOW_HOURS").ok();
    domain::hubspot::replay::LegacyPolicy::from_settings(&versions, window.as_deref()).map_err(
        |message| ConfigError::Invalid {
            name: if message.contains("hours") {
                "HUBSPOT_LEGACY_REPLAY_WINDOW_HOURS"
            } else {
                "HUBSPOT_LEGACY_SIGNATURES"
            },
            message,
        },
    )
}
