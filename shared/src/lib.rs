//! The usage-intelligence suite's library: domain types, pure logic (validation,
//! aggregation, the exactly-once protocol) and the AWS adapters behind small traits.

pub mod account;
pub mod alert;
pub mod audit;
pub mod auth;
pub mod aws;
pub mod batch;
pub mod chunk;
pub mod config;
pub mod definition;
pub mod digest;
pub mod entitlement;
pub mod event;
pub mod governance;
pub mod health;
pub mod horizon;
pub mod http;
pub mod hubspot;
pub mod ids;
pub mod input;
pub mod keys;
pub mod limits;
pub mod pipeline;
pub mod publish;
pub mod quarantine;
pub mod queue;
pub mod quota;
pub mod rollup;
pub mod store;
pub mod telemetry;
pub mod usage;
