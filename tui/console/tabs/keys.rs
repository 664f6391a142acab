//! The key browser: the primary keys with their row counts (asked for on a timer while the
//! tab is shown), then the rows under the one opened, followed live through the watch (the
//! run loop reopens it browsing that key). A query typed in the query bar ([`query`]) shows
//! only the matching rows, in its order: the node evaluates it mesh-wide, and it is asked
//! again whenever the watch reports a change under the key, and on a timer.

pub mod query;

use cloudmesh::admin::{AdminError, PrimaryInfo, Response, RowInfo};

use crate::console::keymap::{Intent, Scope};
use crate::console::list::ListView;
use crate::console::popups::Popup;
use crate::console::requests::{Action, Poll, PollClock};
use crate::console::text::first_line;

use super::Reply;
use query::{QueryBar, QUERY_EVERY_MS, QUERY_MIN_GAP_MS};

/// How often the primary keys are asked for while the key browser shows them, ms.
pub const PRIMARIES_EVERY_MS: u64 = 3_000;

/// How long a changed row stays highlighted in the key browser, ms.
pub const ROW_FLASH_MS: u64 = 2_000;

/// A row in the key browser.
#[derive(Debug, Clone)]
pub struct RowEntry {
    /// As last reported.
    pub info: RowInfo,
    /// When the console last saw it change (0: it came with the snapshot).
    pub changed_at_ms: u64,
}

/// The key browser's own state.
#[derive(Debug, Default)]
pub struct KeysTab {
    /// Primary keys with row counts.
    pub primaries: Vec<PrimaryInfo>,
    /// Why the key list may be stale or incomplete.
    pub primaries_note: Option<String>,
    /// Whether an answer to the key listing came yet.
    pub primaries_loaded: bool,
    /// Cursor and filter over `primaries`.
    pub primary_view: ListView,
    /// The primary key whose rows are browsed.
    pub browsing: Option<String>,
    /// Whether the snapshot of the browsed rows came yet.
    pub rows_loaded: bool,
    /// Rows under `browsing`, in (secondary, owner) order.
    pub rows: Vec<RowEntry>,
    /// Cursor and filter over the rows shown ([`KeysTab::shown_rows`]).
    pub row_view: ListView,
    /// The query bar: when a query is in force, only its matches are shown.
    pub query: QueryBar,
    primaries_poll: PollClock,
}

impl KeysTab {
    /// The rows on screen: the query's matches when one is in force and answered, else
    /// every row under the key.
    pub fn shown_rows(&self) -> &[RowEntry] {
        match (&self.query.active, &self.query.rows) {
            (Some(_), Some(rows)) => rows.as_slice(),
            (Some(_), None) => &[],
            (None, _) => self.rows.as_slice(),
        }
    }

    /// The row under the rows cursor.
    pub fn selected_row(&self) -> Option<&RowEntry> {
        self.row_view
            .selected_item()
            .and_then(|i| self.shown_rows().get(i))
    }

    /// Whether the rows shown came yet (the snapshot, or the query's first answer).
    pub fn shown_loaded(&self) -> bool {
        match &self.query.active {
            Some(_) => self.query.rows.is_some(),
            None => self.rows_loaded,
        }
    }

    /// The key scopes in force here, most specific first.
    pub fn scopes(&self) -> Vec<Scope> {
        if self.browsing.is_some() {
            vec![Scope::Rows, Scope::List]
        } else {
            vec![Scope::Primaries, Scope::List]
        }
    }

    /// The list shown: what the cursor keys and `/` act on.
    pub fn list(&self) -> &ListView {
        if self.browsing.is_some() {
            &self.row_view
        } else {
            &self.primary_view
        }
    }

    /// The list shown, to edit its filter.
    pub fn list_mut(&mut self) -> &mut ListView {
        if self.browsing.is_some() {
            &mut self.row_view
        } else {
            &mut self.primary_view
        }
    }

    /// Recomputes which items of the list shown pass its filter, keeping the cursor on its
    /// item.
    pub fn refilter(&mut self) {
        if self.browsing.is_some() {
            self.refilter_rows(self.row_to_keep());
        } else {
            let keep = self.selected_primary().map(|p| p.primary.clone());
            self.refilter_primaries(keep);
        }
    }

    fn selected_primary(&self) -> Option<&PrimaryInfo> {
        self.primary_view
            .selected_item()
            .and_then(|i| self.primaries.get(i))
    }

    fn refilter_primaries(&mut self, keep: Option<String>) {
        self.primary_view.rebuild(
            self.primaries.iter(),
            |p, f| p.primary.to_lowercase().contains(f),
            |p| Some(&p.primary) == keep.as_ref(),
        );
    }

    /// The row under the cursor, by (secondary, owner), to find it again after the rows
    /// changed.
    fn row_to_keep(&self) -> Option<(u32, String)> {
        self.selected_row()
            .map(|r| (r.info.secondary, r.info.owner.clone()))
    }

