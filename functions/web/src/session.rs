//! Sessions of the web app: an HMAC-SHA256-signed cookie with a server secret.
//!
//! The cookie holds the tenant, the SHA-256 hash of the key that signed in (what the
//! key table is indexed by; never the key itself), whether it may act as admin, an
//! expiry and a random nonce. Every request looks the key up again by its hash, so a
//! revoked or expired key ends its sessions at once. The CSRF token of a session is an
//! HMAC of its nonce: it needs no storage and cannot be forged without the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Name of the session cookie.
pub const COOKIE: &str = "cockpit_session";
/// How long a session lasts (seconds): one working day.
pub const LIFETIME_SECS: i64 = 8 * 3600;
/// Shortest server secret accepted (bytes).
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Tenant of the key.
    pub t: String,
    /// SHA-256 hash (hex) of the key.
    pub h: String,
    /// Unix seconds after which the session is over.
    pub exp: i64,
    /// Random, per sign-in; the CSRF token is derived from it.
    pub n: String,
}

/// The server secret that signs sessions and CSRF tokens.
#[derive(Clone)]
pub struct SessionKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the session secret must be at least {MIN_SECRET_BYTES} bytes")]
pub struct ShortSecret;

/// Where the session secret comes from: given at start (the local runner, tests), or
/// Secrets Manager (`WEB_SESSION_SECRET_ARN` on Lambda), read on the first request that
/// needs it and cached like the HubSpot secrets, so nothing is fetched at init and a
/// rotated secret is picked up (ending every session) without a redeploy.
pub enum SessionSecret {
    Fixed(SessionKeys),
    Managed(std::sync::Arc<domain::secrets::CachedSecret>),
}

impl SessionSecret {
    /// The keys now: the fixed ones, or the cached secret's value (fetched when the
    /// cache is empty or older than its TTL).
    pub async fn keys(&self) -> Result<SessionKeys, domain::secrets::SecretError> {
        match self {
            SessionSecret::Fixed(k) => Ok(k.clone()),
            SessionSecret::Managed(c) => {
                let value = c.get().await?;
                SessionKeys::new(value.as_bytes()).map_err(|e| {
                    domain::secrets::SecretError::Malformed {
                        id: c.id().to_string(),
                        reason: e.to_string(),
                    }
                })
            }
        }
    }
}

/// Where the Lambda reads its session secret from.
#[derive(Debug)]
pub enum SecretFrom {
    /// `WEB_SESSION_SECRET_ARN` (the template): Secrets Manager, on first use.
    Manager(domain::secrets::SecretId),
    /// `WEB_SESSION_SECRET`: the value itself (at least 32 bytes).
    Value(SessionKeys),
}

/// `WEB_SESSION_SECRET_ARN`, else `WEB_SESSION_SECRET`; neither, a malformed ARN or a
/// short value is an error at start.
pub fn secret_from_env(var: impl Fn(&str) -> Option<String>) -> Result<SecretFrom, String> {
    let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if let Some(arn) = set("WEB_SESSION_SECRET_ARN") {
        return domain::secrets::SecretId::parse(&arn)
            .map(SecretFrom::Manager)
            .map_err(|e| format!("WEB_SESSION_SECRET_ARN: {e}"));
    }
    match set("WEB_SESSION_SECRET") {
        Some(v) => SessionKeys::new(v.as_bytes())
            .map(SecretFrom::Value)
            .map_err(|e| format!("WEB_SESSION_SECRET: {e}")),
        None => Err("WEB_SESSION_SECRET_ARN (or WEB_SESSION_SECRET) is not set".to_owned()),
    }
}

impl From<SessionKeys> for SessionSecret {
    fn from(k: SessionKeys) -> Self {
        SessionSecret::Fixed(k)
    }
}

