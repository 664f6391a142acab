//! The key browser: the primary keys, or the rows under one with the selected row's detail
//! below them (a row that just changed is highlighted for a moment), and the query bar above
//! them while a query is typed, in force, or refused.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Wrap};
use ratatui::Frame;

use super::format::{data_preview, fmt_hms};
use super::widgets::{pane, right, title, windowed_table, DIM, HEADER};
use crate::console::app::App;
use crate::console::popups::Popup;
use crate::console::tabs::keys::{KeysTab, ROW_FLASH_MS};

/// Draws the key browser in `area`.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let focused = !app.dialog_open();
    match &app.keys.browsing {
        None => draw_primaries(frame, &app.keys, area, focused),
        Some(primary) => {
            let typing = matches!(app.popup, Some(Popup::Query));
            let area = if typing || app.keys.query.shown() {
                let [bar, rest] =
                    Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
                draw_query_bar(frame, &app.keys, typing, bar);
                rest
            } else {
                area
            };
            draw_rows(frame, &app.keys, primary, app.now_ms, area, focused)
        }
    }
}

/// `query: TEXT` and what became of it: matches, a refusal naming the problem, or a note.
fn draw_query_bar(frame: &mut Frame, keys: &KeysTab, typing: bool, area: Rect) {
    let q = &keys.query;
    let mut spans = vec![
        Span::styled(" query: ", HEADER),
        Span::styled(
            q.text.clone(),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ),
    ];
    if typing {
        spans.push(Span::styled("▏", Style::new().fg(Color::Yellow)));
    }
    let status = match (&q.note, &q.rows) {
        (Some(note), _) if q.error => Some(Span::styled(
            format!("  ✗ {note}"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        (note, Some(rows)) if q.active.is_some() => {
            let more = if q.truncated { "+ (truncated)" } else { "" };
            let note = note.as_deref().map_or(String::new(), |n| format!("; {n}"));
            Some(Span::styled(
                format!("  {}{more} matching, live{note}", rows.len()),
                DIM,
            ))
        }
        (_, None) if q.active.is_some() => Some(Span::styled("  running…", DIM)),
        _ => None,
    };
    spans.extend(status);
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_primaries(frame: &mut Frame, keys: &KeysTab, area: Rect, focused: bool) {
    let t = title(
        "Primary keys".to_owned(),
        &keys.primary_view,
        keys.primaries.len(),
        keys.primaries_note
            .as_deref()
            .or((!keys.primaries_loaded).then_some("loading…")),
    );
    let header = Row::new([Cell::from("PRIMARY"), right("ROWS"), Cell::from("HELD ON")]);
    let widths = vec![
        Constraint::Fill(2),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    windowed_table(
        frame,
        area,
        pane(t, focused),
        Some(header),
        widths,
        &keys.primary_view,
        focused,
        |i| {
            let p = &keys.primaries[i];
            Row::new([
                Cell::from(p.primary.clone()),
                right(p.rows.to_string()),
                Cell::from(p.nodes.join(", ")),
            ])
        },
    );
}

fn draw_rows(
    frame: &mut Frame,
    keys: &KeysTab,
    primary: &str,
    now: u64,
    area: Rect,
    focused: bool,
) {
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(6)]).areas(area);
    let shown = keys.shown_rows();
    let name = match keys.query.active {
        Some(_) => format!("Rows under {primary} matching the query"),
        None => format!("Rows under {primary}"),
    };
    let mut t = title(
        name,
        &keys.row_view,
        shown.len(),
        (!keys.shown_loaded()).then_some("loading…"),
    );
    t.spans
        .push(Span::styled("live ", Style::new().fg(Color::Green)));
    let node_w = shown
        .iter()
        .map(|r| r.info.node.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 20) as u16;
    let widths = vec![
        Constraint::Length(9),
        Constraint::Length(16),
        Constraint::Length(node_w),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let header = Row::new([
        right("SECONDARY"),
        Cell::from("OWNER"),
        Cell::from("NODE"),
        right("VERSION"),
        right("SIZE"),
        Cell::from("DATA"),
    ]);
    windowed_table(
        frame,
        table_area,
        pane(t, focused),
        Some(header),
        widths,
        &keys.row_view,
        focused,
        |i| {
            let Some(r) = shown.get(i) else {
                return Row::new([Cell::from("")]);
            };
            let row = Row::new([
                right(r.info.secondary.to_string()),
                Cell::from(r.info.owner.clone()),
                Cell::from(r.info.node.clone()),
                right(r.info.version.to_string()),
                right(r.info.size.to_string()),
                Cell::from(data_preview(&r.info.data, &r.info.encoding, 200)),
            ]);
            if r.changed_at_ms > 0 && now.saturating_sub(r.changed_at_ms) < ROW_FLASH_MS {
                row.style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))
            } else {
                row
            }
        },
    );
    let detail = match keys.selected_row() {
        Some(r) => {
            let i = &r.info;
            Text::from(vec![
                Line::from(vec![
                    Span::styled(format!("{}/{}", i.primary, i.secondary), HEADER),
                    Span::raw(format!(
                        "  owner {}  on {}  version {}  {} bytes {}  updated {} UTC",
                        i.owner,
                        i.node,
                        i.version,
                        i.size,
                        i.encoding,
                        fmt_hms(i.updated_at_ms)
                    )),
                ]),
                Line::from(data_preview(&i.data, &i.encoding, 4_000)),
            ])
        }
        None => Text::from(Span::styled(
            match (keys.shown_loaded(), keys.query.active.is_some()) {
                (true, true) => "no row matches the query (rows appear here as they come to match)",
                (true, false) => "no rows under this key (rows appear here as they are posted)",
                (false, _) => "waiting for the rows…",
            },
            DIM,
        )),
    };
    frame.render_widget(
        Paragraph::new(detail)
            .wrap(Wrap { trim: false })
            .block(pane(Line::from(" Row "), false)),
        detail_area,
    );
}