    fn refilter_rows(&mut self, keep: Option<(u32, String)>) {
        let shown = match (&self.query.active, &self.query.rows) {
            (Some(_), Some(rows)) => rows.as_slice(),
            (Some(_), None) => &[],
            (None, _) => self.rows.as_slice(),
        };
        self.row_view.rebuild(shown.iter(), row_matches, |r| {
            keep.as_ref()
                .is_some_and(|(s, o)| r.info.secondary == *s && r.info.owner == *o)
        });
    }

    /// What a key does here.
    pub fn handle(&mut self, intent: Intent) -> Option<Reply> {
        match intent {
            Intent::Open => {
                if self.browsing.is_some() {
                    return None;
                }
                let key = self.selected_primary()?.primary.clone();
                self.browsing = Some(key.clone());
                self.query.clear();
                self.rows.clear();
                self.rows_loaded = false;
                self.row_view = ListView::default();
                Some(Reply::Act(Action::Browse { key: Some(key) }))
            }
            Intent::Back => {
                if !self.list().filter.is_empty() {
                    self.list_mut().filter.clear();
                    self.refilter();
                    return None;
                }
                self.browsing.as_ref()?;
                if self.query.shown() || !self.query.text.is_empty() {
                    self.clear_query();
                    return None;
                }
                self.browsing = None;
                self.rows.clear();
                self.rows_loaded = false;
                // The list may have changed while the rows were shown.
                self.primaries_poll.ask_soon();
                Some(Reply::Act(Action::Browse { key: None }))
            }
            Intent::Query if self.browsing.is_some() => Some(Reply::Open(Popup::Query)),
            other => {
                self.list_mut().cursor(other);
                None
            }
        }
    }

    /// Enter in the query bar: the bar's text becomes the query in force (asked at once),
    /// or, empty, clears it. A limit that is not a number is said in the bar; the node
    /// checks the rest. Returns whether the bar's typing ends.
    pub fn run_query(&mut self) -> bool {
        let text = self.query.text.trim().to_owned();
        if text.is_empty() {
            self.clear_query();
            return true;
        }
        match query::split(&text) {
            Ok(q) => {
                let keep = self.row_to_keep();
                self.query.keep = keep.clone();
                self.query.active = Some(q);
                self.query.rows = None;
                self.query.truncated = false;
                self.query.note = None;
                self.query.error = false;
                self.query.poll = PollClock::default();
                self.refilter_rows(keep);
                true
            }
            Err(e) => {
                // As when the node refuses it: no query in force (whose answers would
                // overwrite the error), every row shows, the text stays to be fixed.
                let keep = self.row_to_keep();
                self.query.active = None;
                self.query.rows = None;
                self.query.note = Some(e);
                self.query.error = true;
                self.refilter_rows(keep);
                false
            }
        }
    }

    /// Esc: no query, every row under the key again (the watch kept them current).
    pub fn clear_query(&mut self) {
        let keep = self.row_to_keep();
        self.query.clear();
        self.refilter_rows(keep);
    }

    /// The answer to the query poll `asked` (of `key`), at `now_ms`. An answer to a query no
    /// longer in force is dropped. A malformed query is said in the bar and no longer asked;
    /// a failure to ask keeps it (the next tick asks again).
    pub fn query_answered(
        &mut self,
        key: &str,
        asked: &cloudmesh::admin::KeysQuery,
        result: Result<Response, String>,
        now_ms: u64,
    ) {
        if self.browsing.as_deref() != Some(key) || self.query.active.as_ref() != Some(asked) {
            return;
        }
        self.query.poll.in_flight = false;
        match result {
            Ok(Response::Rows {
                rows,
                truncated,
                incomplete,
            }) => {
                let keep = self.row_to_keep().or(self.query.keep.take());
                let before = self.query.rows.take();
                let rows = rows
                    .into_iter()
                    .map(|info| {
                        // A row new to the result, or changed, flashes (not on the first
                        // answer: nothing changed then).
                        let changed_at_ms = match &before {
                            None => 0,
                            Some(old) => old
                                .iter()
                                .find(|o| {
                                    o.info.secondary == info.secondary && o.info.owner == info.owner
                                })
                                .map_or(now_ms, |o| {
                                    if o.info.version == info.version {
                                        o.changed_at_ms
                                    } else {
                                        now_ms
                                    }
                                }),
                        };
                        RowEntry {
                            info,
                            changed_at_ms,
                        }
                    })
                    .collect();
                self.query.rows = Some(rows);
                self.query.truncated = truncated;
                self.query.error = false;
                self.query.note = (!incomplete.is_empty())
                    .then(|| format!("no answer from {}", incomplete.join(", ")));
                self.refilter_rows(keep);
            }
            Ok(Response::Error(e @ AdminError::InvalidQuery { .. }))
            | Ok(Response::Error(e @ AdminError::BadRequest { .. })) => {
                // The text stays in the bar to be fixed; every row shows meanwhile.
                let keep = self.row_to_keep().or(self.query.keep.take());
                self.query.active = None;
                self.query.rows = None;
                self.query.note = Some(first_line(&e.to_string()).to_owned());
                self.query.error = true;
                self.refilter_rows(keep);
            }
            Ok(Response::Error(e)) => {
                self.query.note = Some(first_line(&e.to_string()).to_owned());
                self.query.error = true;
            }
            Ok(other) => tracing::debug!(?other, "query poll"),
            Err(e) => {
                self.query.note = Some(first_line(&e).to_owned());
                self.query.error = true;
            }
        }
    }

