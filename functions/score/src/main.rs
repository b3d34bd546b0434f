use aws::dynamo::DynamoStore;
use aws::hubspot::HyperPost;
use aws::sqs::SqsQueue;
use domain::health::run::HealthRunner;
use domain::health::writeback::{parse_tokens, CrmSink, HubSpotWriteback, Tokens};
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
    let tokens: Option<Tokens> = match std::env::var("HUBSPOT_WRITEBACK_TOKENS_ARN")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(arn) => Some(Tokens::Managed(aws::secrets::cached(
            &aws,
            domain::secrets::SecretId::parse(&arn)?,
        ))),
        None => Some(std::env::var("HUBSPOT_WRITEBACK_TOKENS").unwrap_or_default())
            .filter(|t| !t.trim().is_empty())
            .map(|t| parse_tokens(&t).map(Tokens::Fixed))
            .transpose()?,
    };
    let crm: Option<Arc<dyn CrmSink>> = match tokens {
        None => None,
        Some(tokens) => Some(Arc::new(HubSpotWriteback::new(
            std::env::var("HUBSPOT_API_BASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://api.hubapi.com".into()),
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
