//! The events tab: the whole event log, one line per entry, coloured by what it is about.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row};
use ratatui::Frame;

use super::format::fmt_hms;
use super::widgets::{pane, title, windowed_table, DIM};
use crate::console::app::App;
use crate::console::event_log::{LogEntry, LogKind};

/// Draws the event log in `area`.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let focused = !app.dialog_open();
    let log = &app.log;
    let mut t = title(
        "Event log, UTC".to_owned(),
        &log.view,
        log.entries.len(),
        None,
    );
    t.spans.push(Span::styled(
        if log.follow {
            "following new events "
        } else {
            "paused (End follows) "
        },
        DIM,
    ));
    windowed_table(
        frame,
        area,
        pane(t, focused),
        None,
        vec![Constraint::Length(8), Constraint::Fill(1)],
        &log.view,
        focused && !log.follow,
        |i| log_row(&log.entries[i]),
    );
}

/// One entry: its time, and what happened in its kind's colour.
pub fn log_row(e: &LogEntry) -> Row<'static> {
    Row::new([
        Cell::from(fmt_hms(e.at_ms)).style(DIM),
        Cell::from(e.text.clone()).style(log_style(e.kind)),
    ])
}

fn log_style(kind: LogKind) -> Style {
    match kind {
        LogKind::Join => Style::new().fg(Color::Green),
        LogKind::Loss | LogKind::Error => Style::new().fg(Color::Red),
        LogKind::Host => Style::new().fg(Color::Yellow),
        LogKind::Drain => Style::new().fg(Color::Magenta),
        LogKind::Migration => Style::new().fg(Color::Cyan),
        LogKind::Action => Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD),
        LogKind::Info => Style::new(),
        LogKind::Connection => Style::new().fg(Color::LightRed),
    }
}
