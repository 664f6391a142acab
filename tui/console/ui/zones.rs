//! The zone map tab: the grid, one coloured letter per owner, and the legend with each
//! owner's cells and clients.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::format::node_color;
use super::widgets::{pane, DIM, HEADER};
use crate::console::app::App;

/// The letter a node's cells carry on the map (colour alone is not enough).
fn glyph(i: usize) -> char {
    const GLYPHS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    GLYPHS.get(i).map_or('#', |&b| b as char)
}

/// Draws the zone map in `area`.
pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let Some(z) = &app.zones.map else {
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
    let (sx, sy) = app.zones.scroll;
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
