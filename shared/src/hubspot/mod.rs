//! HubSpot: webhook signatures, payloads, mapping rules and attribution.

pub mod attribution;
pub mod mapping;
pub mod processor;
pub mod signature;
pub mod webhook;
