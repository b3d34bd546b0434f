use audit::Audit;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::audit::store::SqsDepth;
use shared::store::dynamo::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let table = shared::config::required("USAGE_TABLE")?;
    let ledger_table = shared::config::required("LEDGER_TABLE")?;
    let aws = shared::aws::load().await;
    let store = Arc::new(
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
            .with_ledger_table(ledger_table),
    );
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let alerts = Arc::new(shared::queue::SqsQueue::new(
        sqs.clone(),
        shared::config::required("ALERTS_QUEUE_URL")?,
    ));
    let mut audit = Audit::new(store.clone(), alerts);
    audit.quarantine = Some(store);
    audit.dlq = Some(Arc::new(SqsDepth {
        client: sqs,
        url: shared::config::required("EVENTS_DLQ_URL")?,
    }));
    let audit = Arc::new(audit);
    // EventBridge scheduled event; its payload is not needed.
    run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let audit = audit.clone();
        async move { audit.run_all(chrono::Utc::now()).await.map_err(Error::from) }
    }))
    .await
}
