//! Drawing the console: a pure function of the [`App`] (and the frame's size) onto any
//! ratatui backend. The only thing it writes back is each list's scroll offset and page
//! height (in `Cell`s), so the cursor stays on screen as it moves.
//!
//! Lists build rows only for what fits on screen, so thousands of clients cost no more per
//! frame than twenty.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Cell, Clear, HighlightSpacing, Paragraph, Row, Table, TableState, Tabs, Wrap,
};
use ratatui::Frame;

use super::app::{App, Focus, ListView, LogEntry, LogKind, Modal, NodeRow, Tab, ROW_FLASH_MS};
use super::keymap::{self, Scope};

/// The smallest terminal the console draws in.
pub const MIN_WIDTH: u16 = 80;
/// The smallest terminal the console draws in.
pub const MIN_HEIGHT: u16 = 24;

const ACCENT: Color = Color::Cyan;
const DIM: Style = Style::new().fg(Color::DarkGray);
const HEADER: Style = Style::new().add_modifier(Modifier::BOLD);
const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
const SELECTED_UNFOCUSED: Style = Style::new().add_modifier(Modifier::BOLD);

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
        Tab::Overview => draw_overview(frame, app, body),
        Tab::Keys => draw_keys(frame, app, body),
        Tab::Zones => draw_zones(frame, app, body),
        Tab::Events => draw_events_tab(frame, app, body),
    }
    draw_status(frame, app, status);
    draw_bar(frame, app, bar);
    match &app.modal {
        Some(Modal::Help { scroll }) => draw_help(frame, app, body, *scroll),
        Some(Modal::Confirm {
            question, detail, ..
        }) => draw_confirm(frame, body, question, detail),
        Some(Modal::Picker {
            client,
            from,
            choices,
            view,
        }) => draw_picker(frame, app, body, client, from, choices, view),
        None => {}
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

// ----- overview -----

fn draw_overview(frame: &mut Frame, app: &App, area: Rect) {
    let wanted = app.node_view.visible.len() as u16 + 3;
    let most = (area.height * 45 / 100).max(6);
    let nodes_h = wanted.clamp(6, most);
    let [nodes, rest] =
        Layout::vertical([Constraint::Length(nodes_h), Constraint::Fill(1)]).areas(area);
    draw_nodes(frame, app, nodes);
    let [clients, log] = if rest.width >= 140 {
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(rest)
    } else {
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(rest)
    };
    draw_clients(frame, app, clients);
    draw_log_tail(frame, app, log);
}

/// A bordered block whose border says whether it has the cursor.
fn pane<'a>(title: Line<'a>, focused: bool) -> Block<'a> {
    let block = Block::bordered().title(title);
    if focused {
        block.border_style(Style::new().fg(ACCENT))
    } else {
        block.border_style(DIM)
    }
}

