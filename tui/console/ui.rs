//! Drawing the console: a pure function of the [`App`] (and the frame's size) onto any
//! ratatui backend. The only thing it writes back is each list's scroll offset and page
//! height (in `Cell`s), so the cursor stays on screen as it moves.
//!
//! This module lays the screen out (header, the tab shown, status line, help bar, a dialog
//! over it); each tab and the dialogs draw in their own module, with the pieces in
//! [`widgets`] and [`format`]. Lists build rows only for what fits on screen, so thousands
//! of clients cost no more per frame than twenty.

mod events;
mod format;
mod keys;
mod overview;
mod popups;
mod widgets;
mod zones;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Tabs, Wrap};
use ratatui::Frame;

use super::app::{App, Conn};
use super::keymap::{self, Scope};
use super::popups::Popup;
use super::tabs::Tab;
use widgets::{ACCENT, DIM};

/// The smallest terminal the console draws in.
pub const MIN_WIDTH: u16 = 80;
/// The smallest terminal the console draws in.
pub const MIN_HEIGHT: u16 = 24;

/// Draws the whole console.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area);
        return;
    }
    let [header, body, status, bar] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame, app, header);
    match app.tab {
        Tab::Overview => overview::draw(frame, app, body),
        Tab::Keys => keys::draw(frame, app, body),
        Tab::Zones => zones::draw(frame, app, body),
        Tab::Events => events::draw(frame, app, body),
    }
    draw_status(frame, app, status);
    draw_bar(frame, app, bar);
    match &app.popup {
        Some(Popup::Help(help)) => popups::draw_help(frame, app, body, help.scroll),
        Some(Popup::Confirm(confirm)) => popups::draw_confirm(frame, body, confirm),
        Some(Popup::Migrate(picker)) => popups::draw_picker(frame, app, body, picker),
        // The filter being typed shows in the help bar, the query in the key browser's bar.
        Some(Popup::Filter | Popup::Query) | None => {}
    }
}

fn too_small(frame: &mut Frame, area: Rect) {
    let text = Text::from(vec![
        Line::from(format!(
            "terminal too small: {}×{}",
            area.width, area.height
        )),
        Line::from(format!(
            "the console needs at least {MIN_WIDTH}×{MIN_HEIGHT}"
        )),
        Line::from("(q quits)"),
    ]);
    // Room for the lines wrapped on a very narrow terminal.
    let h = 5.min(area.height);
    let top = area.y + area.height.saturating_sub(h) / 2;
    let at = Rect::new(area.x, top, area.width, h);
    frame.render_widget(
        Paragraph::new(text).centered().wrap(Wrap { trim: true }),
        at,
    );
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let right = match &app.local {
        Some(local) => format!(
            "{} nodes · via {local} ",
            app.nodes.iter().filter(|n| !n.lost).count()
        ),
        None => String::new(),
    };
    let [tabs_area, right_area] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(right.chars().count() as u16),
    ])
    .areas(area);
    let titles = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| format!("{} {}", i + 1, t.title()));
    let tabs = Tabs::new(titles)
        .select(app.tab.index())
        .style(DIM)
        .highlight_style(Style::new().fg(ACCENT).add_modifier(Modifier::BOLD))
        .divider("│");
    let brand = Span::styled(" cloudmesh ", Style::new().add_modifier(Modifier::BOLD));
    let [brand_area, tabs_area] =
        Layout::horizontal([Constraint::Length(11), Constraint::Fill(1)]).areas(tabs_area);
    frame.render_widget(brand, brand_area);
    frame.render_widget(tabs, tabs_area);
    frame.render_widget(Paragraph::new(right).style(DIM), right_area);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let line = match (app.conn_text(), &app.status) {
        (Some(text), _) => Line::from(Span::styled(
            format!(" {text}"),
            Style::new().fg(match app.conn {
                Conn::Connecting => Color::Yellow,
                _ => Color::Red,
            }),
        )),
        (None, Some(s)) => Line::from(Span::styled(
            format!(" {}", s.text),
            if s.error {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Green)
            },
        )),
        (None, None) => Line::from(""),
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_bar(frame: &mut Frame, app: &App, area: Rect) {
    // What this view's keys do on the left; the keys that work everywhere on the right, so
    // `? help` and `q quit` stay visible however narrow the terminal.
    let (global, local): (Vec<Scope>, Vec<Scope>) = app
        .scopes()
        .into_iter()
        .partition(|s| matches!(s, Scope::Global | Scope::Always));
    let mut left = Vec::new();
    if matches!(app.popup, Some(Popup::Filter)) {
        let text = app
            .filter_view()
            .map_or(String::new(), |v| v.filter.clone());
        left.push(Span::styled(
            format!(" /{text}▏ "),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    let hint = |spans: &mut Vec<Span<'static>>, key: String, word: &'static str| {
        spans.push(Span::styled(
            format!(" {key}"),
            Style::new().fg(ACCENT).add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(format!(" {word} ")));
    };
    for (key, word) in keymap::bar(&local) {
        hint(&mut left, key, word);
    }
    let mut right = Vec::new();
    for (key, word) in keymap::bar(&global) {
        // Nothing to filter on the zone map.
        if key == "/" && app.filter_view().is_none() {
            continue;
        }
        hint(&mut right, key, word);
    }
    let right_w: usize = right.iter().map(|s| s.content.chars().count()).sum();
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(right_w as u16)]).areas(area);
    let style = DIM.fg(Color::Gray);
    frame.render_widget(Paragraph::new(Line::from(left)).style(style), left_area);
    frame.render_widget(Paragraph::new(Line::from(right)).style(style), right_area);
}

#[cfg(test)]
mod tests;
