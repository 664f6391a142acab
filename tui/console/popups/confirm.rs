//! A yes/no question before an action that changes the mesh (drain, undrain, rebalance).

use crate::console::keymap::Intent;
use crate::console::requests::Action;

use super::Outcome;

/// The question and the action `y` takes.
#[derive(Debug)]
pub struct ConfirmPopup {
    /// What `y` does.
    pub action: Action,
    /// The question.
    pub question: String,
    /// What it will do, in a sentence.
    pub detail: String,
}

impl ConfirmPopup {
    /// What a key does: `y` acts, `n` cancels, anything else waits for one of them.
    pub fn handle(&self, intent: Intent) -> Outcome {
        match intent {
            Intent::Yes => Outcome::Act(self.action.clone()),
            Intent::No => Outcome::Cancel,
            _ => Outcome::Stay,
        }
    }
}
