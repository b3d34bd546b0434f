//! The HTTPS transport every HubSpot call goes through ([`HubSpotHttp`]): the CRM
//! write-back, `hubspot setup` and plays.

use async_trait::async_trait;
use domain::hubspot::client::{HttpReply, HttpRequest, HubSpotHttp, RateHeaders};
use std::time::Duration;

/// The real transport: hyper with rustls over `ring` (native roots); plain http allowed
/// for local stand-ins.
pub struct HyperPost {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<bytes::Bytes>,
    >,
    pub timeout: Duration,
}

impl HyperPost {
    pub fn new() -> Result<Self, String> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| e.to_string())?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build(connector),
            timeout: Duration::from_secs(20),
        })
    }
}

#[async_trait]
impl HubSpotHttp for HyperPost {
    async fn send(&self, req: HttpRequest) -> Result<HttpReply, String> {
        use http_body_util::BodyExt;
        let mut builder = http::Request::builder()
            .method(req.method.as_str())
            .uri(&req.url)
            .header("authorization", format!("Bearer {}", req.token));
        if req.body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let body = http_body_util::Full::new(bytes::Bytes::from(req.body.unwrap_or_default()));
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| "HubSpot request timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let rate = RateHeaders::read(header);
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(HttpReply {
            status,
            retry_after,
            rate,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// HubSpot's API base: `HUBSPOT_API_BASE_URL` (e.g. a local stand-in) or the real one.
pub fn api_base() -> String {
    std::env::var("HUBSPOT_API_BASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "https://api.hubapi.com".into())
}

/// The per-tenant write-back tokens as a function reads them: from the Secrets
/// Manager secret in `HUBSPOT_WRITEBACK_TOKENS_ARN` (cached; read on first use, not at
/// init), or the plain `HUBSPOT_WRITEBACK_TOKENS` list; `None` when neither is set.
pub fn tokens_from_env(
    aws: &aws_config::SdkConfig,
) -> Result<Option<domain::health::writeback::Tokens>, String> {
    use domain::health::writeback::{parse_tokens, Tokens};
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(arn) = set("HUBSPOT_WRITEBACK_TOKENS_ARN") {
        let id = domain::secrets::SecretId::parse(&arn).map_err(|e| e.to_string())?;
        return Ok(Some(Tokens::Managed(crate::secrets::cached(aws, id))));
    }
    set("HUBSPOT_WRITEBACK_TOKENS")
        .map(|t| {
            parse_tokens(&t)
                .map(Tokens::Fixed)
                .map_err(|e| format!("HUBSPOT_WRITEBACK_TOKENS: {e}"))
        })
        .transpose()
}

/// A paced, retrying client of [`api_base`] at `HUBSPOT_REQUESTS_PER_10S` requests per
/// rolling 10 s (100 by default).
pub fn client_from_env() -> Result<domain::hubspot::client::HubSpotClient, String> {
    let per_10s = match std::env::var("HUBSPOT_REQUESTS_PER_10S") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("HUBSPOT_REQUESTS_PER_10S '{v}' is not a whole number"))?,
        _ => 100,
    };
    Ok(domain::hubspot::client::HubSpotClient::new(
        api_base(),
        std::sync::Arc::new(HyperPost::new()?),
        per_10s,
    ))
}
