//! Key builders for the single DynamoDB table. Every key in the system is built here,
//! from validated newtypes, so keys cannot collide across tenants or item kinds.

use crate::ids::{AccountId, EventId, MeterName, Segment, ServiceLine, Source, Stage, TenantId};
use chrono::NaiveDate;

pub const PROFILE_SK: &str = "#PROFILE";
pub const API_KEY_SK: &str = "#KEY";
pub const EVENT_SK: &str = "#EVENT";

/// What a usage rollup is aggregated over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Account(AccountId),
    Segment(Segment),
}

/// What begins every tenant partition key (and every tenant registry sort key).
pub const TENANT_PREFIX: &str = "TENANT#";

pub fn tenant_pk(t: &TenantId) -> String {
    format!("{TENANT_PREFIX}{t}")
}

pub fn definition_sk(m: &MeterName) -> String {
    format!("DEF#{m}")
}

pub const DEFINITION_PREFIX: &str = "DEF#";

pub fn api_key_pk(key_hash: &str) -> String {
    format!("APIKEY#{key_hash}")
}

/// The partition listing a tenant's keys (by key id; the lookup item is by hash).
pub fn api_keys_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#KEYS")
}

pub const API_KEY_LISTING_PREFIX: &str = "KEY#";

pub fn api_key_listing_sk(key_id: &str) -> String {
    format!("{API_KEY_LISTING_PREFIX}{key_id}")
}

pub fn accounts_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#ACCOUNTS")
}

/// What begins every account sort key.
pub const ACCOUNT_PREFIX: &str = "ACCOUNT#";

pub fn account_sk(a: &AccountId) -> String {
    format!("{ACCOUNT_PREFIX}{a}")
}

/// The account an account sort key names (`None` for any other sort key).
pub fn account_of_sk(sk: &str) -> Option<AccountId> {
    sk.strip_prefix(ACCOUNT_PREFIX)
        .and_then(|a| AccountId::parse(a).ok())
}

/// Ledger key: the idempotency key of an event is (tenant, source, id) and nothing else,
/// so a retry with a different timestamp or body is still the same event.
pub fn ledger_pk(t: &TenantId, source: Source, id: &EventId) -> String {
    format!("TENANT#{t}#EVENT#{}#{id}", source.as_str())
}

pub fn part_pk(t: &TenantId, chunk: &str) -> String {
    format!("TENANT#{t}#CHUNK#{chunk}")
}

/// Import chunks begun and not yet fully applied (docs/adr/0001, "Import re-runs").
pub fn import_journal_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#IMPORTS")
}

pub const IMPORT_JOURNAL_PREFIX: &str = "CHUNK#";

pub fn import_journal_sk(chunk: &str) -> String {
    format!("{IMPORT_JOURNAL_PREFIX}{chunk}")
}

pub fn part_sk(part: usize) -> String {
    format!("PART#{part:04}")
}

/// Marker of one applied unit of a chunk (`rollup::Unit`), under [`part_pk`].
pub fn unit_sk(bucket: u32, piece: u32) -> String {
    format!("UNIT#{bucket:02}#{piece:04}")
}

pub fn usage_pk(t: &TenantId, scope: &Scope) -> String {
    match scope {
        Scope::Account(a) => format!("TENANT#{t}#USAGE#ACCOUNT#{a}"),
        Scope::Segment(s) => format!("TENANT#{t}#USAGE#SEGMENT#{}", s.as_str()),
    }
}

/// Sort key of a day rollup: day first so a date range is one key range.
pub fn usage_sk(day: NaiveDate, meter: &MeterName, stage: Stage, line: &ServiceLine) -> String {
    format!(
        "{}#{meter}#{}#{line}",
        day.format("%Y-%m-%d"),
        stage.as_str()
    )
}

