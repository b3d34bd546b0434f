use audit::Audit;
use aws::dynamo::DynamoStore;
use aws::sqs::SqsDepth;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let ledger_table = lambda::config::required("LEDGER_TABLE")?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
            .with_ledger_table(ledger_table),
    );
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let alerts = Arc::new(aws::sqs::SqsQueue::new(
        sqs.clone(),
        lambda::config::required("ALERTS_QUEUE_URL")?,
    ));
    let mut audit = Audit::new(store.clone(), alerts);
    audit.quarantine = Some(store);
    audit.dlq = Some(Arc::new(SqsDepth {
        client: sqs,
        url: lambda::config::required("EVENTS_DLQ_URL")?,
    }));
    let audit = Arc::new(audit);
    // EventBridge scheduled event; its payload is not needed.
    run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let audit = audit.clone();
        async move { audit.run_all(chrono::Utc::now()).await.map_err(Error::from) }
    }))
    .await
}
