//! AWS SDK configuration. `aws_config` honours `AWS_ENDPOINT_URL` (and the per-service
//! variants), which is how the same code reaches the local emulator.
//!
//! The HTTPS client is built here rather than through the SDK's `default-https-client`
//! feature, which would link rustls with aws-lc (a second, larger crypto library than
//! the `ring` that every TLS connection of these functions uses; docs/benchmarks.md).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// The client `default-https-client` builds (hyper over rustls, the platform's roots,
/// the proxy from `HTTPS_PROXY`/`NO_PROXY`, the SDK's timeouts and sleep), with `ring`.
fn https_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Loads the standard configuration chain (env, profile, container/instance role).
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// Configuration for the local emulator: static dummy credentials (the emulator
/// identifies services from the request signature) and an explicit endpoint.
pub async fn local(endpoint: &str) -> SdkConfig {
    let creds = aws_credential_types::Credentials::from_keys("testing", "testing", None);
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .load()
        .await
}
