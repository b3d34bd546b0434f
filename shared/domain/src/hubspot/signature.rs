//! HubSpot request signatures: v3 (`X-HubSpot-Signature-v3`, base64 HMAC-SHA256 over
//! method + URI + body + timestamp) and the legacy v1/v2 (`X-HubSpot-Signature`, hex
//! SHA-256 of secret + body, or secret + method + URI + body). Comparisons are
//! constant-time; several secrets are tried so a client secret can be rotated.
//!
//! v3 is required by default. The legacy versions carry no timestamp (a captured
//! request stays valid forever) and v1 does not even cover the URI, so a deployment
//! accepts them only when it opts in ([`LegacyVersions`]) and guards against replays
//! ([`super::replay`], docs/adr/0005).

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// HubSpot refuses to sign older requests; so do we (milliseconds).
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// Clock skew tolerated for timestamps from the future (milliseconds).
pub const MAX_FUTURE_MS: i64 = 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-HubSpot-Signature-v3 or X-HubSpot-Signature header")]
    Missing,
    #[error("X-HubSpot-Request-Timestamp is missing or not a number")]
    BadTimestamp,
    #[error("the request timestamp is older than 5 minutes")]
    Expired,
    #[error("the request timestamp is in the future")]
    FromTheFuture,
    #[error("X-HubSpot-Signature-Version must be v1 or v2")]
    UnknownVersion,
    #[error(
        "{0} signatures are not accepted by this deployment; sign with X-HubSpot-Signature-v3"
    )]
    VersionNotAllowed(Version),
    #[error("the signature does not match")]
    Mismatch,
    #[error("no HubSpot client secret is configured")]
    NotConfigured,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::BadTimestamp => "invalid_timestamp",
            SignatureError::Expired => "expired_timestamp",
            SignatureError::FromTheFuture => "future_timestamp",
            SignatureError::UnknownVersion => "unknown_signature_version",
            SignatureError::VersionNotAllowed(_) => "signature_version_not_allowed",
            SignatureError::Mismatch => "invalid_signature",
            SignatureError::NotConfigured => "webhooks_not_configured",
        }
    }
}

/// A HubSpot signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// SHA-256 of secret + body: covers neither the URI nor a time.
    V1,
    /// SHA-256 of secret + method + URI + body: covers the URI, not a time.
    V2,
    /// HMAC-SHA256 of method + URI + body + timestamp.
    V3,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::V3 => "v3",
        }
    }

    /// Whether the signature covers the URI, and so its query string.
    pub fn covers_uri(self) -> bool {
        self != Version::V1
    }

    /// Whether the signature carries no time, so a captured request can be replayed.
    pub fn is_legacy(self) -> bool {
        self != Version::V3
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legacy versions a deployment accepts besides v3 (none by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegacyVersions {
    pub v1: bool,
    pub v2: bool,
}

impl LegacyVersions {
    pub const NONE: LegacyVersions = LegacyVersions {
        v1: false,
        v2: false,
    };

    /// Reads a setting such as `""`, `off`, `v2` or `v1,v2`.
    pub fn parse(setting: &str) -> Result<Self, String> {
        let mut out = Self::NONE;
        for part in setting.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "v1" => out.v1 = true,
                "v2" => out.v2 = true,
                "off" | "none" => {}
                _ => {
                    return Err(format!(
                        "'{part}' is not a legacy signature version (use v1, v2, v1,v2 or off)"
                    ))
                }
            }
        }
        Ok(out)
    }

    pub fn allows(self, version: Version) -> bool {
        match version {
            Version::V1 => self.v1,
            Version::V2 => self.v2,
            Version::V3 => true,
        }
    }

    pub fn any(self) -> bool {
        self.v1 || self.v2
    }
}

/// The signature-relevant parts of a request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub method: &'a str,
    /// The full public URI HubSpot called (scheme, host, path, query).
    pub uri: &'a str,
    pub body: &'a [u8],
    pub v3: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub legacy: Option<&'a str>,
    pub version: Option<&'a str>,
}

/// HubSpot decodes these escapes in the URI before signing (v3).
fn decode_uri(uri: &str) -> String {
    const MAP: [(&str, &str); 12] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ];
    let mut out = uri.to_owned();
    for (from, to) in MAP {
        out = out
            .replace(from, to)
            .replace(&from.to_ascii_lowercase(), to);
    }
    out
}

