//! The pure core: a file tree in, a plan out.
//!
//! Stage definitions (stagegate's own `Stage` documents and Flux
//! `Kustomization`s), rendering without kustomize, the plan and its hooks,
//! and the small value types they share. Nothing here knows Git, the
//! cluster or the disk: it reads through [`tree::FileTree`], so its tests run
//! on an in-memory tree.
//!
//! Rule: `core` imports nothing from `cluster`, `agent` or `cli`
//! (`tests/architecture.rs` checks it).

pub mod diagnostics;
pub mod hooks;
pub mod kinds;
pub mod labels;
pub mod object;
pub mod paths;
pub mod permission;
pub mod plan;
pub mod redact;
pub mod render;
pub mod stage;
pub mod tree;
pub mod yaml;
