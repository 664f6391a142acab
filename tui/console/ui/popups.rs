//! The dialogs over the views: the help overlay, a confirmation, the migration target
//! picker. (Typing a filter shows in the help bar instead.)

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Wrap};
use ratatui::Frame;

use super::widgets::{centered, right, state_style, windowed_table, ACCENT, DIM, HEADER};
use crate::console::app::App;
use crate::console::keymap;
use crate::console::popups::confirm::ConfirmPopup;
use crate::console::popups::migrate::MigratePicker;

/// The help overlay, scrolled `scroll` lines (stopped at the end).
pub fn draw_help(frame: &mut Frame, app: &App, area: Rect, scroll: u16) {
    let mut lines = Vec::new();
    for (heading, bindings) in keymap::help_sections() {
        lines.push(Line::from(Span::styled(
            heading,
            Style::new().fg(ACCENT).add_modifier(Modifier::BOLD),
        )));
        for (keys, what) in bindings {
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<18}"), HEADER),
                Span::raw(what),
            ]));
        }
    }
    lines.push(Line::from(""));
    if let Some(path) = &app.log_path {
        lines.push(Line::from(Span::styled(format!("log: {path}"), DIM)));
    }
    let at = centered(area, 78, area.height.saturating_sub(2));
    let inner_h = at.height.saturating_sub(2);
    let max_scroll = (lines.len() as u16).saturating_sub(inner_h);
    let scroll = scroll.min(max_scroll);
    let more = if max_scroll > 0 {
        format!(" ↑↓ scroll ({}/{}) ", scroll, max_scroll)
    } else {
        String::new()
    };
    let block = Block::bordered()
        .title(Line::from(Span::styled(" Keys ", HEADER)))
        .title_bottom(Line::from(format!(" ? or Esc closes{more}")))
        .border_style(Style::new().fg(ACCENT));
    frame.render_widget(Clear, at);
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), at);
}

/// A yes/no question.
pub fn draw_confirm(frame: &mut Frame, area: Rect, confirm: &ConfirmPopup) {
    let (question, detail) = (&confirm.question, &confirm.detail);
    // Border, question, blank, the detail wrapped at 60, blank, the keys.
    let detail_lines = detail.chars().count().div_ceil(58).max(1) as u16;
    let at = centered(area, 64, 6 + detail_lines);
    let text = Text::from(vec![
        Line::from(Span::styled(question.to_owned(), HEADER)),
        Line::from(""),
        Line::from(detail.to_owned()),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)),
            Span::raw(" yes    "),
            Span::styled("n", Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)),
            Span::raw(" / "),
            Span::styled("Esc", Style::new().fg(ACCENT).add_modifier(Modifier::BOLD)),
            Span::raw(" no"),
        ]),
    ]);
    let block = Block::bordered()
        .title(Line::from(Span::styled(" Confirm ", HEADER)))
        .border_style(Style::new().fg(Color::Yellow));
    frame.render_widget(Clear, at);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
        at,
    );
}

/// The nodes a client can move to, with their state and load.
pub fn draw_picker(frame: &mut Frame, app: &App, area: Rect, picker: &MigratePicker) {
    let MigratePicker {
        client,
        from,
        choices,
        view,
    } = picker;
    let h = (choices.len() as u16 + 3).min(area.height.saturating_sub(2));
    let at = centered(area, 64, h);
    let t = Line::from(vec![Span::styled(
        format!(" Migrate {client} (on {from}) to… "),
        HEADER,
    )]);
    let block = Block::bordered()
        .title(t)
        .border_style(Style::new().fg(Color::Yellow));
    frame.render_widget(Clear, at);
    let header = Row::new([Cell::from("NODE"), Cell::from("STATE"), right("CLIENTS")]);
    let widths = vec![
        Constraint::Fill(1),
        Constraint::Length(10),
        Constraint::Length(11),
    ];
    windowed_table(frame, at, block, Some(header), widths, view, true, |i| {
        let name = choices.get(i).map_or("", String::as_str);
        match app.nodes.iter().find(|n| n.info.name == name) {
            Some(n) => {
                let row = Row::new([
                    Cell::from(name.to_owned()),
                    Cell::from(n.info.state.clone()).style(state_style(&n.info.state)),
                    right(format!("{}/{}", n.info.clients, n.info.capacity)),
                ]);
                if n.info.state == "Active" {
                    row
                } else {
                    row.style(DIM)
                }
            }
            None => Row::new([name.to_owned()]),
        }
    });
}
