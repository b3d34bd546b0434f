//! The HTTPS transport every HubSpot call goes through ([`HubSpotHttp`]): the CRM
//! write-back, `hubspot setup` and plays.

use async_trait::async_trait;
use domain::hubspot::client::{HttpReply, HttpRequest, HubSpotHttp, RateHeaders};
use std::time::Duration;

/// The real transport: hyper with rustls (native roots); plain http allowed for
/// local stand-ins.
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
            .with_native_roots()
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
