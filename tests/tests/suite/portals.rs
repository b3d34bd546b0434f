//! HubSpot portals are mapped to tenants through the API with an admin key (as on AWS,
//! where nobody should write table items by hand), one tenant per portal.

use crate::secrets::webhook_for;
use e2e::{decode, TestStack, HUBSPOT_SECRET};

const PORTAL: u64 = 70_002;
const PATH: &str = "/v1/hubspot/portals/70002";

#[tokio::test]
async fn a_tenant_admin_maps_a_portal_and_its_webhooks_count_for_that_tenant_until_unmapped() {
    let t = TestStack::fresh().await;
    let (s, v) = decode(
        t.stack
            .ingest
            .handle(webhook_for(PORTAL, HUBSPOT_SECRET))
            .await,
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("unknown_portal")),
        "{v}"
    );

    let (s, v) = t.call("PUT", PATH, None).await;
    assert_eq!(
        (s, v["portal_id"].as_u64(), v["tenant"].as_str()),
        (201, Some(PORTAL), Some("acme")),
        "{v}"
    );
    assert_eq!(
        t.call("PUT", PATH, None).await.0,
        200,
        "mapping again changes nothing"
    );
    assert_eq!(t.call("GET", PATH, None).await.0, 200);
    let (s, v) = decode(
        t.stack
            .ingest
            .handle(webhook_for(PORTAL, HUBSPOT_SECRET))
            .await,
    );
    assert_eq!((s, v["received"].as_u64()), (200, Some(1)), "{v}");

    let (s, v) = t.call("DELETE", PATH, None).await;
    assert_eq!((s, v["deleted"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(t.call("GET", PATH, None).await.0, 404);
    let (s, _) = decode(
        t.stack
            .ingest
            .handle(webhook_for(PORTAL, HUBSPOT_SECRET))
            .await,
    );
    assert_eq!(s, 403, "unmapped: refused again");
    assert_eq!(t.denials(), Vec::new());
}

#[tokio::test]
async fn a_portal_another_tenant_holds_cannot_be_claimed_seen_or_released() {
    let t = TestStack::fresh().await;
    let globex = t.second_tenant("globex").await;
    assert_eq!(t.call("PUT", PATH, None).await.0, 201);
    let (s, v) = t.call_as(&globex, "PUT", PATH, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("portal_taken")),
        "{v}"
    );
    assert_eq!(t.call_as(&globex, "GET", PATH, None).await.0, 404);
    assert_eq!(t.call_as(&globex, "DELETE", PATH, None).await.0, 404);
    assert_eq!(t.call("GET", PATH, None).await.0, 200, "still acme's");
    let (s, v) = t.call("PUT", "/v1/hubspot/portals/0123", None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_portal_id")),
        "{v}"
    );
}

#[tokio::test]
async fn mapping_a_portal_needs_an_admin_key() {
    let t = TestStack::fresh().await;
    let tenant = t.tenant.clone();
    let read = t
        .stack
        .store
        .create_scoped_key(
            &tenant,
            &domain::auth::NewKey {
                label: "read".into(),
                scopes: vec![domain::auth::KeyScope::Read],
                expires_in_days: None,
            },
        )
        .await
        .expect("key");
    let (s, v) = t.call_as(&read, "PUT", PATH, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
}
