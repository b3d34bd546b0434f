//! Secrets live in Secrets Manager (the emulator, IAM enforced): each function reads
//! only its own secret with its own role, on first use, and a rotated value is picked
//! up without a restart.

use crate::cockpit::web_request as app_request;
use domain::ports::SecretSource;
use domain::secrets::{CachedSecret, SecretError, SecretId};
use e2e::{decode, TestStack, HUBSPOT_SECRET};
use local::iam::Revoke;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const PORTAL: u64 = 70_001;
const BASE: &str = "https://hooks.example.com";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A one-change HubSpot batch signed (v3) with `secret`.
fn webhook(secret: &str) -> lambda_http::Request {
    webhook_for(PORTAL, secret)
}

/// A one-change HubSpot batch of `portal` signed (v3) with `secret`.
pub(crate) fn webhook_for(portal: u64, secret: &str) -> lambda_http::Request {
    let body = json!([{"eventId": 1, "portalId": portal, "occurredAt": now_ms() - 1000,
        "subscriptionType": "ticket.creation", "objectId": 7}])
    .to_string();
    e2e::signed_hubspot_request(secret, body.into_bytes())
}

fn arn(t: &TestStack, logical: &str) -> SecretId {
    SecretId::parse(
        t.provisioned
            .reference(logical)
            .expect("secret provisioned"),
    )
    .unwrap()
}

/// Secrets Manager as `function`'s role sees it.
fn source_of(t: &TestStack, function: &str) -> Arc<aws::secrets::SecretsManager> {
    let cfg = t
        .provisioned
        .function_config(&t.aws, function)
        .expect("role");
    Arc::new(aws::secrets::SecretsManager::new(
        aws_sdk_secretsmanager::Client::new(&cfg),
    ))
}

/// The operator's rotation: `aws secretsmanager put-secret-value`.
pub(crate) async fn rotate(t: &TestStack, logical: &str, value: &str) {
    aws_sdk_secretsmanager::Client::new(&t.aws)
        .put_secret_value()
        .secret_id(arn(t, logical).as_str())
        .secret_string(value)
        .send()
        .await
        .expect("put-secret-value");
}

/// An ingest handler of this stack reading the client secret with ingest's role;
/// `min_refresh` zero so the test need not wait out the refresh interval.
fn ingest_reading_the_secret(t: &TestStack) -> ingest::Ingest {
    let mut secret = CachedSecret::new(
        source_of(t, "IngestFunction"),
        arn(t, "HubspotClientSecretStore"),
    );
    secret.min_refresh = Duration::ZERO;
    let mut i = ingest::Ingest::new(t.stack.store.clone(), t.stack.queue.clone());
    i.hubspot = Some(ingest::HubspotConfig {
        secrets: ingest::ClientSecrets::Managed(Arc::new(secret)),
        public_base_url: Some(BASE.to_owned()),
        portals: t.stack.store.clone(),
        legacy: None,
    });
    i
}

async fn mapped_stack(t: TestStack) -> TestStack {
    t.stack
        .store
        .map_portal(PORTAL, &t.tenant)
        .await
        .expect("portal");
    t
}

#[tokio::test]
async fn a_rotated_hubspot_client_secret_is_picked_up_without_a_restart() {
    let t = mapped_stack(TestStack::fresh().await).await;
    let ingest = ingest_reading_the_secret(&t);
    let (s, v) = decode(ingest.handle(webhook(HUBSPOT_SECRET)).await);
    assert_eq!(s, 200, "the provisioned secret verifies: {v}");

    rotate(
        &t,
        "HubspotClientSecretStore",
        r#"{"current":"rotated-secret","previous":""}"#,
    )
    .await;
    let (s, v) = decode(ingest.handle(webhook("rotated-secret")).await);
    assert_eq!(s, 200, "the new secret is read again on the mismatch: {v}");
    let (s, v) = decode(ingest.handle(webhook(HUBSPOT_SECRET)).await);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("invalid_signature")),
        "the rotated-out secret no longer verifies: {v}"
    );
    assert_eq!(t.denials(), Vec::new());
}

#[tokio::test]
async fn without_its_grant_ingest_cannot_read_the_client_secret_and_events_are_still_accepted() {
    let t = mapped_stack(
        TestStack::with_revoked(vec![Revoke::action(
            "IngestFunction",
            "secretsmanager:GetSecretValue",
        )])
        .await,
    )
    .await;
    let (s, v) = decode(t.stack.ingest.handle(webhook(HUBSPOT_SECRET)).await);
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("webhooks_unavailable")),
        "{v}"
    );
    let events = json!([{"id": "e1", "account": "a1", "meter": "api_calls"}]).to_string();
    let (s, v) = t.call("POST", "/v1/events", Some(&events)).await;
    assert_eq!((s, v["accepted"].as_u64()), (202, Some(1)), "{v}");
    assert!(
        t.denials().contains(&(
            "IngestFunction".into(),
            "GetSecretValue".into(),
            "secretsmanager:GetSecretValue".into(),
            "HubspotClientSecretStore".into()
        )),
        "{:?}",
        t.denials()
    );
}

