//! The events queue: SQS behind a small trait.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("sending to SQS failed: {0}")]
    Send(String),
}

/// Sends message bodies; the result has one entry per body, in order.
#[async_trait]
pub trait EventQueue: Send + Sync {
    async fn send(&self, bodies: &[String]) -> Vec<Result<(), QueueError>>;
}

/// How a consumer's per-message error is reported.
pub trait MessageFailure: std::fmt::Display {
    /// The message can never succeed (it is logged as an error and will reach the
    /// DLQ); otherwise it is a transient failure worth retrying.
    fn is_poison(&self) -> bool;
}
