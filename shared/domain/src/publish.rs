//! The alerts topic: SNS behind a small trait. Message attributes carry what
//! subscribers filter on (`kind`, `severity`, `segment`, `owner`, `tenant`).

use crate::alert::{Alert, Rendered};
use async_trait::async_trait;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing to SNS failed: {0}")]
    Sns(String),
    #[error("message could not be encoded: {0}")]
    Encode(String),
}

/// The attributes subscribers' filter policies see.
pub fn attributes(a: &Alert) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("kind", a.kind.as_str().to_owned()),
        ("severity", a.severity.as_str().to_owned()),
        ("segment", a.segment.as_str().to_owned()),
        (
            "owner",
            a.owner.clone().unwrap_or_else(|| "unassigned".to_owned()),
        ),
        ("tenant", a.tenant.to_string()),
        // Lets subscribers drop the rare duplicate (notify crashing between SNS
        // accepting a message and recording it; SNS standard topics cannot dedupe).
        ("alert_key", a.key.chars().take(256).collect()),
    ])
}

/// The SNS message: the email body for email subscribers, the JSON form for all
/// others (SNS `MessageStructure=json`).
pub fn message(r: &Rendered) -> Result<String, PublishError> {
    let json = serde_json::to_string(&r.json).map_err(|e| PublishError::Encode(e.to_string()))?;
    serde_json::to_string(&serde_json::json!({
        "default": json,
        "email": r.body,
        "email-json": json,
        "sqs": json,
    }))
    .map_err(|e| PublishError::Encode(e.to_string()))
}

#[async_trait]
pub trait AlertPublisher: Send + Sync {
    /// Publishes a rendered message with the given filterable attributes.
    async fn publish_with(
        &self,
        attributes: BTreeMap<&'static str, String>,
        rendered: &Rendered,
    ) -> Result<(), PublishError>;

    async fn publish(&self, alert: &Alert, rendered: &Rendered) -> Result<(), PublishError> {
        self.publish_with(attributes(alert), rendered).await
    }
}
