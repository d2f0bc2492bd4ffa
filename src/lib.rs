//! stagegate: a GitOps agent for Kubernetes that applies stages in dependency order
//! and treats Jobs as one-shot runs keyed by the hash of their rendered spec.
//!
//! Four layers, each a directory, each importing only the ones before it
//! (`tests/architecture.rs` checks it; `docs/architecture.md` maps them):
//! - [`core`]: stage definitions, rendering without kustomize, the plan. A
//!   file tree in, a plan out; no Git, no cluster, no disk.
//! - [`cluster`]: applying a planned stage, health, Events, `Stage` state.
//! - [`agent`]: the loop, the Git source, the HTTP server and status page.
//! - [`cli`]: what the command line prints.

pub mod agent;
pub mod cli;
pub mod cluster;
pub mod core;
