//! The console's keys. One table, [`BINDINGS`], decides what a key does *and* writes the help
//! overlay and the help bar, so what the screen says and what the keys do cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::tabs::Tab;

/// Where a binding applies. The app says which scopes are active, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everywhere, even in a dialog or while typing a filter.
    Always,
    /// Everywhere but dialogs and filter typing.
    Global,
    /// Any list with a cursor.
    List,
    /// The overview (nodes and clients panes).
    Overview,
    /// The nodes pane.
    Nodes,
    /// The clients pane.
    Clients,
    /// The key browser's list of primary keys.
    Primaries,
    /// The key browser's rows under one primary key.
    Rows,
    /// The zone map.
    Zones,
    /// The event log tab.
    Events,
    /// The migration target picker.
    Picker,
    /// A yes/no confirmation.
    Confirm,
    /// Typing a filter.
    Filter,
    /// Typing a query in the key browser's query bar.
    Query,
    /// The help overlay.
    Help,
}

impl Scope {
    /// The heading of this scope's section in the help overlay.
    pub fn heading(self) -> &'static str {
        match self {
            Scope::Always => "Anywhere",
            Scope::Global => "Views",
            Scope::List => "Lists",
            Scope::Overview => "Overview (nodes and clients)",
            Scope::Nodes => "Nodes pane",
            Scope::Clients => "Clients pane",
            Scope::Primaries => "Keys: primary keys",
            Scope::Rows => "Keys: rows",
            Scope::Zones => "Zone map",
            Scope::Events => "Event log",
            Scope::Picker => "Migration target picker",
            Scope::Confirm => "Confirmation",
            Scope::Filter => "Typing a filter",
            Scope::Query => "Typing a query: FILTER [sort FIELDS] [limit N]",
            Scope::Help => "This help",
        }
    }
}

/// What a key asks for; the app decides what that means where the cursor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Leave the console.
    Quit,
    /// Open the help overlay.
    Help,
    /// The next tab.
    NextTab,
    /// The previous tab.
    PrevTab,
    /// One tab.
    GoTab(Tab),
    /// Cursor up (or scroll up).
    Up,
    /// Cursor down (or scroll down).
    Down,
    /// Scroll left (zone map).
    Left,
    /// Scroll right (zone map).
    Right,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// The first item.
    First,
    /// The last item (the event log follows new entries again).
    Last,
    /// Open what is under the cursor.
    Open,
    /// Back out (clear the filter first, if one is set).
    Back,
    /// Start typing a filter for the list under the cursor.
    Filter,
    /// Open the key browser's query bar.
    Query,
    /// Drain the selected node.
    Drain,
    /// Undrain the selected node.
    Undrain,
    /// Migrate the selected client.
    Migrate,
    /// Run a rebalance round.
    Rebalance,
    /// Confirm.
    Yes,
    /// Cancel.
    No,
    /// Keep the typed filter and stop typing.
    KeepFilter,
    /// Clear the filter and stop typing.
    ClearFilter,
    /// Delete the last typed character.
    DeleteChar,
}

/// One key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character, as typed (Shift is in the character itself).
    Char(char),
    /// Ctrl and a letter.
    Ctrl(char),
    /// A named key (arrows, Enter, Esc, …).
    Code(KeyCode),
}

impl Key {
    /// Whether a key event is this key.
    pub fn matches(self, ev: &KeyEvent) -> bool {
        let ctrl_alt = ev
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match self {
            Key::Char(c) => ev.code == KeyCode::Char(c) && !ctrl_alt,
            Key::Ctrl(c) => {
                ev.modifiers.contains(KeyModifiers::CONTROL)
                    && matches!(ev.code, KeyCode::Char(k) if k.eq_ignore_ascii_case(&c))
            }
            Key::Code(code) => ev.code == code && !ctrl_alt,
        }
    }

