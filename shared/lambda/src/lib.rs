//! What every function shares: HTTP serving through lambda_http, the SQS
//! partial-batch runner, telemetry and configuration from the environment.

pub mod batch;
pub mod config;
pub mod http;
pub mod metrics;
pub mod telemetry;
