//! Secrets read at run time (AWS Secrets Manager on AWS and in the local emulator):
//! the HubSpot client secret, the per-tenant write-back tokens and the web session
//! secret. Nothing is fetched at start: the first request that needs a secret fetches
//! it, a cache keeps it for a TTL, and an authentication failure refreshes it early
//! (at most once per [`CachedSecret::min_refresh`]), so a rotated value is picked up
//! without a redeploy.

use std::sync::Arc;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

/// Longest secret id accepted (an ARN is at most 2,048 characters).
pub const MAX_SECRET_ID: usize = 2048;
/// How long a fetched value is used before it is fetched again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Shortest time between two refreshes forced by authentication failures, so a flood
/// of badly signed requests cannot turn into a flood of `GetSecretValue` calls.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);

/// The ARN (or name) of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretId(String);

impl SecretId {
    pub fn parse(v: &str) -> Result<Self, SecretError> {
        let v = v.trim();
        if v.is_empty() || v.len() > MAX_SECRET_ID || v.chars().any(char::is_whitespace) {
            return Err(SecretError::InvalidId(v.chars().take(80).collect()));
        }
        Ok(Self(v.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SecretId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("not a secret id: {0:?}")]
    InvalidId(String),
    #[error("secret {0} does not exist")]
    NotFound(String),
    #[error("reading secret {0} is not allowed for this function")]
    Denied(String),
    #[error("secret {id} could not be read: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("secret {id} is not in the expected form: {reason}")]
    Malformed { id: String, reason: String },
}

impl SecretError {
    pub fn code(&self) -> &'static str {
        match self {
            SecretError::InvalidId(_) => "secret_id_invalid",
            SecretError::NotFound(_) => "secret_not_found",
            SecretError::Denied(_) => "secret_access_denied",
            SecretError::Unavailable { .. } => "secret_unavailable",
            SecretError::Malformed { .. } => "secret_malformed",
        }
    }
}

struct Cached {
    value: Arc<str>,
    fetched: Instant,
}

/// One secret with a TTL cache, fetched on first use.
pub struct CachedSecret {
    source: Arc<dyn SecretSource>,
    id: SecretId,
    pub ttl: Duration,
    pub min_refresh: Duration,
    state: Mutex<Option<Cached>>,
}

impl CachedSecret {
    pub fn new(source: Arc<dyn SecretSource>, id: SecretId) -> Self {
        Self {
            source,
            id,
            ttl: DEFAULT_TTL,
            min_refresh: DEFAULT_MIN_REFRESH,
            state: Mutex::new(None),
        }
    }

    pub fn id(&self) -> &SecretId {
        &self.id
    }

    /// The value: the cached one while younger than the TTL, else fetched again. When
    /// a refetch fails, the value already held is kept (and logged): an expired cache
    /// must not take a working function down while Secrets Manager is unreachable.
    pub async fn get(&self) -> Result<Arc<str>, SecretError> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.as_ref() {
            if c.fetched.elapsed() < self.ttl {
                return Ok(c.value.clone());
            }
        }
        match self.source.fetch(&self.id).await {
            Ok(v) => {
                let value: Arc<str> = Arc::from(v);
                *state = Some(Cached {
                    value: value.clone(),
                    fetched: Instant::now(),
                });
                Ok(value)
            }
            Err(e) => match state.as_ref() {
                Some(c) => {
                    tracing::warn!(secret = %self.id, error = %e, code = e.code(), "secret refresh failed; the cached value is kept");
                    Ok(c.value.clone())
                }
                None => Err(e),
            },
        }
    }

    /// After an authentication failure with the cached value: fetches it again unless
    /// it was fetched less than `min_refresh` ago. `Some(value)` only when the value
    /// changed (the caller then retries with it).
    pub async fn refresh(&self) -> Result<Option<Arc<str>>, SecretError> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.as_ref() {
            if c.fetched.elapsed() < self.min_refresh {
                return Ok(None);
            }
        }
        let fresh: Arc<str> = Arc::from(self.source.fetch(&self.id).await?);
        let changed = state.as_ref().is_none_or(|c| c.value != fresh);
        *state = Some(Cached {
            value: fresh.clone(),
            fetched: Instant::now(),
        });
        if changed {
            tracing::info!(secret = %self.id, "secret value changed; the rotated value is used");
        }
        Ok(changed.then_some(fresh))
    }
}

