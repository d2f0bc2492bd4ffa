//! The cluster side: applying a planned stage, waiting for its health,
//! Events, and the state kept in `Stage` objects.
//!
//! The apply engine is a library in the way Flux's `ssa` package is one:
//! planned objects, options and the prior record in; typed changes out.
//!
//! Rule: `cluster` may import `core`, never `agent` or `cli`.

pub mod api_server;
pub mod apply;
pub mod client;
pub mod events;
pub mod health;
pub mod state;
