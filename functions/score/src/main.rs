use aws::dynamo::DynamoStore;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use score::Score;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let aws = aws::sdk::lambda()?;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    // Tokens from Secrets Manager (read by the first write-back, not here: init time),
    // or a plain list (the local runner).
    let crm = aws::hubspot::tokens_from_env(&aws)?
        .map(score::writeback)
        .transpose()?;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    // With the FIFO write-back queue, the run queues its CRM work per portal and this
    // function drains the queue through the HubSpot client.
    let queue = std::env::var("WRITEBACK_QUEUE_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let (run_crm, consumer) = match (queue, crm) {
        (Some(url), Some(crm)) => (Some(score::queued_writeback(&sqs, &url)), Some(crm)),
        (_, crm) => (crm, None),
    };
    let runner = score::runner(
        &store,
        &sqs,
        &lambda::config::required("SCORE_QUEUE_URL")?,
        &lambda::config::required("ALERTS_QUEUE_URL")?,
        run_crm,
    )?;
    let mut score = Score::new(Arc::new(runner));
    if let Some(sink) = consumer {
        score = score.with_writeback_consumer(sink);
    }
    let score = Arc::new(score);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let score = score.clone();
        async move { Ok::<_, Error>(score.invoke(event.payload).await) }
    }))
    .await
}
