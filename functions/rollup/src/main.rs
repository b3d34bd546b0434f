use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use rollup::Rollup;
use shared::pipeline::PipelineConfig;
use shared::store::dynamo::DynamoStore;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let table = shared::config::required("USAGE_TABLE")?;
    let retention = shared::config::ledger_retention_days()?;
    let aws = shared::aws::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let cfg = PipelineConfig {
        retention: chrono::Duration::days(retention),
        ..PipelineConfig::default()
    };
    let alerts_url = shared::config::required("ALERTS_QUEUE_URL")?;
    let alerts = Arc::new(shared::queue::SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        alerts_url,
    ));
    let limits = shared::limits::LimitWatch {
        entitlements: store.clone(),
        usage: store.clone(),
        accounts: store.clone(),
        markers: store.clone(),
        alerts,
    };
    let rollup = Arc::new(Rollup::new(store, cfg).with_limits(limits));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let rollup = rollup.clone();
        async move { Ok::<_, Error>(rollup.handle(event.payload).await) }
    }))
    .await
}