/// Lower and upper bounds (inclusive) of the sort keys for days `from..=to`.
pub fn usage_sk_range(from: NaiveDate, to: NaiveDate) -> (String, String) {
    (
        format!("{}#", from.format("%Y-%m-%d")),
        format!("{}#~", to.format("%Y-%m-%d")),
    )
}

/// Inverse of [`usage_sk`].
pub fn parse_usage_sk(sk: &str) -> Option<(NaiveDate, MeterName, Stage, ServiceLine)> {
    let mut parts = sk.splitn(4, '#');
    let day = NaiveDate::parse_from_str(parts.next()?, "%Y-%m-%d").ok()?;
    let meter = MeterName::parse(parts.next()?).ok()?;
    let stage = Stage::parse(parts.next()?)?;
    let line = ServiceLine::parse(parts.next()?).ok()?;
    Some((day, meter, stage, line))
}

/// Everything known about one HubSpot object: its company, merges, held events.
pub fn hubspot_object_pk(t: &TenantId, kind: &str, id: u64) -> String {
    format!("TENANT#{t}#HUBSPOT#{kind}#{id}")
}
pub const HUBSPOT_COMPANY_SK: &str = "#COMPANY";
pub const HUBSPOT_MERGED_SK: &str = "#MERGED_INTO";
/// On a company: the account whose profile names it.
pub const HUBSPOT_ACCOUNT_SK: &str = "#ACCOUNT";
pub const HUBSPOT_PENDING_PREFIX: &str = "PENDING#";
pub const HUBSPOT_RULES_SK: &str = "HUBSPOT#RULES";
pub const HUBSPOT_PROFILE_SYNC_SK: &str = "HUBSPOT#PROFILE_SYNC";
/// On a company: one synced CRM property per profile field.
pub const HUBSPOT_PROPERTY_PREFIX: &str = "#PROP#";

/// HubSpot changes no rule mapped, per day (for the audit).
pub fn hubspot_unmapped_pk(t: &TenantId, day: NaiveDate) -> String {
    format!("TENANT#{t}#HUBSPOT#UNMAPPED#{}", day.format("%Y-%m-%d"))
}

/// A legacy-signed HubSpot request's replay-guard claim (not tenant-scoped: it is
/// claimed before the portal is resolved).
pub fn hubspot_legacy_request_pk(key: &str) -> String {
    format!("HUBSPOT#LEGACY_REQUEST#{key}")
}
pub const HUBSPOT_LEGACY_REQUEST_SK: &str = "#CLAIM";

pub fn hubspot_portal_pk(portal: u64) -> String {
    format!("HUBSPOT#PORTAL#{portal}")
}
pub const HUBSPOT_PORTAL_SK: &str = "#TENANT";
/// Per-day counts of events refused because their portal maps to no tenant.
pub fn hubspot_unknown_portal_pk(portal: u64) -> String {
    format!("HUBSPOT#UNKNOWN_PORTAL#{portal}")
}
pub fn entitlements_pk(t: &TenantId, a: &AccountId) -> String {
    format!("TENANT#{t}#ACCOUNT#{a}#ENTITLEMENTS")
}

pub fn entitlement_sk(id: &crate::ids::EntitlementId) -> String {
    format!("ENT#{id}")
}

/// Pointer from an entitlement id to its account's partition.
pub fn entitlement_pointer_pk(t: &TenantId, id: &crate::ids::EntitlementId) -> String {
    format!("TENANT#{t}#ENTITLEMENT#{id}")
}

pub const ENTITLEMENT_POINTER_SK: &str = "#ENTITLEMENT";

/// A once-only marker (alert raised / alert published); `key` is an alert key.
pub fn marker_pk(t: &TenantId, kind: &str, key: &str) -> String {
    format!("TENANT#{t}#{kind}#{key}")
}

pub const MARKER_SK: &str = "#MARKER";

/// A tenant's alert routing policy (digests, cooldowns).
pub const ALERT_POLICY_SK: &str = "ALERTS#POLICY";

/// When each cooldown scope (account, kind, code) last had an alert published.
pub fn cooldown_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#COOLDOWN")
}

