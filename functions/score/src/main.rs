use aws::dynamo::DynamoStore;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use score::Score;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    // Tokens from Secrets Manager (read by the first write-back, not here: init time),
    // or a plain list (the local runner).
    let crm = aws::hubspot::tokens_from_env(&aws)?
        .map(score::writeback)
        .transpose()?;
    let runner = score::runner(
        &store,
        &aws_sdk_sqs::Client::new(&aws),
        &lambda::config::required("SCORE_QUEUE_URL")?,
        &lambda::config::required("ALERTS_QUEUE_URL")?,
        crm,
    )?;
    let score = Arc::new(Score::new(Arc::new(runner)));
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let score = score.clone();
        async move { Ok::<_, Error>(score.invoke(event.payload).await) }
    }))
    .await
}
