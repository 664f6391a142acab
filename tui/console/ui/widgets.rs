//! What every view draws with: the styles, bordered panes and their titles, and tables that
//! build only the rows that fit on screen while keeping the cursor in view.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Row, Table, TableState};
use ratatui::Frame;

use crate::console::list::ListView;

pub const ACCENT: Color = Color::Cyan;
pub const DIM: Style = Style::new().fg(Color::DarkGray);
pub const HEADER: Style = Style::new().add_modifier(Modifier::BOLD);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const SELECTED_UNFOCUSED: Style = Style::new().add_modifier(Modifier::BOLD);

/// A bordered block whose border says whether it has the cursor.
pub fn pane<'a>(title: Line<'a>, focused: bool) -> Block<'a> {
    let block = Block::bordered().title(title);
    if focused {
        block.border_style(Style::new().fg(ACCENT))
    } else {
        block.border_style(DIM)
    }
}

/// A pane title: the name, the count, the filter and any note.
pub fn title<'a>(name: String, view: &ListView, total: usize, note: Option<&str>) -> Line<'a> {
    let mut spans = vec![Span::styled(format!(" {name} "), HEADER)];
    let shown = view.visible.len();
    spans.push(Span::raw(if shown == total {
        format!("({total}) ")
    } else {
        format!("({shown} of {total}) ")
    }));
    if !view.filter.is_empty() {
        spans.push(Span::styled(
            format!("/{} ", view.filter),
            Style::new().fg(Color::Yellow),
        ));
    }
    if let Some(note) = note {
        spans.push(Span::styled(
            format!("{note} "),
            Style::new().fg(Color::Red),
        ));
    }
    Line::from(spans)
}

/// The rows of `view` that fit in `height` lines, keeping the cursor in view: the window's
/// start and end in `view.visible`.
pub fn window(view: &ListView, height: usize) -> (usize, usize) {
    let len = view.visible.len();
    let h = height.max(1);
    view.page.set(h);
    let sel = view.selected.min(len.saturating_sub(1));
    let mut off = view.offset.get();
    if sel < off {
        off = sel;
    } else if sel >= off + h {
        off = sel + 1 - h;
    }
    // No blank space at the bottom while there are rows above.
    off = off.min(len.saturating_sub(h));
    view.offset.set(off);
    (off, (off + h).min(len))
}

/// Renders a table over the window of `view` that fits `area` (inside a border, under a
/// header), building only those rows.
#[allow(clippy::too_many_arguments)]
pub fn windowed_table<'a>(
    frame: &mut Frame,
    area: Rect,
    block: Block<'a>,
    header: Option<Row<'a>>,
    widths: Vec<Constraint>,
    view: &ListView,
    focused: bool,
    row: impl Fn(usize) -> Row<'a>,
) {
    let header_h = usize::from(header.is_some());
    let inner = (area.height as usize).saturating_sub(2 + header_h);
    let (start, end) = window(view, inner);
    let rows: Vec<Row> = view.visible[start..end].iter().map(|&i| row(i)).collect();
    let mut table = Table::new(rows, widths)
        .block(block)
        .column_spacing(1)
        .highlight_symbol("▶ ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(if focused {
            SELECTED
        } else {
            SELECTED_UNFOCUSED
        });
    if let Some(h) = header {
        table = table.header(h.style(HEADER));
    }
    let mut state = TableState::default();
    if !view.visible.is_empty() {
        state.select(Some(view.selected.min(end.saturating_sub(1)) - start));
    }
    frame.render_stateful_widget(table, area, &mut state);
}

/// A right-aligned cell (numbers).
pub fn right<'a>(text: impl Into<String>) -> Cell<'a> {
    Cell::from(Line::from(text.into()).right_aligned())
}

/// The colour of a node's state.
pub fn state_style(state: &str) -> Style {
    match state {
        "Active" => Style::new().fg(Color::Green),
        "Joining" => Style::new().fg(Color::Cyan),
        "Draining" => Style::new().fg(Color::Yellow),
        "Drained" => Style::new().fg(Color::Magenta),
        _ => Style::new(),
    }
}

/// A rectangle of at most `w`×`h` in the middle of `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}
