//! The HTTPS transport the HubSpot CRM write-back posts through ([`HttpPost`]).

use async_trait::async_trait;
use domain::health::writeback::HttpPost;
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
impl HttpPost for HyperPost {
    async fn post_json(
        &self,
        url: &str,
        token: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Option<u64>, String), String> {
        use http_body_util::BodyExt;
        let req = http::Request::post(url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| "HubSpot request timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            retry_after,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }
}
