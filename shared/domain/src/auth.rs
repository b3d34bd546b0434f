//! Tenant API keys: random, shown once, stored only as a SHA-256 hash, each scoped
//! to one tenant and to what it may do (`ingest`, `read`, `admin`), revocable,
//! rotatable with an overlap window, and optionally expiring.

use crate::ids::TenantId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "uk_";

/// Generates a new API key (`uk_` + 43 base64url characters = 256 random bits).
pub fn generate_key() -> Result<String, getrandom::Error> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The stored form of a key. Keys carry 256 random bits, so a fast hash is safe.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Extracts the key from an `Authorization: Bearer <key>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty() && key.len() <= 256).then_some(key)
}

/// What a key may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Send usage events (`POST /v1/events`).
    Ingest,
    /// Read everything the API answers (every `GET`), change nothing.
    Read,
    /// Everything: configuration, keys, jobs, replays.
    Admin,
}

impl KeyScope {
    pub const ALL: [KeyScope; 3] = [KeyScope::Ingest, KeyScope::Read, KeyScope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Ingest => "ingest",
            KeyScope::Read => "read",
            KeyScope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s.trim())
    }
}

/// Keys stored before scopes existed could do everything; they keep that.
pub fn legacy_scopes() -> Vec<KeyScope> {
    KeyScope::ALL.to_vec()
}

/// Longest label of a key.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest lifetime a new key may be given.
pub const MAX_EXPIRY_DAYS: u32 = 3650;
/// Longest overlap of a rotated key with its successor.
pub const MAX_OVERLAP_HOURS: u32 = 720;
/// Default overlap of a rotated key with its successor.
pub const DEFAULT_OVERLAP_HOURS: u32 = 24;
/// Most keys one tenant may hold (listed on one page).
pub const MAX_KEYS_PER_TENANT: usize = 100;

/// The public id of a key: the first 12 hex digits of its hash (never the key).
pub fn key_id(key_hash: &str) -> String {
    key_hash.chars().take(12).collect()
}

/// What a stored key grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    pub tenant: TenantId,
    pub key_id: String,
    pub label: String,
    #[serde(default = "legacy_scopes")]
    pub scopes: Vec<KeyScope>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Why a known key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    Revoked,
    Expired,
    /// The key is valid but lacks the scope the request needs.
    Scope(KeyScope),
}

impl KeyGrant {
    pub fn allows(&self, needed: KeyScope) -> bool {
        self.scopes.contains(&KeyScope::Admin) || self.scopes.contains(&needed)
    }

    /// Whether the key may make a request needing `needed` at `now`.
    pub fn check(&self, needed: KeyScope, now: DateTime<Utc>) -> Result<(), KeyRefusal> {
        if self.revoked_at.is_some_and(|r| r <= now) {
            return Err(KeyRefusal::Revoked);
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return Err(KeyRefusal::Expired);
        }
        if !self.allows(needed) {
            return Err(KeyRefusal::Scope(needed));
        }
        Ok(())
    }

    /// `active`, `expired` or `revoked` at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> &'static str {
        match self.check(KeyScope::Read, now) {
            Err(KeyRefusal::Revoked) => "revoked",
            Err(KeyRefusal::Expired) => "expired",
            _ => "active",
        }
    }
}

/// A request for a new key, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub label: String,
    pub scopes: Vec<KeyScope>,
    pub expires_in_days: Option<u32>,
}

/// Why a key request is refused (`code` is the API's error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyRequestError {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> KeyRequestError {
    KeyRequestError {
        code,
        message: message.into(),
    }
}

/// Scopes from names (`["read"]` or `"ingest,read"`), sorted and deduplicated.
pub fn parse_scopes<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<KeyScope>, KeyRequestError> {
    let mut out = Vec::new();
    for n in names {
        let k = KeyScope::parse(n).ok_or_else(|| {
            bad(
                "invalid_scope",
                format!("scope '{n}' is not ingest, read or admin"),
            )
        })?;
        out.push(k);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad(
            "invalid_scope",
            "give at least one scope: ingest, read or admin",
        ));
    }
    Ok(out)
}

/// `{"label": "...", "scopes": ["read"], "expires_in_days": 90}`; every field optional
/// (label `api`, scopes `["read"]`: the least a key can do, no expiry).
pub fn new_key_from_body(body: &[u8]) -> Result<NewKey, KeyRequestError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        label: Option<String>,
        scopes: Option<Vec<String>>,
        expires_in_days: Option<serde_json::Value>,
    }
    let b: Body = if body.iter().all(u8::is_ascii_whitespace) {
        Body {
            label: None,
            scopes: None,
            expires_in_days: None,
        }
    } else {
        serde_json::from_slice(body).map_err(|e| bad("invalid_json", e.to_string()))?
    };
    let label = b.label.unwrap_or_else(|| "api".to_owned());
    if label.trim().is_empty()
        || label.chars().count() > MAX_LABEL_CHARS
        || label.chars().any(char::is_control)
    {
        return Err(bad(
            "invalid_label",
            format!("label is 1 to {MAX_LABEL_CHARS} printable characters"),
        ));
    }
    let scopes = match &b.scopes {
        None => vec![KeyScope::Read],
        Some(list) => parse_scopes(list.iter().map(String::as_str))?,
    };
    let expires_in_days = match b.expires_in_days {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| (1..=u64::from(MAX_EXPIRY_DAYS)).contains(d))
                .map(|d| d as u32)
                .ok_or_else(|| {
                    bad(
                        "invalid_expiry",
                        format!("expires_in_days is a whole number from 1 to {MAX_EXPIRY_DAYS}"),
                    )
                })?,
        ),
    };
    Ok(NewKey {
        label,
        scopes,
        expires_in_days,
    })
}

/// `{"overlap_hours": 24}` (optional): how long the old key keeps working.
pub fn overlap_from_body(body: &[u8]) -> Result<u32, KeyRequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_OVERLAP_HOURS);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| bad("invalid_json", e.to_string()))?;
    match v.get("overlap_hours") {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_OVERLAP_HOURS),
        Some(h) => h
            .as_u64()
            .filter(|h| *h <= u64::from(MAX_OVERLAP_HOURS))
            .map(|h| h as u32)
            .ok_or_else(|| {
                bad(
                    "invalid_overlap",
                    format!("overlap_hours is a whole number from 0 to {MAX_OVERLAP_HOURS}"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(scopes: &[KeyScope]) -> KeyGrant {
        KeyGrant {
            tenant: TenantId::parse("acme").unwrap(),
            key_id: "abc".into(),
            label: "t".into(),
            scopes: scopes.to_vec(),
            created_at: Utc::now(),
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_read_key_reads_and_can_never_ingest_or_administer() {
        let now = Utc::now();
        let k = grant(&[KeyScope::Read]);
        assert_eq!(k.check(KeyScope::Read, now), Ok(()));
        assert_eq!(
            k.check(KeyScope::Ingest, now),
            Err(KeyRefusal::Scope(KeyScope::Ingest))
        );
        assert_eq!(
            k.check(KeyScope::Admin, now),
            Err(KeyRefusal::Scope(KeyScope::Admin))
        );
        let admin = grant(&[KeyScope::Admin]);
        assert!(KeyScope::ALL.iter().all(|s| admin.allows(*s)));
    }

    #[test]
    fn revoked_and_expired_keys_are_refused_from_that_instant() {
        let now = Utc::now();
        let mut k = grant(&[KeyScope::Admin]);
        k.expires_at = Some(now + chrono::Duration::seconds(1));
        assert_eq!(k.check(KeyScope::Read, now), Ok(()));
        assert_eq!(
            k.check(KeyScope::Read, now + chrono::Duration::seconds(1)),
            Err(KeyRefusal::Expired)
        );
        k.revoked_at = Some(now);
        assert_eq!(k.check(KeyScope::Read, now), Err(KeyRefusal::Revoked));
        assert_eq!(k.status(now), "revoked");
    }

    #[test]
    fn keys_stored_before_scopes_keep_full_access() {
        let old =
            r#"{"tenant":"acme","key_id":"abc","label":"x","created_at":"2026-01-01T00:00:00Z"}"#;
        let k: KeyGrant = serde_json::from_str(old).unwrap();
        assert_eq!(k.scopes, KeyScope::ALL.to_vec());
    }

    #[test]
    fn key_requests_are_bounded_and_refused_with_codes() {
        let code = |b: &str| new_key_from_body(b.as_bytes()).unwrap_err().code;
        assert_eq!(code(r#"{"scopes":["write"]}"#), "invalid_scope");
        assert_eq!(code(r#"{"scopes":[]}"#), "invalid_scope");
        assert_eq!(code(r#"{"expires_in_days":0}"#), "invalid_expiry");
        assert_eq!(code(r#"{"expires_in_days":1e9}"#), "invalid_expiry");
        assert_eq!(code(r#"{"expires_in_days":3651}"#), "invalid_expiry");
        assert_eq!(
            code(&format!(r#"{{"label":"{}"}}"#, "x".repeat(65))),
            "invalid_label"
        );
        assert_eq!(code(r#"{"owner":"x"}"#), "invalid_json");
        let k = new_key_from_body(br#"{"scopes":["read","ingest","read"],"expires_in_days":30}"#)
            .unwrap();
        assert_eq!(k.scopes, vec![KeyScope::Ingest, KeyScope::Read]);
        assert_eq!(k.expires_in_days, Some(30));
        assert_eq!(new_key_from_body(b"").unwrap().scopes, vec![KeyScope::Read]);
        assert_eq!(overlap_from_body(b"").unwrap(), DEFAULT_OVERLAP_HOURS);
        assert_eq!(
            overlap_from_body(br#"{"overlap_hours":721}"#)
                .unwrap_err()
                .code,
            "invalid_overlap"
        );
    }

    #[test]
    fn keys_are_unique_and_hash_stably() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == 46);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_eq!(hash_key(&a).len(), 64);
    }

    #[test]
    fn only_bearer_credentials_are_read() {
        assert_eq!(bearer(Some("Bearer uk_x")), Some("uk_x"));
        assert_eq!(bearer(Some("bearer  uk_x ")), Some("uk_x"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
