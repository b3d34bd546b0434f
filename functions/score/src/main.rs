use aws::dynamo::DynamoStore;
use aws::hubspot::HyperPost;
use aws::sqs::SqsQueue;
use domain::health::run::HealthRunner;
use domain::health::writeback::{CrmSink, HubSpotWriteback};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use score::Score;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let shards = Arc::new(SqsQueue::new(
        sqs.clone(),
        lambda::config::required("SCORE_QUEUE_URL")?,
    ));
    let alerts = Arc::new(SqsQueue::new(
        sqs,
        lambda::config::required("ALERTS_QUEUE_URL")?,
    ));
    // Tokens from Secrets Manager (read by the first write-back, not here: init time),
    // or a plain list (the local runner).
    let crm: Option<Arc<dyn CrmSink>> = match aws::hubspot::tokens_from_env(&aws)? {
        None => None,
        Some(tokens) => Some(Arc::new(HubSpotWriteback::new(
            aws::hubspot::api_base(),
            tokens,
            Arc::new(HyperPost::new()?),
            lambda::config::number("HUBSPOT_REQUESTS_PER_10S", 100usize)?,
        ))),
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
        shard_size: lambda::config::number("SCORE_SHARD_SIZE", 100usize)?.clamp(1, 500),
        concurrency: 8,
    });
    let score = Arc::new(Score::new(runner));
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let score = score.clone();
        async move { Ok::<_, Error>(score.invoke(event.payload).await) }
    }))
    .await
}
