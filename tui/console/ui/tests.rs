//! Renders of fixture states through ratatui's `TestBackend`, checked against the accepted
//! snapshots in `../snapshots/` (text only: colours are not in them).

use std::collections::VecDeque;

use cloudmesh::admin::{Event, Response};
use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::format::{data_preview, fmt_age, fmt_bytes, fmt_hms, fmt_rate, node_color, sparkline};
use super::widgets::window;
use super::*;
use crate::console::fixtures::*;
use crate::console::list::ListView;
use crate::console::requests::Poll;

/// `insta::assert_snapshot!` with the snapshots in `tui/console/snapshots/NAME.snap`.
macro_rules! snap {
    ($name:expr, $value:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("../snapshots");
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!($name, $value));
    }};
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    terminal.draw(|f| draw(f, app)).expect("draw");
    terminal.backend().to_string()
}

/// The app on the key browser, at the rows under `players`.
fn browsing_app() -> App {
    let mut app = live_app();
    app.handle_key(ch('2'));
    answer_polls(&mut app);
    app.handle_key(key(KeyCode::End));
    assert!(app.handle_key(key(KeyCode::Enter)).is_some());
    let mut rows = vec![
        row(1, 0xa1, "{\"x\":10,\"y\":4}", 17),
        row(2, 0xa2, "line one\nline two", 12),
        binary_row(3, 0xa3),
        row(3, 0xa4, "second owner of 3", 8),
    ];
    rows.extend((10..30).map(|i| row(i, 0xb0 + u64::from(i), "filler", u64::from(i))));
    app.apply(snapshot(Some(rows)));
    app.apply(event(
        0,
        Event::RowChanged(row(2, 0xa2, "changed just now", 40)),
    ));
    app.handle_key(key(KeyCode::Home));
    app.handle_key(key(KeyCode::Down));
    app
}

#[test]
fn overview_with_a_host_a_draining_node_and_an_unlinked_one() {
    let app = live_app();
    snap!("overview_120x36", render(&app, 120, 36));
}

#[test]
fn overview_at_80x24() {
    let app = live_app();
    snap!("overview_80x24", render(&app, 80, 24));
}

#[test]
fn overview_wide_puts_clients_and_events_side_by_side() {
    let app = live_app();
    snap!("overview_160x30", render(&app, 160, 30));
}

#[test]
fn clients_pane_with_the_cursor_and_a_filter() {
    let mut app = live_app();
    app.handle_key(key(KeyCode::Enter));
    app.handle_key(ch('/'));
    for c in "5001".chars() {
        app.handle_key(ch(c));
    }
    app.handle_key(key(KeyCode::Enter));
    app.handle_key(key(KeyCode::Down));
    snap!("clients_filtered", render(&app, 100, 30));
}

#[test]
fn typing_a_filter_shows_it_in_the_help_bar() {
    let mut app = live_app();
    app.handle_key(ch('/'));
    app.handle_key(ch('n'));
    app.handle_key(ch('o'));
    let screen = render(&app, 100, 30);
    let bar = screen.lines().last().unwrap_or("");
    assert!(bar.contains("/no▏"), "{bar}");
    assert!(
        bar.contains("Enter keep") && bar.contains("Esc clear"),
        "{bar}"
    );
}

#[test]
fn key_browser_primary_keys() {
    let mut app = live_app();
    app.handle_key(ch('2'));
    answer_polls(&mut app);
    snap!("keys_primaries", render(&app, 100, 24));
}

#[test]
fn key_browser_loading() {
    let mut app = live_app();
    app.handle_key(ch('2'));
    snap!("keys_loading", render(&app, 80, 24));
}

#[test]
fn key_browser_rows_with_text_hex_and_a_fresh_change() {
    let app = browsing_app();
    snap!("keys_rows", render(&app, 110, 30));
}

/// The rows under `players` with the query `x > 5 sort -x` typed in the bar.
fn querying_app() -> App {
    let mut app = browsing_app();
    app.handle_key(ch('/'));
    for c in "x > 5 sort -x".chars() {
        app.handle_key(ch(c));
    }
    app
}

#[test]
fn key_browser_query_being_typed() {
    let app = querying_app();
    snap!("keys_query_typing", render(&app, 100, 24));
}

#[test]
fn key_browser_query_results() {
    let mut app = querying_app();
    app.handle_key(key(KeyCode::Enter));
    let polls = app.due_polls();
    let [poll @ Poll::Query { .. }] = polls.as_slice() else {
        panic!("the query is asked: {polls:?}");
    };
    app.poll_done(
        poll.clone(),
        Ok(Response::Rows {
            rows: vec![
                row(12, 0xbc, "{\"x\":12}", 12),
                row(1, 0xa1, "{\"x\":10,\"y\":4}", 17),
            ],
            truncated: false,
            incomplete: vec![],
        }),
    );
    snap!("keys_query_results", render(&app, 100, 24));
}

