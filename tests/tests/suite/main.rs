//! The end-to-end suite: one test binary (one link of the whole workspace), a module
//! per feature. Shared helpers live in the `e2e` library (`tests/src/lib.rs`).

mod alerts;
mod api;
mod audit;
mod bounded_reads;
mod entitlements;
mod governance;
mod handlers;
mod health;
mod health_writeback;
mod hubspot;
mod openapi;
mod pipeline;
mod ports;
