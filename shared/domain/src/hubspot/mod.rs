//! HubSpot: webhook signatures, payloads, mapping rules and attribution.

pub mod attribution;
pub mod client;
pub mod import;
pub mod mapping;
pub mod processor;
pub mod profile;
pub mod replay;
pub mod setup;
pub mod signature;
pub mod webhook;
pub mod workflow;