    /// The primary keys poll, when one is due (never while rows are shown: the watch
    /// carries them), or the query's while one is in force.
    pub fn due_poll(&mut self, now_ms: u64) -> Option<Poll> {
        if let (Some(key), Some(query)) = (&self.browsing, &self.query.active) {
            let poll = &self.query.poll;
            if poll.due(now_ms, QUERY_EVERY_MS)
                || (self.query.changed && poll.due(now_ms, QUERY_MIN_GAP_MS))
            {
                self.query.poll.start(now_ms);
                self.query.changed = false;
                return Some(Poll::Query {
                    key: key.clone(),
                    query: query.clone(),
                });
            }
            return None;
        }
        if self.browsing.is_none() && self.primaries_poll.due(now_ms, PRIMARIES_EVERY_MS) {
            self.primaries_poll.start(now_ms);
            return Some(Poll::Primaries);
        }
        None
    }

    /// The answer to the primary keys poll.
    pub fn primaries_answered(&mut self, result: Result<Response, String>) {
        self.primaries_poll.in_flight = false;
        match result {
            Ok(Response::Primaries {
                primaries,
                incomplete,
            }) => {
                let keep = self.selected_primary().map(|p| p.primary.clone());
                self.primaries = primaries;
                self.primaries_loaded = true;
                self.primaries_note = (!incomplete.is_empty())
                    .then(|| format!("no answer from {}", incomplete.join(", ")));
                self.refilter_primaries(keep);
            }
            Ok(Response::Error(e)) => {
                self.primaries_note = Some(first_line(&e.to_string()).to_owned())
            }
            Ok(other) => tracing::debug!(?other, "keys poll"),
            Err(e) => self.primaries_note = Some(first_line(&e).to_owned()),
        }
    }

    /// The rows a watch snapshot brought, when browsing (a snapshot for no key has none).
    pub fn snapshot_rows(&mut self, rows: Option<Vec<RowInfo>>) {
        if self.browsing.is_none() {
            return;
        }
        let Some(rows) = rows else {
            return;
        };
        self.rows = rows
            .into_iter()
            .map(|info| RowEntry {
                info,
                changed_at_ms: 0,
            })
            .collect();
        self.rows
            .sort_by(|a, b| row_order(&a.info).cmp(&row_order(&b.info)));
        self.rows_loaded = true;
        self.query.changed = true;
        self.refilter_rows(self.row_to_keep());
    }

    /// A row changed, at `now_ms`; kept if it is under the browsed key and newer.
    pub fn row_changed(&mut self, info: RowInfo, now_ms: u64) {
        if self.browsing.as_deref() != Some(info.primary.as_str()) {
            return;
        }
        // The query's result may have changed with it: asked again soon.
        self.query.changed = true;
        let keep = self.row_to_keep();
        let owner = info.owner.clone();
        let order = (info.secondary, owner.as_str());
        let entry = RowEntry {
            info,
            changed_at_ms: now_ms,
        };
        match self
            .rows
            .binary_search_by(|r| row_order(&r.info).cmp(&order))
        {
            Ok(i) => {
                if self.rows[i].info.version <= entry.info.version {
                    self.rows[i] = entry;
                }
            }
            Err(i) => self.rows.insert(i, entry),
        }
        self.refilter_rows(keep);
    }

    /// A row was deleted; it goes if it is under the browsed key.
    pub fn row_deleted(&mut self, info: &RowInfo) {
        if self.browsing.as_deref() != Some(info.primary.as_str()) {
            return;
        }
        self.query.changed = true;
        let order = row_order(info);
        if let Ok(i) = self
            .rows
            .binary_search_by(|r| row_order(&r.info).cmp(&order))
        {
            // A deletion carries its own, newer version; an older one is stale.
            if self.rows[i].info.version <= info.version {
                let keep = self.row_to_keep();
                self.rows.remove(i);
                self.refilter_rows(keep);
            }
        }
    }

    /// The daemon refused the watch: a browse goes back to no key (the action that reopens
    /// the watch without one), else nothing changes.
    pub fn watch_refused(&mut self) -> Option<Action> {
        self.browsing.take()?;
        self.query.clear();
        self.rows.clear();
        Some(Action::Browse { key: None })
    }

    /// The daemon went away: whatever was asked will not be answered.
    pub fn connection_lost(&mut self) {
        self.primaries_poll = PollClock::default();
        self.query.poll = PollClock::default();
    }
}

fn row_order(r: &RowInfo) -> (u32, &str) {
    (r.secondary, r.owner.as_str())
}

fn row_matches(r: &&RowEntry, f: &str) -> bool {
    r.info.secondary.to_string().contains(f)
        || r.info.owner.contains(f)
        || r.info.node.to_lowercase().contains(f)
        || r.info.data.to_lowercase().contains(f)
}
