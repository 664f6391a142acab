//! The help overlay: every key binding, written from the keymap (drawn by `ui::popups`).

use crate::console::keymap::Intent;

use super::Outcome;

/// The help overlay and how far it is scrolled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HelpPopup {
    /// Lines scrolled (the renderer stops it at the end).
    pub scroll: u16,
}

impl HelpPopup {
    /// What a key does: scroll, or close.
    pub fn handle(&mut self, intent: Intent) -> Outcome {
        match intent {
            Intent::Up => self.scroll = self.scroll.saturating_sub(1),
            Intent::Down => self.scroll = self.scroll.saturating_add(1),
            Intent::No => return Outcome::Close,
            _ => {}
        }
        Outcome::Stay
    }
}
