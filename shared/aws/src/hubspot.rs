//! The HTTPS transport every HubSpot call goes through ([`HubSpotHttp`]): the CRM
//! write-back, `hubspot setup` and plays.

use async_trait::async_trait;
use domain::hubspot::client::{HttpReply, HttpRequest, HubSpotHttp, RateHeaders};
use std::time::Duration;

type HyperClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// The real transport: hyper with rustls over `ring` (native roots); plain http allowed
/// for local stand-ins.
///
/// The client, and with it the platform's root certificates (a directory scan and ~150
/// PEM certificates parsed), is built on the first request rather than at start-up: the
/// api function builds a transport at init for `POST /v1/hubspot/setup`, which most
/// containers never serve, and loading the roots there cost every cold start a second
/// load after the AWS SDK's own (docs/benchmarks.md).
pub struct HyperPost {
    client: std::sync::OnceLock<HyperClient>,
    pub timeout: Duration,
}

impl HyperPost {
    /// A transport with its client built now: an error (no readable root certificates)
    /// shows at once.
    pub fn new() -> Result<Self, String> {
        let transport = Self::deferred();
        transport.client()?;
        Ok(transport)
    }

    /// A transport that builds its client on the first request (what the functions use).
    pub fn deferred() -> Self {
        Self {
            client: std::sync::OnceLock::new(),
            timeout: Duration::from_secs(20),
        }
    }

    /// The client, built on first use; an error (no readable root certificates) is
    /// reported to that request and retried by the next.
    fn client(&self) -> Result<&HyperClient, String> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("HubSpot client: no TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        // Two first requests at once may both build one; the first stored is kept.
        Ok(self.client.get_or_init(|| client))
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
        let client = self.client()?;
        let resp = tokio::time::timeout(self.timeout, client.request(request))
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
        std::sync::Arc::new(HyperPost::deferred()),
        per_10s,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::hubspot::client::Method;
    use std::io::{Read, Write};

    /// A one-shot HTTP server (its own thread) answering 204 with a rate header; returns
    /// its base URL.
    fn answer_once() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let reply = "HTTP/1.1 204 No Content\r\nx-hubspot-ratelimit-remaining: 7\r\n\
                         connection: close\r\n\r\n";
            conn.write_all(reply.as_bytes()).unwrap();
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_deferred_transport_builds_its_client_on_the_first_request() {
        let transport = HyperPost::deferred();
        assert!(
            transport.client.get().is_none(),
            "no client (no roots read) before a request"
        );
        let base = answer_once();
        let reply = transport
            .send(HttpRequest {
                method: Method::Get,
                url: format!("{base}/crm/v3/properties/companies"),
                token: "t".into(),
                body: None,
            })
            .await
            .unwrap();
        assert_eq!(reply.status, 204);
        assert_eq!(reply.rate.remaining, Some(7));
        assert!(
            transport.client.get().is_some(),
            "built by the request, then kept"
        );
    }

    #[test]
    fn an_eager_transport_has_its_client_from_the_start() {
        let transport = HyperPost::new().unwrap();
        assert!(transport.client.get().is_some());
    }
}
