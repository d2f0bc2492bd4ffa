//! stagegate: a GitOps agent for Kubernetes that applies stages in dependency order
//! and treats Jobs as one-shot runs keyed by the hash of their rendered spec.
//!
//! The pure core lives in [`stage`] (definitions, validation, the dependency graph)
//! and [`render`] (manifests of one stage, without kustomize). Neither knows about
//! Git or a cluster: files in, objects out.

pub mod api_server;
pub mod apply;
pub mod cluster;
pub mod config;
pub mod diagnostics;
pub mod events;
pub mod health;
pub mod hooks;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod object;
pub mod output;
pub mod paths;
pub mod plan;
pub mod rbac;
pub mod redact;
pub mod render;
pub mod run;
pub mod server;
pub mod source;
pub mod stage;
pub mod state;
pub mod status;
pub mod tree;
pub mod web;
pub mod yaml;
