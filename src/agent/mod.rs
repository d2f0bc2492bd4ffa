//! The agent: the loop that fetches revisions from Git, plans them and runs
//! the stage graph, with its settings, HTTP server, status page, logs and
//! metrics.
//!
//! Rule: `agent` may import `core` and `cluster`, never `cli`.

pub mod config;
pub mod logging;
pub mod metrics;
pub mod rbac;
pub mod run;
pub mod server;
pub mod source;
pub mod web;