    /// How the help writes this key.
    pub fn label(self) -> String {
        match self {
            Key::Char(' ') => "Space".to_owned(),
            Key::Char(c) => c.to_string(),
            Key::Ctrl(c) => format!("Ctrl-{}", c.to_ascii_uppercase()),
            Key::Code(code) => match code {
                KeyCode::Up => "↑".to_owned(),
                KeyCode::Down => "↓".to_owned(),
                KeyCode::Left => "←".to_owned(),
                KeyCode::Right => "→".to_owned(),
                KeyCode::PageUp => "PgUp".to_owned(),
                KeyCode::PageDown => "PgDn".to_owned(),
                KeyCode::Home => "Home".to_owned(),
                KeyCode::End => "End".to_owned(),
                KeyCode::Enter => "Enter".to_owned(),
                KeyCode::Esc => "Esc".to_owned(),
                KeyCode::Tab => "Tab".to_owned(),
                KeyCode::BackTab => "Shift-Tab".to_owned(),
                KeyCode::Backspace => "Backspace".to_owned(),
                other => format!("{other:?}"),
            },
        }
    }
}

/// A key (or keys) and what it does in one scope.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// Where it applies.
    pub scope: Scope,
    /// The keys, the first being the one the help bar shows.
    pub keys: &'static [Key],
    /// What it asks for.
    pub intent: Intent,
    /// The line in the help overlay.
    pub help: &'static str,
    /// The word in the help bar, when it earns a place there.
    pub bar: Option<&'static str>,
}

