//! Every port of `domain` in memory, with the fault injection tests need, and the
//! behaviour suite each adapter of a port must pass (`suite`).

pub mod ledger;
pub mod suite;

pub use ledger::{Fault, MemoryLedger};
