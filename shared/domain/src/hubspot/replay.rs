//! The replay guard for legacy (v1/v2) HubSpot signatures (docs/adr/0005).
//!
//! A legacy signature carries no time, so a captured request verifies forever. A
//! deployment that opts in to legacy signatures therefore gets two rules, which
//! together bound every legacy request to one processing:
//!
//! 1. **Freshness from signed data.** Every change in a legacy request must carry its
//!    own `occurredAt` (the body is signed, so the time is too), no older than the
//!    replay window. A request without a time is refused (`occurred_at_required`), one
//!    older than the window is refused as a replay (`signature_replayed`).
//! 2. **Claimed once within the window.** Each legacy request is claimed in DynamoDB
//!    by a digest of exactly what its signature covers, with a TTL that outlives the
//!    window. A second arrival of a request already processed is acknowledged (200,
//!    `"duplicate": true`) and not queued again: HubSpot stops retrying and nothing is
//!    counted twice. A claim whose processing never finished (the queue failed) does
//!    not block the retry, which processes it again; the ledger counts its events once.
//!
//! Once a claim has expired, rule 1 refuses the request, so no replay is ever counted.

use super::signature::{LegacyVersions, Version};
use super::webhook::{AppEvent, MAX_FUTURE_SKEW_MS};
use sha2::{Digest, Sha256};

/// Default replay window: HubSpot retries app webhooks for 24 hours and workflow
/// webhooks for 3 days; a week leaves room for delayed workflow actions.
pub const DEFAULT_WINDOW_HOURS: i64 = 7 * 24;
/// Longest window a deployment may configure: within the ledger's minimum retention
/// (30 days), so a request processed again after an unfinished claim is still
/// deduplicated by the ledger.
pub const MAX_WINDOW_HOURS: i64 = 30 * 24;
/// How much longer a claim lives than the window (clock skew, TTL granularity).
pub const CLAIM_MARGIN_SECS: i64 = 3600;

/// A deployment's opt-in to legacy signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyPolicy {
    pub versions: LegacyVersions,
    /// How old a legacy request's changes may be.
    pub window: chrono::Duration,
}

impl LegacyPolicy {
    /// From `HUBSPOT_LEGACY_SIGNATURES` (`v1`, `v2`, `v1,v2`; empty or `off`: none) and
    /// `HUBSPOT_LEGACY_REPLAY_WINDOW_HOURS` (1 to 720, default 168). `None` when no
    /// legacy version is accepted.
    pub fn from_settings(
        versions: &str,
        window_hours: Option<&str>,
    ) -> Result<Option<Self>, String> {
        let versions = LegacyVersions::parse(versions)?;
        let hours = match window_hours.map(str::trim).filter(|h| !h.is_empty()) {
            None => DEFAULT_WINDOW_HOURS,
            Some(h) => h
                .parse::<i64>()
                .ok()
                .filter(|h| (1..=MAX_WINDOW_HOURS).contains(h))
                .ok_or_else(|| {
                    format!("'{h}' is not a number of hours from 1 to {MAX_WINDOW_HOURS}")
                })?,
        };
        Ok(versions.any().then(|| Self {
            versions,
            window: chrono::Duration::hours(hours),
        }))
    }

    /// The epoch second after which a claim made at `now_ms` may be forgotten.
    pub fn claim_expires_at(&self, now_ms: i64) -> i64 {
        (now_ms / 1000)
            .saturating_add(self.window.num_seconds())
            .saturating_add(CLAIM_MARGIN_SECS)
    }
}

/// Why a legacy-signed request is refused before it is claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("event {index}: a request signed with {version} must carry occurredAt: without a signed time it cannot be told from a replay (sign with v3, or add occurredAt to the payload)")]
    NoTime { index: usize, version: Version },
    #[error("event {index}: occurredAt is older than this deployment's {hours}-hour window for {version}-signed requests, so the request cannot be told from a replay")]
    Stale {
        index: usize,
        version: Version,
        hours: i64,
    },
    #[error("event {index}: occurredAt is more than 5 minutes after receipt")]
    FromTheFuture { index: usize },
}

impl ReplayError {
    pub fn code(&self) -> &'static str {
        match self {
            ReplayError::NoTime { .. } => "occurred_at_required",
            ReplayError::Stale { .. } => "signature_replayed",
            ReplayError::FromTheFuture { .. } => "occurred_at_out_of_range",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ReplayError::NoTime { .. } | ReplayError::FromTheFuture { .. } => 400,
            ReplayError::Stale { .. } => 409,
        }
    }
}

