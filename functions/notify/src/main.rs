use aws::dynamo::DynamoStore;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let topic = lambda::config::required("ALERTS_TOPIC_ARN")?;
    let aws = aws::sdk::lambda()?;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let notify = Arc::new(notify::wired(store, aws_sdk_sns::Client::new(&aws), topic));
    // One function, two triggers: the alerts queue (SQS records) and the daily
    // EventBridge schedule that sends due digests.
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let notify = notify.clone();
        async move { notify::dispatch(&notify, event.payload).await }
    }))
    .await
}
