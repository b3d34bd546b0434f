use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use notify::Notify;
use shared::publish::SnsPublisher;
use shared::store::dynamo::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let table = shared::config::required("USAGE_TABLE")?;
    let topic = shared::config::required("ALERTS_TOPIC_ARN")?;
    let aws = shared::aws::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let publisher = Arc::new(SnsPublisher::new(aws_sdk_sns::Client::new(&aws), topic));
    let notify = Arc::new(Notify::new(store.clone(), publisher, store));
    // One function, two triggers: the alerts queue (SQS records) and the daily
    // EventBridge schedule that sends due digests.
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let notify = notify.clone();
        async move { notify::dispatch(&notify, event.payload).await }
    }))
    .await
}
