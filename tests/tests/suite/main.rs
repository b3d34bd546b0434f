//! The end-to-end suite: one test binary (one link of the whole workspace), a module
//! per feature. Shared helpers live in the `e2e` library (`tests/src/lib.rs`). The
//! hostile-tenant test (`tests/tests/hostile.rs`) stays a binary of its own: it measures
//! lag, so it must not share the emulator with the rest of the suite's tests.

mod adoption;
mod alerts;
mod api;
mod audit;
mod bounded_reads;
mod cockpit;
mod entitlements;
mod governance;
mod handlers;
mod health;
mod health_writeback;
mod hubspot;
mod hubspot_setup;
mod iam;
mod metrics;
mod openapi;
mod pipeline;
mod plays;
mod portals;
mod ports;
mod runbook;
mod secrets;
mod stack_outputs;
mod writeback_queue;
