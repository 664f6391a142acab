//! The events tab: the whole event log, with a cursor that follows new entries until it is
//! moved up (End follows again). The log itself is shared with the overview, which shows
//! its newest entries; this tab has no state of its own.

use crate::console::event_log::EventLog;
use crate::console::keymap::{Intent, Scope};

/// The key scopes in force here, most specific first.
pub fn scopes() -> Vec<Scope> {
    vec![Scope::Events, Scope::List]
}

/// What a key does here.
pub fn handle(log: &mut EventLog, intent: Intent) {
    match intent {
        Intent::Back => {
            if !log.view.filter.is_empty() {
                log.view.filter.clear();
                log.refilter();
            }
        }
        other => {
            log.view.cursor(other);
            log.follow = log.view.at_end();
        }
    }
}
