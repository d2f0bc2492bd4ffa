//! What the command line prints: stage status and the plan's text forms.
//! The commands themselves are the binary's (`src/main.rs`,
//! `src/stage_commands.rs`).
//!
//! Rule: `cli` may import every other layer; nothing imports `cli`.

pub mod output;
pub mod status;
