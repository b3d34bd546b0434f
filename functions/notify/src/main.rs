use aws::dynamo::DynamoStore;
use aws::sns::SnsPublisher;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use notify::Notify;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let topic = lambda::config::required("ALERTS_TOPIC_ARN")?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let publisher = Arc::new(SnsPublisher::new(aws_sdk_sns::Client::new(&aws), topic));
    let notify = Arc::new(Notify::new(store.clone(), publisher, store.clone()).with_history(store));
    // One function, two triggers: the alerts queue (SQS records) and the daily
    // EventBridge schedule that sends due digests.
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let notify = notify.clone();
        async move { notify::dispatch(&notify, event.payload).await }
    }))
    .await
}
