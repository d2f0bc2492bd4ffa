//! The agent: the loop that fetches revisions, plans them and runs the
//! stage graph, with state, events and metrics.

pub mod agent;
pub mod context;
pub mod leader;
pub mod main;
mod record;
pub mod requests;
pub mod scheduler;
pub mod startup;

pub use agent::{Agent, AgentError};
pub use scheduler::RevisionOutcome;