/// The HubSpot client secrets a secret holds: `{"current": "...", "previous": "..."}`
/// (`previous` only during a rotation; empty strings ignored) or the secret as plain
/// text. Current first. Empty when none is set (webhooks not configured).
pub fn client_secrets(id: &SecretId, value: &str) -> Result<Vec<String>, SecretError> {
    let value = value.trim();
    if !value.starts_with('{') {
        return Ok(Some(value)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .into_iter()
            .collect());
    }
    #[derive(serde::Deserialize)]
    struct Pair {
        #[serde(default)]
        current: String,
        #[serde(default)]
        previous: String,
    }
    let pair: Pair = serde_json::from_str(value).map_err(|e| SecretError::Malformed {
        id: id.to_string(),
        reason: format!("expected {{\"current\": ..., \"previous\": ...}}: {e}"),
    })?;
    Ok([pair.current, pair.previous]
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Where secrets are read (AWS Secrets Manager; the local emulator serves the same
/// API). Callers wrap it in [`CachedSecret`].
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The current value of the secret (its `SecretString`).
    async fn fetch(&self, id: &SecretId) -> Result<String, SecretError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A secret store whose value the test rotates, counting reads.
    #[derive(Default)]
    struct Store {
        value: std::sync::Mutex<String>,
        reads: AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl SecretSource for Store {
        async fn fetch(&self, id: &SecretId) -> Result<String, SecretError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SecretError::Unavailable {
                    id: id.to_string(),
                    reason: "down".into(),
                });
            }
            Ok(self.value.lock().unwrap().clone())
        }
    }

    fn store(v: &str) -> Arc<Store> {
        let s = Arc::new(Store::default());
        *s.value.lock().unwrap() = v.to_owned();
        s
    }

    fn cached(s: &Arc<Store>) -> CachedSecret {
        CachedSecret::new(
            s.clone(),
            SecretId::parse("arn:aws:secretsmanager:x").unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_fetched_until_the_value_is_asked_for_then_it_is_cached_for_the_ttl() {
        let s = store("one");
        let c = cached(&s);
        assert_eq!(s.reads.load(Ordering::SeqCst), 0, "nothing at construction");
        assert_eq!(&*c.get().await.unwrap(), "one");
        assert_eq!(&*c.get().await.unwrap(), "one");
        assert_eq!(s.reads.load(Ordering::SeqCst), 1);
        *s.value.lock().unwrap() = "two".into();
        tokio::time::advance(DEFAULT_TTL - Duration::from_secs(1)).await;
        assert_eq!(&*c.get().await.unwrap(), "one", "still within the TTL");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            &*c.get().await.unwrap(),
            "two",
            "the rotated value after the TTL"
        );
        assert_eq!(s.reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_auth_failure_refreshes_early_but_not_more_than_once_per_min_refresh() {
        let s = store("one");
        let c = cached(&s);
        c.get().await.unwrap();
        *s.value.lock().unwrap() = "two".into();
        assert_eq!(c.refresh().await.unwrap(), None, "fetched a moment ago");
        tokio::time::advance(DEFAULT_MIN_REFRESH).await;
        assert_eq!(c.refresh().await.unwrap().as_deref(), Some("two"));
        assert_eq!(&*c.get().await.unwrap(), "two");
        tokio::time::advance(DEFAULT_MIN_REFRESH).await;
        assert_eq!(c.refresh().await.unwrap(), None, "unchanged: no retry");
        assert_eq!(s.reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refetch_keeps_the_value_held_and_a_first_fetch_failure_is_an_error() {
        let s = store("one");
        let c = cached(&s);
        s.down.store(true, Ordering::SeqCst);
        assert_eq!(c.get().await.unwrap_err().code(), "secret_unavailable");
        s.down.store(false, Ordering::SeqCst);
        c.get().await.unwrap();
        s.down.store(true, Ordering::SeqCst);
        tokio::time::advance(DEFAULT_TTL * 2).await;
        assert_eq!(&*c.get().await.unwrap(), "one");
    }

    #[test]
    fn client_secrets_read_the_current_and_previous_pair_or_plain_text() {
        let id = SecretId::parse("s").unwrap();
        assert_eq!(
            client_secrets(&id, r#"{"current":"new","previous":"old"}"#).unwrap(),
            ["new", "old"]
        );
        assert_eq!(
            client_secrets(&id, r#"{"current":"new","previous":""}"#).unwrap(),
            ["new"]
        );
        assert!(client_secrets(&id, r#"{"current":"","previous":""}"#)
            .unwrap()
            .is_empty());
        assert_eq!(client_secrets(&id, " plain ").unwrap(), ["plain"]);
        assert_eq!(
            client_secrets(&id, "{not json").unwrap_err().code(),
            "secret_malformed"
        );
    }

    #[test]
    fn secret_ids_are_bounded_and_have_no_spaces() {
        assert!(SecretId::parse("").is_err());
        assert!(SecretId::parse("a b").is_err());
        assert!(SecretId::parse(&"a".repeat(MAX_SECRET_ID + 1)).is_err());
        assert!(SecretId::parse("arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf").is_ok());
    }
}
