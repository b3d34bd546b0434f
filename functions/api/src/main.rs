use aws::dynamo::DynamoStore;
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let aws = aws::sdk::lambda()?;
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    // `POST /v1/hubspot/setup` with the write-back tokens (read on first use).
    let setup = match aws::hubspot::tokens_from_env(&aws)? {
        None => None,
        Some(tokens) => Some(Arc::new(api::hubspot_setup::HubSpotSetup {
            client: aws::hubspot::client_from_env()?,
            tokens,
        })),
    };
    let api =
        Arc::new(api::on_lambda(store, &aws_sdk_sqs::Client::new(&aws))?.with_hubspot_setup(setup));
    run(service_fn(move |req: Request| {
        let api = api.clone();
        async move { Ok::<_, Error>(lambda::http::correlated(req, |r| api.handle(r)).await) }
    }))
    .await
}
