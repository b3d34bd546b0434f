use aws::dynamo::DynamoStore;
use aws::sqs::SqsQueue;
use lambda::config::Resources;
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let res = Resources::from_env()?;
    let aws = aws::sdk::lambda()?;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        res.table,
    ));
    let queue = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        res.events_queue_url,
    ));
    // Settings only: the client secret itself is read by the first webhook (init time).
    let hubspot = match ingest::hubspot_env(|k| std::env::var(k).ok())? {
        None => None,
        Some(hs) => Some(ingest::HubspotWiring {
            secrets: match hs.secrets {
                ingest::SecretsFrom::Fixed(v) => ingest::ClientSecrets::Fixed(v),
                ingest::SecretsFrom::Manager(id) => {
                    ingest::ClientSecrets::Managed(aws::secrets::cached(&aws, id))
                }
            },
            public_base_url: hs.public_base_url,
            legacy: lambda::config::hubspot_legacy_policy()?,
        }),
    };
    let ingest = Arc::new(ingest::wired(
        store,
        queue,
        ingest::Wiring {
            max_backfill_days: lambda::config::ledger_retention()?.max_horizon_days(),
            hubspot,
            quotas: Arc::new(domain::quota::Quotas::from_env()?),
            event_quotas: Arc::new(domain::quota::Quotas::from_env_for(&domain::quota::EVENTS)?),
        },
    ));
    run(service_fn(move |req: Request| {
        let ingest = ingest.clone();
        async move { Ok::<_, Error>(lambda::http::correlated(req, |r| ingest.handle(r)).await) }
    }))
    .await
}