#[tokio::test]
async fn each_function_reads_only_the_secrets_its_policy_names() {
    let t = TestStack::fresh().await;
    let client = arn(&t, "HubspotClientSecretStore");
    let tokens = arn(&t, "HubspotWritebackTokensStore");
    let refused = |r: Result<String, SecretError>| matches!(r, Err(SecretError::Denied(_)));
    assert!(refused(source_of(&t, "ApiFunction").fetch(&client).await));
    assert!(refused(source_of(&t, "ScoreFunction").fetch(&client).await));
    assert!(refused(
        source_of(&t, "IngestFunction").fetch(&tokens).await
    ));
    // The score function reads its tokens (the template's value until an operator
    // puts the real list).
    let value: Value = serde_json::from_str(
        &source_of(&t, "ScoreFunction")
            .fetch(&tokens)
            .await
            .expect("the score role reads the write-back tokens"),
    )
    .unwrap();
    assert_eq!(value, json!({"tokens": ""}));
    let denied: Vec<_> = t.denials().into_iter().map(|(f, _, _, r)| (f, r)).collect();
    assert_eq!(
        denied,
        [
            (
                "ApiFunction".to_owned(),
                "HubspotClientSecretStore".to_owned()
            ),
            ("ScoreFunction".into(), "HubspotClientSecretStore".into()),
            (
                "IngestFunction".into(),
                "HubspotWritebackTokensStore".into()
            ),
        ]
    );
}

/// The cockpit's sign-in form posted with `key`.
async fn sign_in(web: &web::Web, key: &str) -> lambda_http::Response<lambda_http::Body> {
    web.handle(app_request(
        "POST",
        "/app/sign-in",
        None,
        &format!("key={key}"),
    ))
    .await
}

/// A web function of this stack (a new container) reading the session secret with its
/// own role, as `main.rs` wires it from `WEB_SESSION_SECRET_ARN`.
fn web_container(t: &TestStack) -> web::Web {
    let cfg = t
        .provisioned
        .function_config(&t.aws, "WebFunction")
        .expect("role");
    let env = t.provisioned.env["WebFunction"].clone();
    let web::session::SecretFrom::Manager(id) =
        web::session::secret_from_env(|k| env.get(k).cloned()).expect("the template's setting")
    else {
        panic!("the template passes the secret's ARN, not its value: {env:?}");
    };
    assert_eq!(id, arn(t, "WebSessionSecret"));
    let mut w = web::Web::new(
        t.stack.web.api.clone(),
        t.stack.store.clone(),
        web::session::SessionSecret::Managed(aws::secrets::cached(&cfg, id)),
    );
    w.secure_cookies = false;
    w
}

#[tokio::test]
async fn the_cockpit_signs_sessions_with_the_secret_only_its_role_reads_and_a_rotation_ends_them() {
    let t = TestStack::fresh().await;
    let web = web_container(&t);
    let resp = sign_in(&web, &t.key).await;
    assert_eq!(
        resp.status(),
        303,
        "signed in with the secret read on first use"
    );
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = || app_request("GET", "/app/portfolio", Some(&cookie), "");
    assert_eq!(web.handle(page()).await.status(), 200);
    assert_eq!(
        t.stack.web.handle(page()).await.status(),
        200,
        "the local stack's cockpit reads the same secret"
    );

    rotate(&t, "WebSessionSecret", &"r".repeat(64)).await;
    assert_eq!(
        web.handle(page()).await.status(),
        200,
        "cached: no read per request"
    );
    assert_eq!(
        web_container(&t).handle(page()).await.status(),
        303,
        "a container reading the rotated secret ends the session (back to sign-in)"
    );

    // No other function may read it.
    let secret = arn(&t, "WebSessionSecret");
    for f in ["ApiFunction", "IngestFunction", "ScoreFunction"] {
        assert!(
            matches!(
                source_of(&t, f).fetch(&secret).await,
                Err(SecretError::Denied(_))
            ),
            "{f}"
        );
    }
    let denied: Vec<_> = t.denials().into_iter().map(|(f, _, _, r)| (f, r)).collect();
    assert_eq!(
        denied,
        ["ApiFunction", "IngestFunction", "ScoreFunction"]
            .map(|f| (f.to_owned(), "WebSessionSecret".to_owned()))
    );
}

#[tokio::test]
async fn without_its_grant_the_cockpit_answers_sign_in_with_503_and_signs_no_one_in() {
    let t = TestStack::with_revoked(vec![Revoke::action(
        "WebFunction",
        "secretsmanager:GetSecretValue",
    )])
    .await;
    let resp = sign_in(&web_container(&t), &t.key).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(t.denials().contains(&(
        "WebFunction".into(),
        "GetSecretValue".into(),
        "secretsmanager:GetSecretValue".into(),
        "WebSessionSecret".into()
    )));
}
