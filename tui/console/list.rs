//! A list on screen: its filter, which items pass it, and the cursor among those. Every tab
//! and the migration picker keep one per list; the items stay wherever they live.

use std::cell::Cell;

use super::keymap::Intent;

/// A list's filter, the items that pass it, and the cursor.
#[derive(Debug, Default)]
pub struct ListView {
    /// The filter text (substring, any case); empty for none.
    pub filter: String,
    /// Indices of the items that pass the filter, in order.
    pub visible: Vec<usize>,
    /// The cursor, an index into `visible`.
    pub selected: usize,
    /// The first row on screen. Only the renderer moves it (to keep the cursor in view), so
    /// it lives in a `Cell` and drawing can take `&App`.
    pub offset: Cell<usize>,
    /// Rows the renderer last had room for: what PgUp/PgDn move by.
    pub page: Cell<usize>,
}

impl ListView {
    /// The selected item's index in the full list.
    pub fn selected_item(&self) -> Option<usize> {
        self.visible.get(self.selected).copied()
    }

    /// Recomputes `visible` after the items or the filter changed, keeping the cursor on
    /// the item `keep` says was selected (else at the same place, clamped).
    pub fn rebuild<T>(
        &mut self,
        items: impl Iterator<Item = T>,
        matches: impl Fn(&T, &str) -> bool,
        keep: impl Fn(&T) -> bool,
    ) {
        let needle = self.filter.to_lowercase();
        self.visible.clear();
        let mut found = None;
        for (i, item) in items.enumerate() {
            if needle.is_empty() || matches(&item, &needle) {
                if found.is_none() && keep(&item) {
                    found = Some(self.visible.len());
                }
                self.visible.push(i);
            }
        }
        self.selected = match found {
            Some(at) => at,
            None => self.selected.min(self.visible.len().saturating_sub(1)),
        };
    }

    fn move_by(&mut self, delta: isize) {
        let last = self.visible.len().saturating_sub(1) as isize;
        self.selected = (self.selected as isize + delta).clamp(0, last.max(0)) as usize;
    }

    fn page_size(&self) -> isize {
        self.page.get().max(1) as isize
    }

    /// Applies a cursor intent; false when it is not one.
    pub fn cursor(&mut self, intent: Intent) -> bool {
        match intent {
            Intent::Up => self.move_by(-1),
            Intent::Down => self.move_by(1),
            Intent::PageUp => self.move_by(-self.page_size()),
            Intent::PageDown => self.move_by(self.page_size()),
            Intent::First => self.selected = 0,
            Intent::Last => self.selected = self.visible.len().saturating_sub(1),
            _ => return false,
        }
        true
    }

    /// Whether the cursor is on the last item (or there is none).
    pub fn at_end(&self) -> bool {
        self.selected + 1 >= self.visible.len()
    }
}