#[test]
fn key_browser_query_refused() {
    let mut app = browsing_app();
    app.handle_key(ch('/'));
    for c in "x >".chars() {
        app.handle_key(ch(c));
    }
    app.handle_key(key(KeyCode::Enter));
    let polls = app.due_polls();
    let [poll @ Poll::Query { .. }] = polls.as_slice() else {
        panic!("the query is asked: {polls:?}");
    };
    app.poll_done(
        poll.clone(),
        Ok(Response::Error(
            cloudmesh::admin::AdminError::InvalidQuery {
                part: "where".into(),
                reason: "syntax error at byte 3: expected a value, found end of input".into(),
            },
        )),
    );
    snap!("keys_query_refused", render(&app, 100, 24));
}

#[test]
fn zone_map_with_its_legend() {
    let mut app = live_app();
    app.handle_key(ch('3'));
    snap!("zones", render(&app, 100, 24));
}

#[test]
fn zone_map_larger_than_the_screen_scrolls() {
    let mut app = live_app();
    app.apply(event(
        0,
        Event::Zones(cloudmesh::admin::ZoneInfo {
            cell_size: 50.0,
            width: 64,
            height: 40,
            owners: (0..64 * 40)
                .map(|i| format!("node-{}", 1 + (i % 64) / 22))
                .collect(),
        }),
    ));
    app.handle_key(ch('3'));
    for _ in 0..3 {
        app.handle_key(key(KeyCode::Right));
        app.handle_key(key(KeyCode::Down));
    }
    snap!("zones_scrolled", render(&app, 80, 24));
}

#[test]
fn no_zone_map() {
    let mut app = live_app();
    app.zones.map = None;
    app.handle_key(ch('3'));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("No zone map"), "{screen}");
}

#[test]
fn event_log_tab() {
    let mut app = live_app();
    app.handle_key(ch('4'));
    snap!("events", render(&app, 100, 24));
}

#[test]
fn help_overlay() {
    let mut app = live_app();
    app.handle_key(ch('?'));
    snap!("help", render(&app, 100, 40));
    // At 80×24 it scrolls; the end says where the log is.
    for _ in 0..100 {
        app.handle_key(key(KeyCode::Down));
    }
    snap!("help_80x24_scrolled_to_the_end", render(&app, 80, 24));
}

#[test]
fn drain_confirmation() {
    let mut app = live_app();
    app.handle_key(key(KeyCode::End));
    app.handle_key(ch('d'));
    snap!("confirm_drain", render(&app, 100, 30));
}

#[test]
fn migrate_picker() {
    let mut app = live_app();
    app.handle_key(key(KeyCode::Enter));
    app.handle_key(key(KeyCode::Down));
    app.handle_key(ch('m'));
    snap!("migrate_picker", render(&app, 100, 30));
}

#[test]
fn disconnected_status_line() {
    let mut app = live_app();
    app.watch_lost("no daemon: Connection refused (os error 111)");
    snap!("disconnected_80x24", render(&app, 80, 24));
}

#[test]
fn an_error_in_the_status_line() {
    let mut app = live_app();
    app.command_done(
        &crate::console::requests::Action::Drain {
            node: "node-9".into(),
        },
        Ok(Response::Error(cloudmesh::admin::AdminError::UnknownNode {
            name: "node-9".into(),
            known: vec!["node-1".into()],
        })),
    );
    let screen = render(&app, 100, 24);
    let status = screen.lines().nth(22).unwrap_or("");
    assert!(
        status.contains("drain node-9 failed: no node named \"node-9\""),
        "{status}"
    );
}

#[test]
fn too_small() {
    let app = live_app();
    snap!("too_small_79x24", render(&app, 79, 24));
    snap!("too_small_30x5", render(&app, 30, 5));
}

#[test]
fn every_size_and_view_renders_without_panicking() {
    let mut apps = vec![live_app(), browsing_app(), App::new("/s", None)];
    let mut help = live_app();
    help.handle_key(ch('?'));
    apps.push(help);
    let mut confirm = live_app();
    confirm.handle_key(ch('r'));
    apps.push(confirm);
    let mut picker = live_app();
    picker.handle_key(key(KeyCode::Enter));
    picker.handle_key(ch('m'));
    apps.push(picker);
    for app in &mut apps {
        for tab in ['1', '2', '3', '4'] {
            if app.popup.is_none() {
                app.handle_key(ch(tab));
            }
            for (w, h) in [
                (0, 0),
                (1, 1),
                (10, 3),
                (79, 23),
                (80, 24),
                (81, 25),
                (133, 47),
            ] {
                // Drawn only: the test backend cannot print a zero-width buffer.
                let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
                terminal.draw(|f| draw(f, app)).expect("draw");
            }
        }
    }
}

