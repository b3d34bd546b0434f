//! Every port of `domain` in memory, with the fault injection tests need.

pub mod ledger;

pub use ledger::{Fault, MemoryLedger};
