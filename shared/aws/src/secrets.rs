//! [`SecretSource`] on AWS Secrets Manager (`GetSecretValue`), errors classified once.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use domain::ports::SecretSource;
use domain::secrets::{SecretError, SecretId};

pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn fetch(&self, id: &SecretId) -> Result<String, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id.as_str())
            .send()
            .await
            .map_err(|e| {
                let code = e.code().unwrap_or_default().to_owned();
                let status = e.raw_response().map(|r| r.status().as_u16());
                let reason = aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string();
                tracing::warn!(secret = %id, code = %code, error = %reason, "GetSecretValue failed");
                match code.as_str() {
                    "ResourceNotFoundException" => SecretError::NotFound(id.to_string()),
                    "AccessDeniedException" | "AccessDenied" => {
                        SecretError::Denied(id.to_string())
                    }
                    // An IAM refusal whose body is not in the service's error shape.
                    _ if status == Some(403) => SecretError::Denied(id.to_string()),
                    _ => SecretError::Unavailable {
                        id: id.to_string(),
                        reason,
                    },
                }
            })?;
        out.secret_string.ok_or_else(|| SecretError::Malformed {
            id: id.to_string(),
            reason: "the secret has no SecretString (binary secrets are not read)".into(),
        })
    }
}

/// A cached secret read with `aws`'s identity (no request is made until first use).
pub fn cached(
    aws: &aws_config::SdkConfig,
    id: SecretId,
) -> std::sync::Arc<domain::secrets::CachedSecret> {
    std::sync::Arc::new(domain::secrets::CachedSecret::new(
        std::sync::Arc::new(SecretsManager::new(aws_sdk_secretsmanager::Client::new(
            aws,
        ))),
        id,
    ))
}
