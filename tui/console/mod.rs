//! `cloudctl tui`: the live console. It follows one node's admin socket through `watch` and
//! shows the mesh: nodes with their load, the clients of a node, a key browser, the zone map
//! and an event log; the operator drains, undrains, migrates and rebalances from it.
//!
//! - [`app`]: the state shared by every view, and where keys and admin answers go (no IO,
//!   unit-tested);
//! - [`tabs`]: one module per view, with its own state and keys;
//! - [`popups`]: one module per dialog (help, confirmation, migration picker, filter typing);
//! - [`nodes`], [`event_log`], [`list`]: the members, the event log, a list's cursor and
//!   filter;
//! - [`requests`]: what the app asks the run loop to do (actions, polls);
//! - [`keymap`]: every key binding, from which the help overlay and help bar are written;
//! - [`ui`]: drawing, a pure function of the app (snapshot-tested on ratatui's `TestBackend`);
//! - [`run`]: the terminal, the admin connections and the loop.

pub mod app;
pub mod event_log;
pub mod keymap;
pub mod list;
pub mod nodes;
pub mod popups;
pub mod requests;
mod run;
pub mod tabs;
mod text;
pub mod ui;

#[cfg(test)]
mod fixtures;

pub use run::run;
