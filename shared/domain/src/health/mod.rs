//! Health scoring (issue #5, docs/adr/0006): an explainable 0-100 score per account
//! and day, normalised against the account's segment, with reason codes, alerts,
//! CRM write-back, a synthetic data generator and a backtest.

pub mod backtest;
pub mod bands;
pub mod config;
pub mod crm_queue;
pub mod fit;
pub mod metric;
pub mod model;
pub mod plays;
pub mod record;
pub mod run;
pub mod store;
pub mod synth;
pub mod writeback;

#[cfg(test)]
mod tests;