/// The alerts held in one digest.
pub fn digest_pk(b: &crate::digest::DigestBucket) -> String {
    format!("TENANT#{}#DIGEST#{}", b.tenant, b.key())
}

/// One account's recent alerts ([`crate::ports::AlertHistory`]).
pub fn account_alerts_pk(t: &TenantId, account: &crate::ids::AccountId) -> String {
    format!("TENANT#{t}#ALERTS#{account}")
}

/// Sorted by the time the alert was raised (fixed-width UTC, so text order is time
/// order), then its key.
pub fn account_alert_sk(a: &crate::alert::Alert) -> String {
    format!("{}#{}", a.raised_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"), a.key)
}

/// Every digest not yet sent, sorted by the day it becomes due.
pub const DIGESTS_DUE_PK: &str = "DIGESTS#DUE";
pub fn digest_due_sk(b: &crate::digest::DigestBucket) -> String {
    format!("{}#{}#{}", b.end.format("%Y-%m-%d"), b.tenant, b.key())
}

/// Health scoring (docs/adr/0006): per-account latest record and daily history.
pub fn health_pk(t: &TenantId, a: &AccountId) -> String {
    format!("TENANT#{t}#HEALTH#ACCOUNT#{a}")
}
pub const HEALTH_LATEST_SK: &str = "#LATEST";
pub fn health_day_sk(day: NaiveDate) -> String {
    format!("DAY#{}", day.format("%Y-%m-%d"))
}
/// Risk index: one partition per (segment, band), sorted by score (riskiest first).
pub fn health_risk_pk(t: &TenantId, segment: Segment, band: &str) -> String {
    format!("TENANT#{t}#HEALTH#RISK#{}#{band}", segment.as_str())
}
pub fn health_risk_sk(score: f64, a: &AccountId) -> String {
    format!("{:04}#{a}", (score.clamp(0.0, 100.0) * 10.0).round() as u32)
}
/// Risk index by owner: one partition per owner (lowercase e-mail), sorted by score.
pub fn health_risk_owner_pk(t: &TenantId, owner: &str) -> String {
    format!("TENANT#{t}#HEALTH#RISK-OWNER#{}", owner.to_lowercase())
}
/// Risk index by band change: one partition per day a band last changed, sorted by score.
pub fn health_risk_changed_pk(t: &TenantId, day: NaiveDate) -> String {
    format!("TENANT#{t}#HEALTH#RISK-CHANGED#{}", day.format("%Y-%m-%d"))
}
/// Each day's band counts per segment ([`crate::health::bands`]), sorted by day.
pub fn health_bands_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#HEALTH#BANDS")
}
pub fn health_bands_sk(day: NaiveDate) -> String {
    format!("DAY#{}", day.format("%Y-%m-%d"))
}
/// One score run: its header, shard measurements and baselines.
pub fn health_run_pk(t: &TenantId, run: &str) -> String {
    format!("TENANT#{t}#HEALTHRUN#{run}")
}
pub const HEALTH_RUN_SK: &str = "#RUN";
pub const HEALTH_BASELINE_SK: &str = "#BASELINE";
pub const HEALTH_SHARD_PREFIX: &str = "SHARD#";
pub fn health_shard_sk(shard: u32) -> String {
    format!("{HEALTH_SHARD_PREFIX}{shard:06}")
}
pub const HEALTH_CONFIG_SK: &str = "HEALTH#CONFIG";
/// The tenant's plays by tier (`PUT /v1/hubspot/plays`).
pub const HEALTH_PLAYS_SK: &str = "HEALTH#PLAYS";
/// Registry of tenants, so scheduled jobs can enumerate them without a Scan.
pub const TENANTS_PK: &str = "TENANTS";
pub fn tenant_registry_sk(t: &TenantId) -> String {
    format!("{TENANT_PREFIX}{t}")
}