pub fn v3_signature(secret: &str, method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(method.as_bytes());
    mac.update(decode_uri(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn v1_signature(secret: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

pub fn v2_signature(secret: &str, method: &str, uri: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(method.as_bytes());
    h.update(uri.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Verifies a request against any of `secrets` (current first, then the one being
/// rotated out). `now_ms` is the current time in epoch milliseconds. A request with a
/// v3 signature is checked with v3 only; one without is checked with its legacy
/// version, and only if `legacy` allows that version.
pub fn verify(
    req: &Signed<'_>,
    secrets: &[String],
    now_ms: i64,
    legacy: LegacyVersions,
) -> Result<Version, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NotConfigured);
    }
    if let Some(given) = req.v3 {
        let ts = req.timestamp.ok_or(SignatureError::BadTimestamp)?;
        let ms: i64 = ts
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        if now_ms.saturating_sub(ms) > MAX_AGE_MS {
            return Err(SignatureError::Expired);
        }
        if ms.saturating_sub(now_ms) > MAX_FUTURE_MS {
            return Err(SignatureError::FromTheFuture);
        }
        let given = given.trim();
        return secrets
            .iter()
            .any(|s| same(&v3_signature(s, req.method, req.uri, req.body, ts), given))
            .then_some(Version::V3)
            .ok_or(SignatureError::Mismatch);
    }
    let given = req
        .legacy
        .ok_or(SignatureError::Missing)?
        .trim()
        .to_ascii_lowercase();
    let version = match req.version.map(str::trim).unwrap_or("v1") {
        "v1" => Version::V1,
        "v2" => Version::V2,
        _ => return Err(SignatureError::UnknownVersion),
    };
    if !legacy.allows(version) {
        return Err(SignatureError::VersionNotAllowed(version));
    }
    let expected = |s: &str| match version {
        Version::V2 => v2_signature(s, req.method, req.uri, req.body),
        _ => v1_signature(s, req.body),
    };
    secrets
        .iter()
        .any(|s| same(&expected(s), &given))
        .then_some(version)
        .ok_or(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed with Python's hmac/hashlib from HubSpot's published algorithm,
    // independently of this implementation.
    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const BODY: &str = r#"[{"eventId":1,"subscriptionId":12,"portalId":62515,"appId":54321,"occurredAt":1795608000000,"subscriptionType":"ticket.creation","attemptNumber":0,"objectId":901,"changeSource":"CRM"}]"#;
    const URI: &str = "https://hooks.example.com/v1/webhooks/hubspot";
    const TS: &str = "1795608000000";
    const V3: &str = "aNSbK5akciyaO+i7f0aaFM1hn4Z0kX2tepwLi/0x1XI=";
    const V2: &str = "8667c6d11d6c3e8f64ecd2f19b14262d1a90872b08cd3b0e9b3f6796a4ab5ab7";
    const V1: &str = "4073e9dbe338998da79c8c209cb883579d87a1a98025767737e9248322e42345";
    const NOW: i64 = 1_795_608_060_000;
    const V3_ONLY: LegacyVersions = LegacyVersions::NONE;
    const BOTH: LegacyVersions = LegacyVersions { v1: true, v2: true };

    fn v3<'a>(body: &'a str, uri: &'a str, sig: &'a str, ts: &'a str) -> Signed<'a> {
        Signed {
            method: "POST",
            uri,
            body: body.as_bytes(),
            v3: Some(sig),
            timestamp: Some(ts),
            legacy: None,
            version: None,
        }
    }

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_published_algorithms_reproduce_independent_vectors() {
        assert_eq!(v3_signature(SECRET, "POST", URI, BODY.as_bytes(), TS), V3);
        assert_eq!(v2_signature(SECRET, "POST", URI, BODY.as_bytes()), V2);
        assert_eq!(v1_signature(SECRET, BODY.as_bytes()), V1);
    }

    #[test]
    fn a_valid_v3_request_passes_and_any_tampering_fails() {
        let ok = secrets(&[SECRET]);
        assert_eq!(
            verify(&v3(BODY, URI, V3, TS), &ok, NOW, V3_ONLY),
            Ok(Version::V3)
        );
        let tampered_body = BODY.replace("901", "902");
        assert_eq!(
            verify(&v3(&tampered_body, URI, V3, TS), &ok, NOW, V3_ONLY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                &v3(BODY, "https://evil.example.com/v1/webhooks/hubspot", V3, TS),
                &ok,
                NOW,
                V3_ONLY
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&v3(BODY, URI, V3, "1795608000001"), &ok, NOW, V3_ONLY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&v3(BODY, URI, V3, TS), &secrets(&["other"]), NOW, V3_ONLY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&v3(BODY, URI, V3, TS), &ok, NOW + MAX_AGE_MS, V3_ONLY),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(&v3(BODY, URI, V3, TS), &ok, NOW - 10 * 60 * 1000, V3_ONLY),
            Err(SignatureError::FromTheFuture)
        );
        assert_eq!(
            verify(&v3(BODY, URI, V3, "yesterday"), &ok, NOW, V3_ONLY),
            Err(SignatureError::BadTimestamp)
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_the_number_range_are_refused_without_overflow() {
        // Found by reading the fuzz target's reach: `now - ts` overflowed in debug builds.
        let ok = secrets(&[SECRET]);
        let min = i64::MIN.to_string();
        let max = i64::MAX.to_string();
        assert_eq!(
            verify(&v3(BODY, URI, V3, &min), &ok, NOW, V3_ONLY),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(&v3(BODY, URI, V3, &max), &ok, NOW, V3_ONLY),
            Err(SignatureError::FromTheFuture)
        );
    }

    #[test]
    fn the_old_secret_still_verifies_during_a_rotation() {
        assert_eq!(
            verify(
                &v3(BODY, URI, V3, TS),
                &secrets(&["new-secret", SECRET]),
                NOW,
                V3_ONLY
            ),
            Ok(Version::V3)
        );
    }

    fn legacy(sig: &'static str, version: Option<&'static str>) -> Signed<'static> {
        Signed {
            method: "POST",
            uri: URI,
            body: BODY.as_bytes(),
            v3: None,
            timestamp: None,
            legacy: Some(sig),
            version,
        }
    }

    #[test]
    fn legacy_signatures_are_refused_unless_the_deployment_opts_in() {
        let ok = secrets(&[SECRET]);
        for (sig, version, v) in [
            (V1, None, Version::V1),
            (V1, Some("v1"), Version::V1),
            (V2, Some("v2"), Version::V2),
        ] {
            let refused = verify(&legacy(sig, version), &ok, NOW, V3_ONLY);
            assert_eq!(refused, Err(SignatureError::VersionNotAllowed(v)));
            assert_eq!(refused.unwrap_err().code(), "signature_version_not_allowed");
        }
        let only_v2 = LegacyVersions::parse("v2").unwrap();
        assert_eq!(
            verify(&legacy(V1, None), &ok, NOW, only_v2),
            Err(SignatureError::VersionNotAllowed(Version::V1))
        );
        assert_eq!(
            verify(&legacy(V2, Some("v2")), &ok, NOW, only_v2),
            Ok(Version::V2)
        );
        // A request carrying both is judged by its v3 signature alone.
        let both_headers = Signed {
            legacy: Some(V1),
            version: Some("v1"),
            ..v3(BODY, URI, V3, TS)
        };
        assert_eq!(verify(&both_headers, &ok, NOW, V3_ONLY), Ok(Version::V3));
    }

    #[test]
    fn legacy_settings_name_the_versions_a_deployment_accepts() {
        assert_eq!(LegacyVersions::parse(""), Ok(LegacyVersions::NONE));
        assert_eq!(LegacyVersions::parse("off"), Ok(LegacyVersions::NONE));
        assert_eq!(
            LegacyVersions::parse("v2"),
            Ok(LegacyVersions {
                v1: false,
                v2: true
            })
        );
        assert_eq!(LegacyVersions::parse(" V1 , v2 "), Ok(BOTH));
        assert!(LegacyVersions::parse("v3").is_err());
        assert!(LegacyVersions::parse("yes").is_err());
    }

    #[test]
    fn legacy_v1_and_v2_signatures_are_checked_by_their_version_header_once_allowed() {
        let ok = secrets(&[SECRET]);
        assert_eq!(verify(&legacy(V1, None), &ok, NOW, BOTH), Ok(Version::V1));
        assert_eq!(
            verify(&legacy(V1, Some("v1")), &ok, NOW, BOTH),
            Ok(Version::V1)
        );
        assert_eq!(
            verify(&legacy(V2, Some("v2")), &ok, NOW, BOTH),
            Ok(Version::V2)
        );
        assert_eq!(
            verify(&legacy(V1, Some("v2")), &ok, NOW, BOTH),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&legacy(V2, Some("v9")), &ok, NOW, BOTH),
            Err(SignatureError::UnknownVersion)
        );
        let none = Signed {
            method: "POST",
            uri: URI,
            body: b"",
            v3: None,
            timestamp: None,
            legacy: None,
            version: None,
        };
        assert_eq!(verify(&none, &ok, NOW, BOTH), Err(SignatureError::Missing));
        assert_eq!(
            verify(&legacy(V1, None), &[], NOW, BOTH),
            Err(SignatureError::NotConfigured)
        );
    }

    #[test]
    fn encoded_characters_in_the_uri_are_decoded_before_signing() {
        let encoded = "https://hooks.example.com/v1/webhooks/hubspot%3Fat%3A1%40x";
        let plain = "https://hooks.example.com/v1/webhooks/hubspot?at:1@x";
        assert_eq!(
            v3_signature(SECRET, "POST", encoded, b"", TS),
            v3_signature(SECRET, "POST", plain, b"", TS)
        );
    }
}
