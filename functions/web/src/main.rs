use aws::dynamo::DynamoStore;
use lambda_http::{run, service_fn, Error, Request};
use std::sync::Arc;
use web::session::{self, SecretFrom, SessionSecret};
use web::Web;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda::telemetry::init();
    let table = lambda::config::required("USAGE_TABLE")?;
    let aws = aws::sdk::lambda()?;
    // The template's WebSessionSecret, read from Secrets Manager by the first request
    // that needs it (nothing fetched at init) and cached; rotating it ends every session.
    let sessions = match session::secret_from_env(|k| std::env::var(k).ok())? {
        SecretFrom::Manager(id) => SessionSecret::Managed(aws::secrets::cached(&aws, id)),
        SecretFrom::Value(keys) => SessionSecret::Fixed(keys),
    };
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table));
    // The same API the JSON clients call, wired as its own Lambda wires it.
    let api = Arc::new(api::on_lambda(
        store.clone(),
        &aws_sdk_sqs::Client::new(&aws),
    )?);
    let web = Arc::new(Web::new(api, store, sessions));
    run(service_fn(move |req: Request| {
        let web = web.clone();
        async move { Ok::<_, Error>(lambda::http::correlated(req, |r| web.handle(r)).await) }
    }))
    .await
}
