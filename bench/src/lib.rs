//! What the benchmark programs share: statistics, child processes that never outlive the
//! program, `/proc` readings, and rewriting one generated section of `docs/benchmarks.md`.
//! The binaries (`api-bench` in `main.rs`, `agent-bench` in `agent/`) hold only what is
//! particular to what they measure.

pub mod child;
pub mod docs;
pub mod stats;
