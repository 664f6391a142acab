//! The overview tab: the nodes table, the selected node's clients, and the newest events
//! (side by side with the clients on a wide terminal, under them otherwise).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

use super::events::log_row;
use super::format::{fmt_age, fmt_bytes, fmt_rate, sparkline};
use super::widgets::{pane, right, state_style, title, windowed_table, DIM};
use crate::console::app::{App, Conn};
use crate::console::list::ListView;
use crate::console::nodes::NodeRow;
use crate::console::tabs::overview::Focus;
use crate::console::tabs::Tab;

/// Draws the overview in `area`.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let wanted = app.overview.node_view.visible.len() as u16 + 3;
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

/// Whether the overview's pane `focus` has the cursor (and no dialog hides it).
fn focused(app: &App, focus: Focus) -> bool {
    app.tab == Tab::Overview && app.overview.focus == focus && !app.dialog_open()
}

fn draw_nodes(frame: &mut Frame, app: &App, area: Rect) {
    let focused = focused(app, Focus::Nodes);
    let mut t = title(
        "Nodes".to_owned(),
        &app.overview.node_view,
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
        &app.overview.node_view,
        focused,
        |i| node_row(&app.nodes[i], spark_w),
    );
}

/// While the daemon is away the nodes are what it last said.
fn stale_note(app: &App) -> Option<&'static str> {
    match app.conn {
        Conn::Down { .. } => Some("(last known)"),
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

fn addresses(a: &[String]) -> String {
    match a {
        [] => "-".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

fn draw_clients(frame: &mut Frame, app: &App, area: Rect) {
    let focused = focused(app, Focus::Clients);
    let overview = &app.overview;
    let selected = overview
        .selected_node(&app.nodes)
        .map(|n| n.info.name.as_str());
    let current = selected.is_some() && overview.clients_of.as_deref() == selected;
    let name = match selected {
        Some(n) => format!("Clients of {n}"),
        None => "Clients".to_owned(),
    };
    let (total, note) = if current {
        (overview.clients.len(), overview.clients_note.as_deref())
    } else if selected.is_some() {
        (
            0,
            Some(overview.clients_note.as_deref().unwrap_or("loading…")),
        )
    } else {
        (0, None)
    };
    let empty = ListView::default();
    let view = if current {
        &overview.client_view
    } else {
        &empty
    };
    let mut t = title(name, view, total, note);
    if overview.focus == Focus::Nodes && current && total > 0 {
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
            let c = &overview.clients[i];
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

/// The newest events that fit, under the overview.
fn draw_log_tail(frame: &mut Frame, app: &App, area: Rect) {
    let log = &app.log;
    let t = title(
        "Events (UTC)".to_owned(),
        &log.view,
        log.entries.len(),
        None,
    );
    let h = (area.height as usize).saturating_sub(2);
    let visible = &log.view.visible;
    let rows: Vec<Row> = visible[visible.len().saturating_sub(h)..]
        .iter()
        .filter_map(|&i| log.entries.get(i))
        .map(log_row)
        .collect();
    let table = Table::new(rows, [Constraint::Length(8), Constraint::Fill(1)])
        .column_spacing(1)
        .block(pane(t, false));
    frame.render_widget(table, area);
}