/// A pane title: the name, the count, the filter and any note.
fn title<'a>(name: String, view: &ListView, total: usize, note: Option<&str>) -> Line<'a> {
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
fn window(view: &ListView, height: usize) -> (usize, usize) {
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
fn windowed_table<'a>(
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

fn draw_nodes(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.tab == Tab::Overview && app.focus == Focus::Nodes && app.modal.is_none();
    let mut t = title(
        "Nodes".to_owned(),
        &app.node_view,
        app.nodes.len(),
        stale_note(app),
    );
    t.spans
        .push(Span::styled("★ host  ✗ unlinked  * this node ", DIM));
    let name_w = app
        .nodes
        .iter()
        .map(|n| n.info.name.chars().count() + usize::from(n.info.local))
        .max()
        .unwrap_or(4)
        .clamp(4, 24) as u16;
    // Fixed columns first; what is left goes to the sparkline, then the addresses.
    let fixed = [2, name_w, 12, 11, 7, 4, 7, 6];
    let inner = area.width.saturating_sub(2 + 2) as usize;
    let used: usize = fixed.iter().map(|w| *w as usize).sum::<usize>() + fixed.len() + 1;
    let rest = inner.saturating_sub(used);
    let spark_w = rest.min(24);
    let mut widths: Vec<Constraint> = fixed.iter().map(|w| Constraint::Length(*w)).collect();
    widths.push(Constraint::Length(spark_w as u16));
    widths.push(Constraint::Fill(1));
    let header = Row::new([
        Cell::from(""),
        Cell::from("NAME"),
        Cell::from("STATE"),
        right("CLIENTS"),
        right("ROWS"),
        right("CPU"),
        right("MEMORY"),
        right("MSGS/S"),
        Cell::from("HISTORY"),
        Cell::from("ADDRESSES"),
    ]);
    windowed_table(
        frame,
        area,
        pane(t, focused),
        Some(header),
        widths,
        &app.node_view,
        focused,
        |i| node_row(&app.nodes[i], spark_w),
    );
}

fn stale_note(app: &App) -> Option<&'static str> {
    match app.conn {
        super::app::Conn::Down { .. } => Some("(last known)"),
        _ => None,
    }
}

fn node_row(n: &NodeRow, spark_w: usize) -> Row<'static> {
    let info = &n.info;
    let mark = match (info.host, n.lost || !info.linked) {
        (true, true) => "★✗",
        (true, false) => "★",
        (false, true) => "✗",
        (false, false) => "",
    };
    let name = if info.local {
        format!("{}*", info.name)
    } else {
        info.name.clone()
    };
    let (state, state_style) = match n.drain {
        _ if n.lost => ("lost".to_owned(), Style::new().fg(Color::Red)),
        Some((moved, remaining)) if info.state == "Draining" => (
            format!("Draining {}%", moved * 100 / (moved + remaining).max(1)),
            state_style(&info.state),
        ),
        _ => (info.state.clone(), state_style(&info.state)),
    };
    let clients = if info.capacity > 0 {
        format!("{}/{}", info.clients, info.capacity)
    } else {
        info.clients.to_string()
    };
    let row = Row::new([
        Cell::from(mark).style(Style::new().fg(Color::Yellow)),
        Cell::from(name),
        Cell::from(state).style(state_style),
        right(clients),
        right(info.rows.to_string()),
        right(format!("{:.0}%", info.cpu_percent)),
        right(fmt_bytes(info.memory_bytes)),
        right(fmt_rate(info.msgs_per_sec)),
        Cell::from(sparkline(&n.history, spark_w)).style(Style::new().fg(Color::Green)),
        Cell::from(addresses(&info.addresses)),
    ]);
    if n.lost || !info.linked {
        row.style(DIM)
    } else {
        row
    }
}

/// A right-aligned cell (numbers).
fn right<'a>(text: impl Into<String>) -> Cell<'a> {
    Cell::from(Line::from(text.into()).right_aligned())
}

fn state_style(state: &str) -> Style {
    match state {
        "Active" => Style::new().fg(Color::Green),
        "Joining" => Style::new().fg(Color::Cyan),
        "Draining" => Style::new().fg(Color::Yellow),
        "Drained" => Style::new().fg(Color::Magenta),
        _ => Style::new(),
    }
}

