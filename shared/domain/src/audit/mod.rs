//! Data-quality audits: the counters ingest and rollup keep for them, the KPIs the
//! audit job derives, seasonal anomaly detection, and the stored reports. Pure, with
//! the storage behind the traits of [`store`]. See docs/adr/0007.

pub mod anomaly;
pub mod counters;
pub mod kpi;
pub mod report;
pub mod series;
pub mod store;

pub use counters::Counts;
