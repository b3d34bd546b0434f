use aws::dynamo::DynamoStore;
use aws::sqs::SqsQueue;
use ingest::Ingest;
use lambda::config::Resources;
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let res = Resources::from_env()?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        res.table,
    ));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        res.events_queue_url,
    ));
    let mut ingest = Ingest::new(store.clone(), queue);
    // Events older than the ledger remembers are refused, whatever a stored policy says.
    ingest.limits.max_backfill_days = lambda::config::ledger_retention()?.max_horizon_days();
    ingest.quality = Some(store.clone());
    ingest.quarantine = Some(store.clone());
    // Settings only: the client secret itself is read by the first webhook (init time).
    if let Some(hs) = ingest::hubspot_env(|k| std::env::var(k).ok())? {
        let legacy = lambda::config::hubspot_legacy_policy()?.map(|policy| {
            tracing::warn!(versions = ?policy.versions, window_hours = policy.window.num_hours(), "legacy HubSpot signatures accepted, with the replay guard");
            ingest::LegacySignatures {
                policy,
                guard: store.clone(),
            }
        });
        let secrets = match hs.secrets {
            ingest::SecretsFrom::Fixed(v) => ingest::ClientSecrets::Fixed(v),
            ingest::SecretsFrom::Manager(id) => {
                ingest::ClientSecrets::Managed(aws::secrets::cached(&aws, id))
            }
        };
        ingest.hubspot = Some(ingest::HubspotConfig {
            secrets,
            public_base_url: hs.public_base_url,
            portals: store,
            legacy,
        });
    }
    ingest.quotas = Arc::new(domain::quota::Quotas::from_env()?);
    ingest.event_quotas = Arc::new(domain::quota::Quotas::from_env_for(&domain::quota::EVENTS)?);
    let ingest = Arc::new(ingest);
    run(service_fn(move |req: Request| {
        let ingest = ingest.clone();
        async move { Ok::<_, Error>(lambda::http::correlated(req, |r| ingest.handle(r)).await) }
    }))
    .await
}
