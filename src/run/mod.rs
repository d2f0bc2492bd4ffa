//! The agent: the loop that fetches revisions, plans them and runs the
//! stage graph, with state, events and metrics.

pub mod leader;
