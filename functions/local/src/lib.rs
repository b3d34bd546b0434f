//! The local runner: provisions the template's resources in the emulator and hosts
//! every function's handler in one process (HTTP, SQS pollers, scheduler).

pub mod backtest_files;
pub mod backtest_stored;
pub mod cockpit;
pub mod demo;
pub mod esm;
pub mod iam;
pub mod import;
pub mod jobs;
pub mod outputs;
pub mod provision;
pub mod server;
pub mod stack;
