use aws::dynamo::DynamoStore;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let ledger_table = lambda::config::required("LEDGER_TABLE")?;
    let aws = aws::sdk::lambda()?;
    let store = Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
            .with_ledger_table(ledger_table),
    );
    let audit = Arc::new(audit::wired(
        store,
        aws_sdk_sqs::Client::new(&aws),
        lambda::config::required("ALERTS_QUEUE_URL")?,
        lambda::config::required("EVENTS_DLQ_URL")?,
    ));
    // EventBridge scheduled event; its payload is not needed.
    run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let audit = audit.clone();
        async move { audit.run_all(chrono::Utc::now()).await.map_err(Error::from) }
    }))
    .await
}
