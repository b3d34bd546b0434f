//! AWS SDK configuration. `aws_config` honours `AWS_ENDPOINT_URL` (and the per-service
//! variants), which is how the same code reaches the local emulator.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Loads the standard configuration chain (env, profile, container/instance role).
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Configuration for the local emulator: static dummy credentials (the emulator
/// identifies services from the request signature) and an explicit endpoint.
pub async fn local(endpoint: &str) -> SdkConfig {
    let creds = aws_credential_types::Credentials::from_keys("testing", "testing", None);
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .load()
        .await
}