/// Rule 1: every change of a legacy request carries a signed time inside the window
/// (and not after receipt plus the usual 5 minutes of skew, so the claim made now
/// outlives the moment the request turns stale).
pub fn check_fresh(
    events: &[AppEvent],
    version: Version,
    policy: &LegacyPolicy,
    now_ms: i64,
) -> Result<(), ReplayError> {
    let oldest = now_ms.saturating_sub(policy.window.num_milliseconds());
    for (index, ev) in events.iter().enumerate() {
        if ev.occurred_at_defaulted {
            return Err(ReplayError::NoTime { index, version });
        }
        if ev.occurred_at > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(ReplayError::FromTheFuture { index });
        }
        if ev.occurred_at < oldest {
            return Err(ReplayError::Stale {
                index,
                version,
                hours: policy.window.num_hours(),
            });
        }
    }
    Ok(())
}

/// Rule 2's key: a digest of exactly what the signature covers (v1: the body; v2:
/// method, URI and body), so the same signed request always has the same key and a v1
/// body cannot dodge its claim by a different query string.
pub fn request_key(version: Version, method: &str, uri: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(version.as_str().as_bytes());
    h.update([0x1f]);
    if version.covers_uri() {
        h.update(method.as_bytes());
        h.update([0x1f]);
        h.update(uri.as_bytes());
        h.update([0x1f]);
    }
    h.update(body);
    format!("{}-{}", version.as_str(), hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn policy(hours: i64) -> LegacyPolicy {
        LegacyPolicy {
            versions: LegacyVersions { v1: true, v2: true },
            window: chrono::Duration::hours(hours),
        }
    }

    fn at(ms: i64, defaulted: bool) -> AppEvent {
        AppEvent {
            portal_id: 1,
            occurred_at: ms,
            occurred_at_defaulted: defaulted,
            subscription_type: "workflow.x".into(),
            ..AppEvent::default()
        }
    }

    #[test]
    fn legacy_is_off_unless_a_version_is_named() {
        assert_eq!(LegacyPolicy::from_settings("", None), Ok(None));
        assert_eq!(LegacyPolicy::from_settings("off", Some("24")), Ok(None));
        let p = LegacyPolicy::from_settings("v2", None).unwrap().unwrap();
        assert_eq!(
            (p.versions.v1, p.versions.v2, p.window.num_hours()),
            (false, true, DEFAULT_WINDOW_HOURS)
        );
        assert_eq!(
            LegacyPolicy::from_settings("v1,v2", Some("24"))
                .unwrap()
                .unwrap()
                .window
                .num_hours(),
            24
        );
        for bad in ["0", "721", "-1", "a week"] {
            assert!(
                LegacyPolicy::from_settings("v2", Some(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(LegacyPolicy::from_settings("v3", None).is_err());
    }

    #[test]
    fn a_legacy_request_needs_a_signed_time_inside_the_window() {
        let p = policy(24);
        let day = 24 * 3_600_000;
        assert_eq!(
            check_fresh(&[at(NOW - day + 1, false)], Version::V2, &p, NOW),
            Ok(())
        );
        let stale = check_fresh(
            &[at(NOW, false), at(NOW - day - 1, false)],
            Version::V1,
            &p,
            NOW,
        )
        .unwrap_err();
        assert_eq!((stale.code(), stale.status()), ("signature_replayed", 409));
        assert!(matches!(stale, ReplayError::Stale { index: 1, .. }));
        let untimed = check_fresh(&[at(NOW, true)], Version::V2, &p, NOW).unwrap_err();
        assert_eq!(
            (untimed.code(), untimed.status()),
            ("occurred_at_required", 400)
        );
    }

    #[test]
    fn a_claim_outlives_the_window_so_a_replay_is_always_caught_by_one_rule() {
        let p = policy(24);
        // Claimed at the first arrival, at most 5 minutes before occurredAt, the claim
        // lasts past the moment the request turns stale.
        let first_arrival = NOW;
        let occurred = first_arrival + MAX_FUTURE_SKEW_MS;
        let stale_from_ms = occurred + p.window.num_milliseconds();
        assert!(p.claim_expires_at(first_arrival) * 1000 > stale_from_ms);
        let future = check_fresh(&[at(occurred + 1, false)], Version::V2, &p, first_arrival);
        assert_eq!(future.unwrap_err().code(), "occurred_at_out_of_range");
        // No overflow at the end of the range.
        assert!(p.claim_expires_at(i64::MAX) > p.claim_expires_at(NOW));
    }

    #[test]
    fn the_key_covers_what_the_signature_covers() {
        let k = |v, uri: &str, body: &[u8]| request_key(v, "POST", uri, body);
        // v1 signs only the body: another query is the same request.
        assert_eq!(
            k(Version::V1, "https://h/x?portalId=1", b"{}"),
            k(Version::V1, "https://h/x?portalId=2", b"{}")
        );
        // v2 signs the URI: another query is another request.
        assert_ne!(
            k(Version::V2, "https://h/x?portalId=1", b"{}"),
            k(Version::V2, "https://h/x?portalId=2", b"{}")
        );
        assert_ne!(k(Version::V1, "u", b"{}"), k(Version::V2, "u", b"{}"));
        assert_ne!(k(Version::V2, "u", b"{}"), k(Version::V2, "u", b"{ }"));
        assert!(k(Version::V2, "u", b"").starts_with("v2-"));
    }
}
