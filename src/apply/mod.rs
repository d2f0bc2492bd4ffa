//! Making the cluster match one rendered stage, through the `kube` client:
//! server-side apply in kind order, Jobs recreated by spec hash, precise
//! handling of immutable fields, prune, and watch-driven health waits. The
//! engine knows nothing of Git or of the loop that calls it.

pub mod error;
pub mod job_policy;
pub mod resolve;

pub use error::ApplyError;
