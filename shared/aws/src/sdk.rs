//! AWS SDK configuration. Two ways to build it:
//!
//! - [`lambda`], for the seven Lambda functions: built by hand from the process
//!   environment only (credentials, region, endpoint URL, retry settings), so the
//!   artifacts do not link aws-config's credential chain (profile files, web identity
//!   and assume-role through STS, ECS, IMDS) that Lambda never uses.
//!   What it reads and what it does not: [`lambda_from`] and docs/deploy.md.
//! - [`load`], for the `usage-local` CLI with `--aws`: aws-config's full default chain,
//!   because operators run it with profiles and assumed roles.
//!
//! Both honour `AWS_ENDPOINT_URL` and its per-service variants
//! (`AWS_ENDPOINT_URL_DYNAMODB`, ...), which is how the same code reaches the emulator.
//!
//! The HTTPS client is built here rather than through the SDK's `default-https-client`
//! feature, which would link rustls with aws-lc (a second, larger crypto library than
//! the `ring` that every TLS connection of these functions uses; docs/benchmarks.md).

use aws_config::identity::IdentityCache;
use aws_config::retry::{RetryConfig, RetryMode};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_runtime::env_config::EnvConfigValue;
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_types::os_shim_internal::Env;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::str::FromStr;
use std::time::Duration;

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

/// Loads aws-config's default chain (environment, profile files, web identity,
/// container and instance roles; its `sso` feature is off). For the `usage-local` CLI; the Lambda functions use
/// [`lambda`].
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

/// The configuration a Lambda function needs, from the process environment: see
/// [`lambda_from`].
pub fn lambda() -> Result<SdkConfig, LambdaConfigError> {
    lambda_from(Env::real()).inspect_err(
        |error| tracing::error!(%error, "no AWS SDK configuration from the environment"),
    )
}

/// Why the environment does not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum LambdaConfigError {
    #[error("no AWS region: set AWS_REGION (Lambda sets it) or AWS_DEFAULT_REGION")]
    NoRegion,
    #[error(
        "{0} is not set: the Lambda functions take their AWS credentials from the \
         environment only (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN; \
         Lambda sets them from the function's role), see docs/deploy.md"
    )]
    NoCredentials(&'static str),
    #[error("AWS_MAX_ATTEMPTS must be a whole number of at least 1, not {0:?}")]
    MaxAttempts(String),
    #[error("AWS_RETRY_MODE: {0}")]
    RetryMode(String),
}

/// aws-config's connect timeout when nothing sets one (its `timeout_config` default
/// provider); no other timeout is set by default.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// Builds the configuration from `env` as `aws_config::defaults(BehaviorVersion::latest())`
/// builds it from the environment alone, with [`https_client`]:
///
/// - region: `AWS_REGION`, else `AWS_DEFAULT_REGION`; none is an error (the default
///   chain would ask the profile files, then IMDS);
/// - credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
///   `AWS_SESSION_TOKEN` and `AWS_ACCOUNT_ID`, read once here (blank counts as unset);
///   missing keys are an error at start rather than at the first request. No profile
///   files, web identity token, ECS container credentials or IMDS;
/// - endpoint: `AWS_ENDPOINT_URL`, and per service `AWS_ENDPOINT_URL_<SERVICE_ID>`
///   first (`AWS_ENDPOINT_URL_DYNAMODB`, `_SQS`, `_SNS`, `_SECRETS_MANAGER`), read
///   the way aws-config reads them (aws-runtime's `EnvConfigValue`) but without profile
///   files; `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is not read;
/// - retries: standard mode, 3 attempts, overridden by `AWS_MAX_ATTEMPTS` and
///   `AWS_RETRY_MODE` (invalid values are errors; aws-config panics on them);
///   `AWS_NEW_RETRIES_2026` is not read;
/// - timeouts: aws-config's default (3.1 s to connect, nothing else);
/// - identity cache, sleep, time source and behaviour version as aws-config sets them;
///   stalled-stream protection left unset, so each client applies its default (on),
///   as with aws-config.
///
/// Not read (each client keeps its own default): `AWS_USE_FIPS_ENDPOINT`,
/// `AWS_USE_DUALSTACK_ENDPOINT`, `AWS_SDK_UA_APP_ID`, the request-compression,
/// checksum, clock-skew, account-ID-endpoint, auth-scheme and SigV4a settings.
pub fn lambda_from(env: Env) -> Result<SdkConfig, LambdaConfigError> {
    let region = set(&env, "AWS_REGION")
        .or_else(|| set(&env, "AWS_DEFAULT_REGION"))
        .ok_or(LambdaConfigError::NoRegion)?;
    let credentials = env_credentials(&env)?;
    let retry = retry_config(&env)?;
    let mut builder = SdkConfig::builder()
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(IdentityCache::lazy().build())
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .build(),
        )
        .time_source(SharedTimeSource::default())
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client());
    builder.set_sleep_impl(default_async_sleep());
    builder.set_endpoint_url(set(&env, "AWS_ENDPOINT_URL"));
    Ok(builder.service_config(EnvEndpoints(env)).build())
}

