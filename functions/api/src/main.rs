use api::Api;
use aws::dynamo::DynamoStore;
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let aws = aws::sdk::load().await;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = |var: &'static str| {
        lambda::config::required(var).ok().map(|url| {
            Arc::new(aws::sqs::SqsQueue::new(sqs.clone(), url))
                as Arc<dyn domain::queue::EventQueue>
        })
    };
    // Governance notifications go to the alerts queue when it is configured; held
    // events are replayed onto the events queue when their definition is restored.
    let alerts = queue("ALERTS_QUEUE_URL");
    let events = queue("EVENTS_QUEUE_URL");
    let quotas = Arc::new(domain::quota::Quotas::from_env()?);
    let api = Arc::new(Api::new(store.clone()).with_quotas(quotas).with_governance(
        api::governance::Governance {
            changes: store.clone(),
            reports: store.clone(),
            alerts,
            quarantine: store.clone(),
            events,
            quality: Some(store),
        },
    ));
    run(service_fn(move |req: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