impl Binding {
    /// The keys as the help overlay writes them (`↑ k`).
    pub fn keys_label(&self) -> String {
        self.keys
            .iter()
            .map(|k| k.label())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

use KeyCode as C;

const fn b(
    scope: Scope,
    keys: &'static [Key],
    intent: Intent,
    help: &'static str,
    bar: Option<&'static str>,
) -> Binding {
    Binding {
        scope,
        keys,
        intent,
        help,
        bar,
    }
}

/// Every binding, grouped by scope in the order the help shows them.
pub const BINDINGS: &[Binding] = &[
    b(
        Scope::Always,
        &[Key::Ctrl('c')],
        Intent::Quit,
        "quit at once",
        None,
    ),
    b(
        Scope::Global,
        &[Key::Char('q')],
        Intent::Quit,
        "quit",
        Some("quit"),
    ),
    b(
        Scope::Global,
        &[Key::Char('?')],
        Intent::Help,
        "this help",
        Some("help"),
    ),
    b(
        Scope::Global,
        &[Key::Code(C::Tab)],
        Intent::NextTab,
        "next tab",
        Some("tabs"),
    ),
    b(
        Scope::Global,
        &[Key::Code(C::BackTab)],
        Intent::PrevTab,
        "previous tab",
        None,
    ),
    b(
        Scope::Global,
        &[Key::Char('1')],
        Intent::GoTab(Tab::Overview),
        "overview: nodes, clients of the selected node, events",
        None,
    ),
    b(
        Scope::Global,
        &[Key::Char('2')],
        Intent::GoTab(Tab::Keys),
        "key browser",
        None,
    ),
    b(
        Scope::Global,
        &[Key::Char('3')],
        Intent::GoTab(Tab::Zones),
        "zone map",
        None,
    ),
    b(
        Scope::Global,
        &[Key::Char('4')],
        Intent::GoTab(Tab::Events),
        "event log",
        None,
    ),
    b(
        Scope::Global,
        &[Key::Char('/')],
        Intent::Filter,
        "filter the list under the cursor (substring, any case)",
        Some("filter"),
    ),
    b(
        Scope::List,
        &[Key::Code(C::Up), Key::Char('k')],
        Intent::Up,
        "cursor up",
        None,
    ),
    b(
        Scope::List,
        &[Key::Code(C::Down), Key::Char('j')],
        Intent::Down,
        "cursor down",
        Some("move"),
    ),
    b(
        Scope::List,
        &[Key::Code(C::PageUp)],
        Intent::PageUp,
        "a page up",
        None,
    ),
    b(
        Scope::List,
        &[Key::Code(C::PageDown)],
        Intent::PageDown,
        "a page down",
        None,
    ),
    b(
        Scope::List,
        &[Key::Code(C::Home), Key::Char('g')],
        Intent::First,
        "first",
        None,
    ),
    b(
        Scope::List,
        &[Key::Code(C::End), Key::Char('G')],
        Intent::Last,
        "last (the event log follows new entries again)",
        None,
    ),
    b(
        Scope::List,
        &[Key::Code(C::Esc)],
        Intent::Back,
        "clear the list's filter, else go back",
        None,
    ),
    b(
        Scope::Nodes,
        &[Key::Code(C::Enter)],
        Intent::Open,
        "the selected node's clients",
        Some("clients"),
    ),
    b(
        Scope::Overview,
        &[Key::Char('d')],
        Intent::Drain,
        "drain the selected node (asks first)",
        Some("drain"),
    ),
    b(
        Scope::Overview,
        &[Key::Char('u')],
        Intent::Undrain,
        "undrain the selected node (asks first)",
        Some("undrain"),
    ),
    b(
        Scope::Overview,
        &[Key::Char('r')],
        Intent::Rebalance,
        "run a rebalance round (asks first)",
        Some("rebalance"),
    ),
    b(
        Scope::Clients,
        &[Key::Char('m')],
        Intent::Migrate,
        "migrate the selected client (pick the target)",
        Some("migrate"),
    ),
    b(
        Scope::Clients,
        &[Key::Code(C::Esc)],
        Intent::Back,
        "back to the nodes",
        Some("nodes"),
    ),
    b(
        Scope::Primaries,
        &[Key::Code(C::Enter)],
        Intent::Open,
        "browse the rows under the selected key, live",
        Some("rows"),
    ),
    b(
        Scope::Rows,
        &[Key::Char('/')],
        Intent::Query,
        "query the rows' data: only matches, kept live",
        Some("query"),
    ),
    b(
        Scope::Rows,
        &[Key::Code(C::Esc), Key::Code(C::Backspace)],
        Intent::Back,
        "clear the query, else back to the primary keys",
        Some("keys"),
    ),
    b(
        Scope::Zones,
        &[
            Key::Code(C::Up),
            Key::Code(C::Down),
            Key::Code(C::Left),
            Key::Code(C::Right),
        ],
        Intent::Up,
        "scroll the map (when it is larger than the screen)",
        Some("scroll"),
    ),
    b(
        Scope::Picker,
        &[Key::Code(C::Enter)],
        Intent::Open,
        "migrate to the selected node",
        Some("move here"),
    ),
    b(
        Scope::Picker,
        &[Key::Code(C::Esc), Key::Char('q')],
        Intent::No,
        "cancel",
        Some("cancel"),
    ),
    b(
        Scope::Confirm,
        &[Key::Char('y'), Key::Char('Y')],
        Intent::Yes,
        "yes, do it",
        Some("yes"),
    ),
    b(
        Scope::Confirm,
        &[Key::Char('n'), Key::Char('N'), Key::Code(C::Esc)],
        Intent::No,
        "no, cancel",
        Some("no"),
    ),
    b(
        Scope::Filter,
        &[Key::Code(C::Enter)],
        Intent::KeepFilter,
        "keep the filter",
        Some("keep"),
    ),
    b(
        Scope::Filter,
        &[Key::Code(C::Esc)],
        Intent::ClearFilter,
        "clear the filter",
        Some("clear"),
    ),
    b(
        Scope::Filter,
        &[Key::Code(C::Backspace)],
        Intent::DeleteChar,
        "delete a character (other keys type)",
        None,
    ),
    b(
        Scope::Query,
        &[Key::Code(C::Enter)],
        Intent::KeepFilter,
        "run it (players < 10 sort -players limit 20)",
        Some("run"),
    ),
    b(
        Scope::Query,
        &[Key::Code(C::Esc)],
        Intent::ClearFilter,
        "clear the query: every row again",
        Some("clear"),
    ),
    b(
        Scope::Query,
        &[Key::Code(C::Backspace)],
        Intent::DeleteChar,
        "delete a character (other keys type)",
        None,
    ),
    b(
        Scope::Help,
        &[Key::Code(C::Up), Key::Char('k')],
        Intent::Up,
        "scroll up",
        None,
    ),
    b(
        Scope::Help,
        &[Key::Code(C::Down), Key::Char('j')],
        Intent::Down,
        "scroll down",
        Some("scroll"),
    ),
    b(
        Scope::Help,
        &[Key::Code(C::Esc), Key::Char('?'), Key::Char('q')],
        Intent::No,
        "close",
        Some("close"),
    ),
];

/// The intent of `key` in the first of `scopes` that binds it.
pub fn lookup(scopes: &[Scope], key: &KeyEvent) -> Option<Intent> {
    scopes.iter().find_map(|&scope| {
        BINDINGS
            .iter()
            .filter(|b| b.scope == scope)
            .find_map(|b| b.keys.iter().find(|k| k.matches(key)).map(|k| (b, *k)))
            .map(|(b, k)| zone_scroll_intent(b, k))
    })
}

/// The zone map has one help line for its four arrows; each arrow scrolls its own way.
fn zone_scroll_intent(b: &Binding, k: Key) -> Intent {
    if b.scope != Scope::Zones {
        return b.intent;
    }
    match k {
        Key::Code(C::Down) => Intent::Down,
        Key::Code(C::Left) => Intent::Left,
        Key::Code(C::Right) => Intent::Right,
        _ => Intent::Up,
    }
}

/// The help bar for the active scopes: `key word` pairs, most specific first.
pub fn bar(scopes: &[Scope]) -> Vec<(String, &'static str)> {
    scopes
        .iter()
        .flat_map(|&scope| BINDINGS.iter().filter(move |b| b.scope == scope))
        .filter_map(|b| {
            let word = b.bar?;
            let key = match (b.scope, b.intent) {
                // Arrows read better as a pair.
                (Scope::List, Intent::Down) | (Scope::Help, Intent::Down) => "↑↓".to_owned(),
                (Scope::Zones, _) => "←↑↓→".to_owned(),
                _ => b.keys[0].label(),
            };
            Some((key, word))
        })
        .collect()
}

/// The help overlay's sections: a heading and its `(keys, what)` lines.
pub fn help_sections() -> Vec<(&'static str, Vec<(String, &'static str)>)> {
    let mut sections: Vec<(Scope, Vec<(String, &'static str)>)> = Vec::new();
    for b in BINDINGS {
        let line = (b.keys_label(), b.help);
        match sections.iter_mut().find(|(s, _)| *s == b.scope) {
            Some((_, lines)) => lines.push(line),
            None => sections.push((b.scope, vec![line])),
        }
    }
    sections
        .into_iter()
        .map(|(s, lines)| (s.heading(), lines))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn the_most_specific_scope_wins() {
        let esc = key(KeyCode::Esc);
        assert_eq!(
            lookup(&[Scope::Clients, Scope::Global], &esc),
            Some(Intent::Back)
        );
        assert_eq!(lookup(&[Scope::Nodes, Scope::Global], &esc), None);
        let q = key(KeyCode::Char('q'));
        assert_eq!(
            lookup(&[Scope::Picker, Scope::Global], &q),
            Some(Intent::No)
        );
        assert_eq!(
            lookup(&[Scope::Nodes, Scope::Global], &q),
            Some(Intent::Quit)
        );
    }

    #[test]
    fn ctrl_c_is_not_c_and_shift_is_in_the_char() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(lookup(&[Scope::Always], &ctrl_c), Some(Intent::Quit));
        let ctrl_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
        assert_eq!(lookup(&[Scope::Overview], &ctrl_d), None);
        let big_g = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(lookup(&[Scope::List], &big_g), Some(Intent::Last));
    }

    #[test]
    fn zone_arrows_scroll_their_own_way() {
        for (code, intent) in [
            (KeyCode::Up, Intent::Up),
            (KeyCode::Down, Intent::Down),
            (KeyCode::Left, Intent::Left),
            (KeyCode::Right, Intent::Right),
        ] {
            assert_eq!(lookup(&[Scope::Zones], &key(code)), Some(intent));
        }
    }

    #[test]
    fn help_comes_from_the_table() {
        let sections = help_sections();
        let overview = sections
            .iter()
            .find(|(h, _)| *h == Scope::Overview.heading())
            .expect("overview section");
        assert!(overview
            .1
            .iter()
            .any(|(k, what)| k == "d" && what.contains("drain")));
        let bar = bar(&[Scope::Confirm]);
        assert_eq!(bar, vec![("y".to_owned(), "yes"), ("n".to_owned(), "no")]);
    }
}