/// The variable's value unless it is unset or blank.
fn set(env: &Env, name: &str) -> Option<String> {
    env.get(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_credentials(env: &Env) -> Result<Credentials, LambdaConfigError> {
    let access_key = set(env, "AWS_ACCESS_KEY_ID")
        .ok_or(LambdaConfigError::NoCredentials("AWS_ACCESS_KEY_ID"))?;
    let secret_key = set(env, "AWS_SECRET_ACCESS_KEY")
        .ok_or(LambdaConfigError::NoCredentials("AWS_SECRET_ACCESS_KEY"))?;
    let mut builder = Credentials::builder()
        .access_key_id(access_key)
        .secret_access_key(secret_key)
        // The name aws-config's environment provider gives them.
        .provider_name("EnvironmentVariable");
    builder.set_session_token(set(env, "AWS_SESSION_TOKEN").map(|t| t.trim().to_owned()));
    builder.set_account_id(set(env, "AWS_ACCOUNT_ID").map(|a| a.trim().into()));
    Ok(builder.build())
}

fn retry_config(env: &Env) -> Result<RetryConfig, LambdaConfigError> {
    let mut retry = RetryConfig::standard();
    if let Some(raw) = set(env, "AWS_MAX_ATTEMPTS") {
        match raw.parse::<u32>() {
            Ok(attempts) if attempts > 0 => retry = retry.with_max_attempts(attempts),
            _ => return Err(LambdaConfigError::MaxAttempts(raw)),
        }
    }
    if let Some(raw) = set(env, "AWS_RETRY_MODE") {
        let mode =
            RetryMode::from_str(&raw).map_err(|e| LambdaConfigError::RetryMode(e.to_string()))?;
        retry = retry.with_retry_mode(mode);
    }
    Ok(retry)
}

/// Per-service settings from the environment only (aws-config's `EnvServiceConfig`
/// without profile files): each client asks it for `AWS_ENDPOINT_URL`, which resolves
/// `AWS_ENDPOINT_URL_<SERVICE_ID>` first.
#[derive(Debug)]
struct EnvEndpoints(Env);

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        let (value, _source) = EnvConfigValue::new()
            .env(key.env())
            .service_id(key.service_id())
            .load(&self.0, None)?;
        Some(value.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;

    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDLAMBDA"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
    ];

    fn with(extra: &[(&str, &str)]) -> Env {
        let mut vars: Vec<(&str, &str)> = LAMBDA.to_vec();
        vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        vars.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        Env::from_slice(&vars)
    }

    /// A server for one HTTP request, answering it with `body` as DynamoDB would; its
    /// URL, and the request's head as it arrived.
    async fn one_request(body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let head = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(reply.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, head)
    }

    /// `ListTables` through a client built from `config`; the request head the server saw.
    async fn list_tables(config: &SdkConfig, head: tokio::task::JoinHandle<String>) -> String {
        let tables = aws_sdk_dynamodb::Client::new(config)
            .list_tables()
            .send()
            .await
            .expect("ListTables answered");
        assert_eq!(tables.table_names(), ["usage"]);
        head.await.expect("the server saw the request")
    }

    fn sqs_endpoint(config: &SdkConfig) -> Option<String> {
        let key = ServiceConfigKey::builder()
            .service_id("SQS")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .expect("key");
        config.service_config().and_then(|c| c.load_config(key))
    }

    async fn credentials(config: &SdkConfig) -> Credentials {
        config
            .credentials_provider()
            .expect("a provider")
            .provide_credentials()
            .await
            .expect("credentials")
    }

    #[tokio::test]
    async fn the_lambda_environment_gives_region_and_session_credentials() {
        let config = lambda_from(with(&[])).expect("config");
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-1"));
        let creds = credentials(&config).await;
        assert_eq!(creds.access_key_id(), "AKIDLAMBDA");
        assert_eq!(creds.secret_access_key(), "secret");
        assert_eq!(creds.session_token(), Some("token"));
        assert_eq!(config.behavior_version(), Some(BehaviorVersion::latest()));
        assert!(config.http_client().is_some());
        assert!(config.sleep_impl().is_some());
        assert!(config.identity_cache().is_some());
    }

    #[test]
    fn aws_default_region_is_read_when_aws_region_is_not_set() {
        let env = with(&[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "us-west-2")]);
        let config = lambda_from(env).expect("config");
        assert_eq!(config.region().map(Region::as_ref), Some("us-west-2"));
    }

    #[test]
    fn without_a_region_the_configuration_is_refused() {
        let err = lambda_from(with(&[("AWS_REGION", "")])).expect_err("no region");
        assert!(matches!(err, LambdaConfigError::NoRegion));
        assert!(err.to_string().contains("AWS_REGION"), "{err}");
    }

    #[test]
    fn without_keys_in_the_environment_the_configuration_is_refused() {
        let err = lambda_from(with(&[("AWS_ACCESS_KEY_ID", "")])).expect_err("no key");
        assert!(
            err.to_string().contains("AWS_ACCESS_KEY_ID is not set"),
            "{err}"
        );
        let err = lambda_from(with(&[("AWS_SECRET_ACCESS_KEY", " ")])).expect_err("blank");
        assert!(
            err.to_string().contains("AWS_SECRET_ACCESS_KEY is not set"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_session_token_is_optional() {
        let config = lambda_from(with(&[("AWS_SESSION_TOKEN", "")])).expect("config");
        let creds = credentials(&config).await;
        assert_eq!(creds.session_token(), None);
    }

    #[test]
    fn without_an_endpoint_url_the_clients_resolve_aws_endpoints() {
        let config = lambda_from(with(&[])).expect("config");
        assert_eq!(config.endpoint_url(), None);
        assert_eq!(sqs_endpoint(&config), None);
    }

    #[tokio::test]
    async fn requests_go_to_aws_endpoint_url_signed_with_the_environment_keys() {
        let (url, head) = one_request(r#"{"TableNames":["usage"]}"#).await;
        let config = lambda_from(with(&[("AWS_ENDPOINT_URL", &url)])).expect("config");
        assert_eq!(config.endpoint_url(), Some(url.as_str()));
        let head = list_tables(&config, head).await;
        assert!(head.starts_with("POST / HTTP/1.1"), "{head}");
        assert!(
            head.contains("Credential=AKIDLAMBDA/") && head.contains("/eu-west-1/dynamodb/"),
            "{head}"
        );
        assert!(head.contains("x-amz-security-token: token"), "{head}");
    }

    #[tokio::test]
    async fn a_service_specific_endpoint_url_wins_for_that_service_only() {
        let (url, head) = one_request(r#"{"TableNames":["usage"]}"#).await;
        let env = with(&[
            // Nothing listens there: DynamoDB must not go to it.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ENDPOINT_URL_DYNAMODB", &url),
        ]);
        let config = lambda_from(env).expect("config");
        list_tables(&config, head).await;
        assert_eq!(sqs_endpoint(&config).as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn retries_are_standard_with_three_attempts_unless_the_environment_says_otherwise() {
        let config = lambda_from(with(&[])).expect("config");
        let retry = config.retry_config().expect("retry config");
        assert_eq!(retry, &RetryConfig::standard());
        assert_eq!(retry.max_attempts(), 3);

        let env = with(&[("AWS_MAX_ATTEMPTS", "5"), ("AWS_RETRY_MODE", "adaptive")]);
        let config = lambda_from(env).expect("config");
        let retry = config.retry_config().expect("retry config");
        assert_eq!(retry.max_attempts(), 5);
        assert_eq!(retry.mode(), RetryMode::Adaptive);
    }

    #[test]
    fn invalid_retry_settings_are_refused() {
        for attempts in ["0", "many", "-1"] {
            let err = lambda_from(with(&[("AWS_MAX_ATTEMPTS", attempts)])).expect_err(attempts);
            assert!(matches!(err, LambdaConfigError::MaxAttempts(_)), "{err}");
        }
        let err = lambda_from(with(&[("AWS_RETRY_MODE", "eager")])).expect_err("mode");
        assert!(matches!(err, LambdaConfigError::RetryMode(_)), "{err}");
    }

    #[tokio::test]
    async fn the_timeouts_are_aws_configs_defaults() {
        let config = lambda_from(with(&[])).expect("config");
        let defaults = aws_config::default_provider::timeout_config::default_provider()
            .timeout_config()
            .await;
        assert_eq!(config.timeout_config(), Some(&defaults));
    }
}
