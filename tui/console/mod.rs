//! `cloudctl tui`: the live console (DESIGN §7). It follows one node's admin socket through
//! `watch` and shows the mesh: nodes with their load, the clients of a node, a key browser, the
//! zone map and an event log; the operator drains, undrains, migrates and rebalances from it.
//!
//! - [`app`]: the state and what keys and admin answers do to it (no IO, unit-tested);
//! - [`keymap`]: every key binding, from which the help overlay and help bar are written;
//! - [`ui`]: drawing, a pure function of the app (snapshot-tested on ratatui's `TestBackend`);
//! - [`run`]: the terminal, the admin connections and the loop.

pub mod app;
pub mod keymap;
mod run;
pub mod ui;

#[cfg(test)]
mod fixtures;

pub use run::run;