fn addresses(a: &[String]) -> String {
    match a {
        [] => "-".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

fn draw_clients(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.tab == Tab::Overview && app.focus == Focus::Clients && app.modal.is_none();
    let selected = app.selected_node().map(|n| n.info.name.as_str());
    let current = selected.is_some() && app.clients_of.as_deref() == selected;
    let name = match selected {
        Some(n) => format!("Clients of {n}"),
        None => "Clients".to_owned(),
    };
    let (total, note) = if current {
        (app.clients.len(), app.clients_note.as_deref())
    } else if selected.is_some() {
        (0, Some(app.clients_note.as_deref().unwrap_or("loading…")))
    } else {
        (0, None)
    };
    let empty = ListView::default();
    let view = if current { &app.client_view } else { &empty };
    let mut t = title(name, view, total, note);
    if app.focus == Focus::Nodes && current && total > 0 {
        t.spans.push(Span::styled("Enter to select ", DIM));
    }
    let widths = vec![
        Constraint::Length(16),
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(5),
        Constraint::Length(9),
    ];
    let header = Row::new([
        Cell::from("ID"),
        Cell::from("ADDRESS"),
        right("RTT"),
        Cell::from("ZONE"),
        right("ROWS"),
        right("CONNECTED"),
    ]);
    let now = app.now_ms;
    windowed_table(
        frame,
        area,
        pane(t, focused),
        Some(header),
        widths,
        view,
        focused,
        |i| {
            let c = &app.clients[i];
            Row::new([
                Cell::from(c.id.clone()),
                Cell::from(c.address.clone()),
                right(format!("{:.1}ms", c.rtt_ms)),
                Cell::from(c.zone.map_or("-".to_owned(), |(x, y)| format!("{x},{y}"))),
                right(c.rows.to_string()),
                right(fmt_age(now.saturating_sub(c.connected_at_ms))),
            ])
        },
    );
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

fn log_row(e: &LogEntry) -> Row<'static> {
    Row::new([
        Cell::from(fmt_hms(e.at_ms)).style(DIM),
        Cell::from(e.text.clone()).style(log_style(e.kind)),
    ])
}

/// The newest events that fit, under the overview.
fn draw_log_tail(frame: &mut Frame, app: &App, area: Rect) {
    let t = title(
        "Events (UTC)".to_owned(),
        &app.log_view,
        app.log.len(),
        None,
    );
    let h = (area.height as usize).saturating_sub(2);
    let visible = &app.log_view.visible;
    let rows: Vec<Row> = visible[visible.len().saturating_sub(h)..]
        .iter()
        .filter_map(|&i| app.log.get(i))
        .map(log_row)
        .collect();
    let table = Table::new(rows, [Constraint::Length(8), Constraint::Fill(1)])
        .column_spacing(1)
        .block(pane(t, false));
    frame.render_widget(table, area);
}

fn draw_events_tab(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.modal.is_none();
    let mut t = title(
        "Event log, UTC".to_owned(),
        &app.log_view,
        app.log.len(),
        None,
    );
    t.spans.push(Span::styled(
        if app.log_follow {
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
        &app.log_view,
        focused && !app.log_follow,
        |i| log_row(&app.log[i]),
    );
}

// ----- key browser -----

fn draw_keys(frame: &mut Frame, app: &App, area: Rect) {
    let focused = app.modal.is_none();
    let Some(primary) = &app.browsing else {
        let t = title(
            "Primary keys".to_owned(),
            &app.primary_view,
            app.primaries.len(),
            app.primaries_note
                .as_deref()
                .or((!app.primaries_loaded).then_some("loading…")),
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
            &app.primary_view,
            focused,
            |i| {
                let p = &app.primaries[i];
                Row::new([
                    Cell::from(p.primary.clone()),
                    right(p.rows.to_string()),
                    Cell::from(p.nodes.join(", ")),
                ])
            },
        );
        return;
    };
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(6)]).areas(area);
    let mut t = title(
        format!("Rows under {primary}"),
        &app.row_view,
        app.rows.len(),
        (!app.rows_loaded).then_some("loading…"),
    );
    t.spans
        .push(Span::styled("live ", Style::new().fg(Color::Green)));
    let node_w = app
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
    let now = app.now_ms;
    windowed_table(
        frame,
        table_area,
        pane(t, focused),
        Some(header),
        widths,
        &app.row_view,
        focused,
        |i| {
            let r = &app.rows[i];
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
    let detail = match app.selected_row() {
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
            if app.rows_loaded {
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

/// Data for one line: control characters shown as symbols, long data cut.
fn data_preview(data: &str, encoding: &str, max_chars: usize) -> String {
    let prefix = if encoding == "hex" { "0x" } else { "" };
    let mut out: String = prefix.to_owned();
    for (n, c) in data.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        out.push(match c {
            '\n' => '↵',
            '\t' => '→',
            c if c.is_control() => '·',
            c => c,
        });
    }
    out
}

// ----- zones -----

/// A colour per node name, the same on every run and in every console.
pub fn node_color(name: &str) -> Color {
    const PALETTE: [Color; 12] = [
        Color::Cyan,
        Color::Green,
        Color::Yellow,
        Color::Magenta,
        Color::Blue,
        Color::Red,
        Color::LightCyan,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightMagenta,
        Color::LightBlue,
        Color::LightRed,
    ];
    // FNV-1a: stable across runs and builds (unlike the std hasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    PALETTE[h as usize % PALETTE.len()]
}

/// The letter a node's cells carry on the map (colour alone is not enough).
fn glyph(i: usize) -> char {
    const GLYPHS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    GLYPHS.get(i).map_or('#', |&b| b as char)
}

fn draw_zones(frame: &mut Frame, app: &App, area: Rect) {
    let Some(z) = &app.zones else {
        let msg = Paragraph::new(
            "No zone map: zones are off on this mesh, or the host has not published one yet.",
        )
        .wrap(Wrap { trim: true })
        .block(pane(Line::from(" Zone map "), true));
        frame.render_widget(msg, area);
        return;
    };
    // Owners in legend order: members oldest first, then names only the map knows.
    let mut owners: Vec<&str> = app.nodes.iter().map(|n| n.info.name.as_str()).collect();
    let mut extra: Vec<&str> = z
        .owners
        .iter()
        .map(String::as_str)
        .filter(|o| !o.is_empty() && !owners.contains(o))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    owners.extend(extra);

    let [grid_area, legend_area] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(38)]).areas(area);
    let t = Line::from(vec![
        Span::styled(" Zone map ", HEADER),
        Span::raw(format!(
            "{}×{} cells of {} units, x → y ↓ ",
            z.width, z.height, z.cell_size
        )),
    ]);
    let block = pane(t, true);
    let inner = block.inner(grid_area);
    frame.render_widget(block, grid_area);
    let cols = u32::from(inner.width / 2);
    let rows = u32::from(inner.height);
    let (sx, sy) = app.zone_scroll;
    let sx = sx.min(z.width.saturating_sub(cols));
    let sy = sy.min(z.height.saturating_sub(rows));
    let mut lines = Vec::new();
    for y in sy..(sy + rows).min(z.height) {
        let mut spans = Vec::new();
        for x in sx..(sx + cols).min(z.width) {
            let idx = (y as usize) * (z.width as usize) + x as usize;
            let owner = z.owners.get(idx).map_or("", String::as_str);
            match owners.iter().position(|o| *o == owner) {
                Some(i) if !owner.is_empty() => spans.push(Span::styled(
                    format!("{} ", glyph(i)),
                    Style::new().bg(node_color(owner)).fg(Color::Black),
                )),
                _ => spans.push(Span::styled("· ", DIM)),
            }
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines), inner);

    let mut legend = vec![Line::from(Span::styled(
        "   node       cells  clients",
        HEADER,
    ))];
    for (i, name) in owners.iter().enumerate() {
        let cells = z.owners.iter().filter(|o| o == name).count();
        let clients = app
            .nodes
            .iter()
            .find(|n| n.info.name == *name)
            .map_or("-".to_owned(), |n| n.info.clients.to_string());
        legend.push(Line::from(vec![
            Span::styled(
                format!("{} ", glyph(i)),
                Style::new().bg(node_color(name)).fg(Color::Black),
            ),
            Span::raw(format!(" {name:<10} {cells:>5}  {clients:>7}")),
        ]));
    }
    legend.push(Line::from(""));
    legend.push(Line::from(Span::styled(
        "Clients are counted per node: the daemon does not report per-cell counts.",
        DIM,
    )));
    if z.width > cols || z.height > rows {
        legend.push(Line::from(Span::styled(
            format!("Showing from cell {sx},{sy}; arrows scroll."),
            DIM,
        )));
    }
    frame.render_widget(
        Paragraph::new(legend)
            .wrap(Wrap { trim: false })
            .block(pane(Line::from(" Owners "), false)),
        legend_area,
    );
}

// ----- status line, help bar, dialogs -----

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let line = match (app.conn_text(), &app.status) {
        (Some(text), _) => Line::from(Span::styled(
            format!(" {text}"),
            Style::new().fg(match app.conn {
                super::app::Conn::Connecting => Color::Yellow,
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
    if app.editing_filter {
        let text = app
            .current_list()
            .map_or(String::new(), |k| app.view(k).filter.clone());
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
        if key == "/" && app.current_list().is_none() {
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

/// A rectangle of at most `w`×`h` in the middle of `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame, app: &App, area: Rect, scroll: u16) {
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

fn draw_confirm(frame: &mut Frame, area: Rect, question: &str, detail: &str) {
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

fn draw_picker(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    client: &str,
    from: &str,
    choices: &[String],
    view: &ListView,
) {
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

// ----- formatting -----

/// `HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
pub fn fmt_hms(at_ms: u64) -> String {
    let s = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A duration in ms as the largest two units (`4m03s`, `2h05m`, `3d04h`).
pub fn fmt_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// Bytes in binary units, short (`812K`, `12.3M`, `1.2G`).
pub fn fmt_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b}B")
    } else if f < K * K {
        format!("{:.0}K", f / K)
    } else if f < K * K * K {
        format!("{:.1}M", f / (K * K))
    } else {
        format!("{:.1}G", f / (K * K * K))
    }
}

/// A rate, short (`12`, `1.2k`, `3.4M`).
pub fn fmt_rate(r: f32) -> String {
    if !r.is_finite() || r < 0.0 {
        "-".to_owned()
    } else if r < 1_000.0 {
        format!("{r:.0}")
    } else if r < 1_000_000.0 {
        format!("{:.1}k", r / 1_000.0)
    } else {
        format!("{:.1}M", r / 1_000_000.0)
    }
}

/// The last `width` samples as block characters, scaled to their maximum (at least 1), right
/// aligned.
pub fn sparkline(history: &std::collections::VecDeque<f32>, width: usize) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = history.len().saturating_sub(width);
    let shown: Vec<f32> = history.iter().skip(skip).copied().collect();
    let max = shown
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0f32, f32::max);
    let mut out: String = " ".repeat(width - shown.len());
    for v in shown {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        // A non-zero rate always shows at least the lowest bar.
        let level = if v > 0.0 {
            ((v / max) * 8.0).ceil().clamp(1.0, 8.0) as usize
        } else {
            0
        };
        out.push(BARS[level]);
    }
    out
}

#[cfg(test)]
mod tests;