#[test]
fn thousands_of_clients_scroll_with_the_cursor_in_view() {
    let mut app = live_app();
    let many: Vec<_> = (0..500)
        .map(|i| node(&format!("n{i:03}"), "Active", i, i as f32))
        .collect();
    app.poll_done(Poll::Nodes, Ok(Response::Nodes { nodes: many }));
    app.handle_key(key(KeyCode::End));
    let screen = render(&app, 100, 30);
    assert!(screen.contains("▶    n499"), "{screen}");
    assert!(!screen.contains(" n000 "), "the top scrolled away");

    // 5,000 clients of the selected node.
    let polls = app.due_polls();
    let p = polls
        .into_iter()
        .find(|p| matches!(p, Poll::Clients { .. }))
        .expect("a clients poll");
    app.poll_done(
        p,
        Ok(Response::Clients {
            clients: (0..5_000).map(|n| client(n, "n499", n % 500)).collect(),
            incomplete: vec![],
        }),
    );
    app.handle_key(key(KeyCode::Enter));
    for _ in 0..3 {
        app.handle_key(key(KeyCode::PageDown));
    }
    let _ = render(&app, 100, 30);
    // The renderer told the app its page; paging moved by it.
    let page = app.overview.client_view.page.get();
    assert!(page > 1);
    for _ in 0..2 {
        app.handle_key(key(KeyCode::PageDown));
    }
    let sel = app.overview.client_view.selected;
    let screen = render(&app, 100, 30);
    let id = format!("{sel:016x}");
    assert!(screen.contains(&format!("▶ {id}")), "{id} not on\n{screen}");
    app.handle_key(key(KeyCode::End));
    let screen = render(&app, 100, 30);
    assert!(screen.contains(&format!("▶ {:016x}", 4_999)), "{screen}");
    app.handle_key(key(KeyCode::Home));
    let screen = render(&app, 100, 30);
    assert!(screen.contains(&format!("▶ {:016x}", 0)), "{screen}");
}

#[test]
fn window_keeps_the_cursor_visible() {
    let mut view = ListView {
        visible: (0..100).collect(),
        ..ListView::default()
    };
    assert_eq!(window(&view, 10), (0, 10));
    view.selected = 9;
    assert_eq!(window(&view, 10), (0, 10));
    view.selected = 10;
    assert_eq!(window(&view, 10), (1, 11), "one step scrolls one row");
    view.selected = 5;
    assert_eq!(
        window(&view, 10),
        (1, 11),
        "moving up inside the window does not scroll"
    );
    view.selected = 0;
    assert_eq!(window(&view, 10), (0, 10));
    view.selected = 99;
    assert_eq!(window(&view, 10), (90, 100));
    // The list shrank under the window: no blank rows below while rows exist above.
    view.visible.truncate(20);
    view.selected = 19;
    assert_eq!(window(&view, 10), (10, 20));
    view.visible.clear();
    view.selected = 0;
    assert_eq!(window(&view, 10), (0, 0));
}

#[test]
fn formatting() {
    assert_eq!(fmt_hms(NOW), "12:34:56");
    assert_eq!(fmt_age(0), "0s");
    assert_eq!(fmt_age(59_999), "59s");
    assert_eq!(fmt_age(243_000), "4m03s");
    assert_eq!(fmt_age(7_500_000), "2h05m");
    assert_eq!(fmt_age(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    assert_eq!(fmt_bytes(512), "512B");
    assert_eq!(fmt_bytes(812 * 1024), "812K");
    assert_eq!(fmt_bytes(48 * 1024 * 1024), "48.0M");
    assert_eq!(fmt_bytes(3 * 1024 * 1024 * 1024), "3.0G");
    assert_eq!(fmt_rate(12.4), "12");
    assert_eq!(fmt_rate(1234.0), "1.2k");
    assert_eq!(fmt_rate(f32::NAN), "-");
    assert_eq!(data_preview("a\nb\tc\u{7}", "utf8", 10), "a↵b→c·");
    assert_eq!(data_preview("00ff", "hex", 10), "0x00ff");
    assert_eq!(data_preview("abcdef", "utf8", 3), "abc…");
}

#[test]
fn sparkline_scales_to_its_maximum() {
    let h: VecDeque<f32> = [0.0, 1.0, 2.0, 4.0, 8.0].into_iter().collect();
    assert_eq!(sparkline(&h, 5), " ▁▂▄█");
    assert_eq!(sparkline(&h, 7), "   ▁▂▄█", "right aligned");
    assert_eq!(sparkline(&h, 2), "▄█", "only the newest that fit");
    // Small rates are not magnified into full bars.
    let small: VecDeque<f32> = [0.25, 0.5].into_iter().collect();
    assert_eq!(sparkline(&small, 2), "▂▄");
    assert_eq!(sparkline(&VecDeque::new(), 3), "   ");
    let odd: VecDeque<f32> = [f32::NAN, -1.0, f32::INFINITY, 1.0].into_iter().collect();
    assert_eq!(sparkline(&odd, 4), "   █");
}

#[test]
fn node_colours_are_stable() {
    assert_eq!(node_color("node-1"), node_color("node-1"));
    let distinct: std::collections::HashSet<String> = (1..=6)
        .map(|i| format!("{:?}", node_color(&format!("node-{i}"))))
        .collect();
    assert!(distinct.len() >= 4, "{distinct:?}");
}