/// The tenant a tenant registry sort key names.
pub fn tenant_of_registry_sk(sk: &str) -> Option<TenantId> {
    sk.strip_prefix(TENANT_PREFIX)
        .and_then(|t| TenantId::parse(t).ok())
}

// --- Governance and audits (docs/adr/0007) ---

/// Change log of one definition; sort keys are `<at>#<unique>` so it reads in order.
pub fn definition_changes_pk(t: &TenantId, m: &MeterName) -> String {
    format!("TENANT#{t}#DEFCHANGES#{m}")
}

pub fn definition_change_sk(at: chrono::DateTime<chrono::Utc>, unique: &str) -> String {
    format!(
        "{}#{unique}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// Data-quality counters: one item per (receipt day, meter) under one partition.
pub fn quality_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#QUALITY")
}

pub fn quality_sk(day: NaiveDate, meter: &str) -> String {
    format!("{}#{meter}", day.format("%Y-%m-%d"))
}

/// Marks a chunk's counters as applied (under the chunk's part partition).
pub const QUALITY_MARKER_SK: &str = "QUALITY";

/// Last time each account sent a critical meter.
pub fn activity_pk(t: &TenantId, m: &MeterName) -> String {
    format!("TENANT#{t}#ACTIVE#{m}")
}

/// Drift sample of one event day (in the ledger table).
pub fn sample_pk(t: &TenantId, day: NaiveDate) -> String {
    format!("TENANT#{t}#SAMPLE#{}", day.format("%Y-%m-%d"))
}

pub fn sample_sk(a: &AccountId, source: Source, id: &EventId) -> String {
    format!("{a}#{}#{id}", source.as_str())
}

/// Stored audit runs of a tenant, by run time.
pub fn audits_pk(t: &TenantId) -> String {
    format!("TENANT#{t}#AUDITS")
}

pub fn audit_sk(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The tenant's governance policy (what happens to retired meters' events).
pub const GOVERNANCE_POLICY_SK: &str = "GOVERNANCE#POLICY";

/// Held events of one meter (docs/adr/0007); sort key `<source>#<event id>`.
pub fn quarantine_pk(t: &TenantId, m: &MeterName) -> String {
    format!("TENANT#{t}#QUARANTINE#{m}")
}

/// One account's critical-meter series (docs/adr/0007); sort key [`critical_sk`].
pub fn critical_pk(t: &TenantId, a: &AccountId) -> String {
    format!("TENANT#{t}#CRITICAL#{a}")
}

/// Day first, so a window is one key range.
pub fn critical_sk(day: NaiveDate, m: &MeterName) -> String {
    format!("{}#{m}", day.format("%Y-%m-%d"))
}

/// Marker of a chunk's critical-series group `n` (under the chunk's part partition).
pub const CRITICAL_MARKER_SK: &str = "CRITICAL";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_sort_keys_round_trip_and_sort_by_day() {
        let d = NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        let m = MeterName::parse("api_calls").unwrap();
        let l = ServiceLine::parse("support").unwrap();
        let sk = usage_sk(d, &m, Stage::Billed, &l);
        assert_eq!(sk, "2026-02-28#api_calls#billed#support");
        assert_eq!(
            parse_usage_sk(&sk),
            Some((d, m.clone(), Stage::Billed, l.clone()))
        );
        let (lo, hi) = usage_sk_range(d, d);
        assert!(lo.as_str() < sk.as_str() && sk.as_str() < hi.as_str());
        let next = usage_sk(d.succ_opt().unwrap(), &m, Stage::Billed, &l);
        assert!(next.as_str() > hi.as_str());
    }

    #[test]
    fn tenants_never_share_a_partition() {
        let a = AccountId::parse("1").unwrap();
        let t1 = TenantId::parse("t1").unwrap();
        let t2 = TenantId::parse("t2").unwrap();
        assert_ne!(
            usage_pk(&t1, &Scope::Account(a.clone())),
            usage_pk(&t2, &Scope::Account(a))
        );
    }
}
