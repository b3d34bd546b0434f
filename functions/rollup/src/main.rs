use aws::dynamo::DynamoStore;
use aws_lambda_events::sqs::SqsEvent;
use domain::pipeline::PipelineConfig;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use rollup::Rollup;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let ledger_table = lambda::config::required("LEDGER_TABLE")?;
    let retention = lambda::config::ledger_retention()?;
    let aws = aws::sdk::load().await;
    let mut store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
        .with_ledger_table(ledger_table);
    store.audit_sample = lambda::config::audit_sample_modulus()?;
    let store = Arc::new(store);
    let cfg = PipelineConfig {
        retention: retention.duration(),
        ..PipelineConfig::default()
    };
    let events = Arc::new(aws::sqs::SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        lambda::config::required("EVENTS_QUEUE_URL")?,
    ));
    let alerts = Arc::new(aws::sqs::SqsQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        lambda::config::required("ALERTS_QUEUE_URL")?,
    ));
    let limits = domain::limits::LimitWatch {
        entitlements: store.clone(),
        usage: store.clone(),
        accounts: store.clone(),
        markers: store.clone(),
        alerts,
    };
    let mut rollup = Rollup::new(store.clone(), cfg)
        .with_limits(limits)
        .with_quality(store.clone())
        .with_critical_series(store.clone());
    rollup.hubspot = Some(domain::hubspot::processor::Processor {
        store: store.clone(),
        queue: events,
        retired: Some(domain::hubspot::processor::Retired {
            policy: store.clone(),
            quarantine: store,
        }),
    });
    let rollup = Arc::new(rollup);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let rollup = rollup.clone();
        async move { Ok::<_, Error>(rollup.handle(event.payload).await) }
    }))
    .await
}
