//! The usage-intelligence domain: types, pure logic (validation, aggregation, the
//! exactly-once protocol) and the ports (one trait per capability) adapters implement.

pub mod account;
pub mod adoption;
pub mod alert;
pub mod audit;
pub mod auth;
pub mod chunk;
pub mod cloudevents;
pub mod correlation;
pub mod cost;
pub mod definition;
pub mod digest;
pub mod entitlement;
pub mod event;
pub mod governance;
pub mod health;
pub mod horizon;
pub mod hubspot;
pub mod ids;
pub mod input;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod ports;
pub mod publish;
pub mod quarantine;
pub mod queue;
pub mod quota;
pub mod registry;
pub mod rollup;
pub mod secrets;
pub mod usage;
pub mod zone;
