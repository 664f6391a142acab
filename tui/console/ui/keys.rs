//! The key browser: the primary keys, or the rows under one with the selected row's detail
//! below them (a row that just changed is highlighted for a moment).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Wrap};
use ratatui::Frame;

use super::format::{data_preview, fmt_hms};
use super::widgets::{pane, right, title, windowed_table, DIM, HEADER};
use crate::console::app::App;
use crate::console::tabs::keys::{KeysTab, ROW_FLASH_MS};

/// Draws the key browser in `area`.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let focused = !app.dialog_open();
    match &app.keys.browsing {
        None => draw_primaries(frame, &app.keys, area, focused),
        Some(primary) => draw_rows(frame, &app.keys, primary, app.now_ms, area, focused),
    }
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
    let mut t = title(
        format!("Rows under {primary}"),
        &keys.row_view,
        keys.rows.len(),
        (!keys.rows_loaded).then_some("loading…"),
    );
    t.spans
        .push(Span::styled("live ", Style::new().fg(Color::Green)));
    let node_w = keys
        .rows
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
            let r = &keys.rows[i];
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
            if keys.rows_loaded {
                "no rows under this key (rows appear here as they are posted)"
            } else {
                "waiting for the rows…"
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
