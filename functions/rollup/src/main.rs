use aws::dynamo::DynamoStore;
use aws_lambda_events::sqs::SqsEvent;
use domain::pipeline::PipelineConfig;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let ledger_table = lambda::config::required("LEDGER_TABLE")?;
    let retention = lambda::config::ledger_retention()?;
    let aws = aws::sdk::lambda()?;
    let mut store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
        .with_ledger_table(ledger_table);
    store.audit_sample = lambda::config::audit_sample_modulus()?;
    let store = Arc::new(store);
    let cfg = PipelineConfig {
        retention: retention.duration(),
        ..PipelineConfig::default()
    };
    let rollup = Arc::new(rollup::wired(
        store,
        cfg,
        &aws_sdk_sqs::Client::new(&aws),
        lambda::config::required("EVENTS_QUEUE_URL")?,
        lambda::config::required("ALERTS_QUEUE_URL")?,
    ));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let rollup = rollup.clone();
        async move { Ok::<_, Error>(rollup.handle(event.payload).await) }
    }))
    .await
}
