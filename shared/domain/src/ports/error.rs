//! What every port returns besides its data: the storage error, classified once in the
//! adapter, and a page of results with its cursor. A leaf: domain modules that only
//! need these import them from here, not from the traits above them.

/// Storage failures, classified once in the adapter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// A 5xx the SDK's own retries did not get past.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("stored item {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("invalid pagination cursor")]
    BadCursor,
    /// A unique claim (e.g. a HubSpot company linked to one account) is held by
    /// another record.
    #[error("{message}")]
    Taken { code: &'static str, message: String },
    #[error("{op} failed: {message}")]
    Service { op: &'static str, message: String },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Throttled(_) | StoreError::Conflict(_) | StoreError::Unavailable(_)
        )
    }
}

/// A page of results and the opaque cursor for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}