impl SessionKeys {
    pub fn new(secret: &[u8]) -> Result<Self, ShortSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ShortSecret);
        }
        Ok(Self {
            secret: secret.to_vec(),
        })
    }

    /// A random secret (the local runner: sessions end when it restarts).
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)?;
        Ok(Self { secret: b.to_vec() })
    }

    fn mac(&self, domain: &str, data: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(domain.as_bytes());
        m.update(b"\0");
        m.update(data);
        m
    }

    /// A new session for a key hash, valid from `now` (unix seconds).
    pub fn start(
        &self,
        tenant: &str,
        key_hash: &str,
        now: i64,
    ) -> Result<Session, getrandom::Error> {
        let mut n = [0u8; 16];
        getrandom::fill(&mut n)?;
        Ok(Session {
            t: tenant.to_owned(),
            h: key_hash.to_owned(),
            exp: now + LIFETIME_SECS,
            n: hex::encode(n),
        })
    }

    /// The cookie value: `base64url(json).base64url(hmac)`.
    pub fn seal(&self, s: &Session) -> String {
        let body = serde_json::to_vec(s).unwrap_or_default();
        let tag = self.mac("session", &body).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The session in a cookie value, if it is signed by this secret and not expired.
    pub fn open(&self, cookie: &str, now: i64) -> Option<Session> {
        let (body, tag) = cookie.split_once('.')?;
        let body = URL_SAFE_NO_PAD.decode(body).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac("session", &body).verify_slice(&tag).ok()?;
        let s: Session = serde_json::from_slice(&body).ok()?;
        (s.exp > now).then_some(s)
    }

    /// The CSRF token of a session (hex).
    pub fn csrf(&self, s: &Session) -> String {
        hex::encode(self.mac("csrf", s.n.as_bytes()).finalize().into_bytes())
    }

    /// Whether `token` is the session's CSRF token (constant-time).
    pub fn csrf_ok(&self, s: &Session, token: &str) -> bool {
        match hex::decode(token) {
            Ok(t) => self.mac("csrf", s.n.as_bytes()).verify_slice(&t).is_ok(),
            Err(_) => false,
        }
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// `Set-Cookie` for a session: HttpOnly, SameSite=Strict, path `/app`, and Secure
/// unless served over plain HTTP on the local runner.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/app; Max-Age={LIFETIME_SECS}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/app; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> SessionKeys {
        SessionKeys::new(&[b; 32]).unwrap()
    }

    #[test]
    fn the_lambda_reads_the_secrets_arn_first_else_a_long_enough_value_else_refuses_to_start() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        const ARN: &str = "arn:aws:secretsmanager:eu-west-1:1:secret:web-AbCdEf";
        const LONG: &str = "0123456789abcdef0123456789abcdef";
        match secret_from_env(env(&[
            ("WEB_SESSION_SECRET_ARN", ARN),
            ("WEB_SESSION_SECRET", LONG),
        ])) {
            Ok(SecretFrom::Manager(id)) => assert_eq!(id.as_str(), ARN),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            secret_from_env(env(&[("WEB_SESSION_SECRET", LONG)])),
            Ok(SecretFrom::Value(_))
        ));
        let short = secret_from_env(env(&[("WEB_SESSION_SECRET", "short")])).unwrap_err();
        assert!(short.contains("at least 32 bytes"), "{short}");
        assert!(secret_from_env(env(&[("WEB_SESSION_SECRET_ARN", "has space")])).is_err());
        assert!(secret_from_env(env(&[("WEB_SESSION_SECRET_ARN", " ")])).is_err());
    }

    #[test]
    fn a_sealed_session_opens_with_the_same_secret_until_it_expires() {
        let k = keys(1);
        let s = k.start("acme", "abc123", 1_000).unwrap();
        let c = k.seal(&s);
        assert_eq!(k.open(&c, 1_001), Some(s.clone()));
        assert_eq!(k.open(&c, 1_000 + LIFETIME_SECS), None);
        assert_eq!(keys(2).open(&c, 1_001), None, "another secret");
    }

    #[test]
    fn a_session_whose_body_was_changed_does_not_open() {
        let k = keys(1);
        let s = k.start("acme", "abc123", 1_000).unwrap();
        let c = k.seal(&s);
        let (_, tag) = c.split_once('.').unwrap();
        let forged = Session {
            t: "other".into(),
            ..s
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(k.open(&format!("{body}.{tag}"), 1_001), None);
        assert_eq!(k.open("garbage", 1_001), None);
        assert_eq!(k.open("a.b", 1_001), None);
    }

    #[test]
    fn the_cookie_never_holds_the_key_itself() {
        let k = keys(1);
        let key = "uk_secretsecretsecret";
        let s = k
            .start("acme", &domain::auth::hash_key(key), 1_000)
            .unwrap();
        let c = k.seal(&s);
        let (body, _) = c.split_once('.').unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert!(!json.contains(key) && !c.contains(key), "{json}");
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session_and_one_secret() {
        let k = keys(1);
        let a = k.start("acme", "h", 0).unwrap();
        let b = k.start("acme", "h", 0).unwrap();
        let t = k.csrf(&a);
        assert!(k.csrf_ok(&a, &t));
        assert!(!k.csrf_ok(&b, &t), "another session's token");
        assert!(!keys(2).csrf_ok(&a, &t), "another secret");
        assert!(!k.csrf_ok(&a, ""));
        assert!(!k.csrf_ok(&a, "zz"));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_off_the_local_runner() {
        let c = set_cookie("v", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("v", false).contains("Secure"));
        assert_eq!(
            cookie_value("a=1; cockpit_session=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(SessionKeys::new(b"short").is_err());
    }
}
