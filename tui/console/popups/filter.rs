//! Typing a list's filter. The text lives in the list's own [`ListView`] (its title shows
//! it); this says what each key does to it, and the app narrows the list as it is typed.
//!
//! [`ListView`]: crate::console::list::ListView

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::console::keymap::Intent;

/// What a key does to the filter being typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterEdit {
    /// Keep the text and stop typing.
    Keep,
    /// Clear the text and stop typing.
    Clear,
    /// Delete the last character.
    DeleteChar,
    /// Type a character.
    Type(char),
}

impl FilterEdit {
    /// Whether typing ends with it.
    pub fn ends_typing(self) -> bool {
        matches!(self, FilterEdit::Keep | FilterEdit::Clear)
    }

    /// Applies it to the filter text.
    pub fn apply(self, filter: &mut String) {
        match self {
            FilterEdit::Keep => {}
            FilterEdit::Clear => filter.clear(),
            FilterEdit::DeleteChar => {
                filter.pop();
            }
            FilterEdit::Type(c) => filter.push(c),
        }
    }
}

/// The edit for a key (and its intent in the filter's scope); `None` for keys that neither
/// edit nor type (arrows, Ctrl and Alt chords).
pub fn edit(intent: Option<Intent>, key: &KeyEvent) -> Option<FilterEdit> {
    match intent {
        Some(Intent::KeepFilter) => Some(FilterEdit::Keep),
        Some(Intent::ClearFilter) => Some(FilterEdit::Clear),
        Some(Intent::DeleteChar) => Some(FilterEdit::DeleteChar),
        _ => match key.code {
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                Some(FilterEdit::Type(c))
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_type_edit_or_end_the_filter() {
        let plain = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(edit(None, &plain('q')), Some(FilterEdit::Type('q')));
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(edit(None, &ctrl_x), None, "chords do not type");
        let up = KeyEvent::new(KeyCode::Up, KeyModifiers::NONE);
        assert_eq!(edit(None, &up), None);
        let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(
            edit(Some(Intent::KeepFilter), &enter),
            Some(FilterEdit::Keep)
        );

        let mut text = String::from("ab");
        FilterEdit::Type('c').apply(&mut text);
        FilterEdit::DeleteChar.apply(&mut text);
        FilterEdit::Keep.apply(&mut text);
        assert_eq!(text, "ab");
        FilterEdit::Clear.apply(&mut text);
        assert_eq!(text, "");
        assert!(FilterEdit::Keep.ends_typing() && FilterEdit::Clear.ends_typing());
        assert!(!FilterEdit::Type('x').ends_typing() && !FilterEdit::DeleteChar.ends_typing());
    }
}
