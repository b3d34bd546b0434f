use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use score::Score;
use shared::health::run::HealthRunner;
use shared::health::writeback::{parse_tokens, CrmSink, HubSpotWriteback, HyperPost};
use shared::queue::SqsQueue;
use shared::store::dynamo::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let table = shared::config::required("USAGE_TABLE")?;
    let aws = shared::aws::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let shards = Arc::new(SqsQueue::new(
        sqs.clone(),
        shared::config::required("SCORE_QUEUE_URL")?,
    ));
    let alerts = Arc::new(SqsQueue::new(
        sqs,
        shared::config::required("ALERTS_QUEUE_URL")?,
    ));
    let tokens = std::env::var("HUBSPOT_WRITEBACK_TOKENS").unwrap_or_default();
    let crm: Option<Arc<dyn CrmSink>> = if tokens.trim().is_empty() {
        None
    } else {
        Some(Arc::new(HubSpotWriteback::new(
            std::env::var("HUBSPOT_API_BASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://api.hubapi.com".into()),
            parse_tokens(&tokens)?,
            Arc::new(HyperPost::new()?),
            shared::config::number("HUBSPOT_REQUESTS_PER_10S", 100usize)?,
        )))
    };
    let runner = Arc::new(HealthRunner {
        health: store.clone(),
        accounts: store.clone(),
        usage: store.clone(),
        definitions: store.clone(),
        markers: store,
        shards,
        alerts,
        crm,
        shard_size: shared::config::number("SCORE_SHARD_SIZE", 100usize)?.clamp(1, 500),
        concurrency: 8,
    });
    let score = Arc::new(Score::new(runner));
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let score = score.clone();
        async move { Ok::<_, Error>(score.invoke(event.payload).await) }
    }))
    .await
}
