use super::*;
use crate::console::event_log::LOG_CAPACITY;
use crate::console::fixtures::*;
use crate::console::nodes::HISTORY;
use crate::console::popups::confirm::ConfirmPopup;
use crate::console::popups::migrate::MigratePicker;
use crate::console::requests::Poll;
use crate::console::tabs::keys::query;
use crate::console::tabs::overview::{Focus, CLIENTS_EVERY_MS};
use cloudmesh::admin::{AdminError, Event, NodeInfo, RebalanceMove, Response};

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn names(app: &App) -> Vec<&str> {
    app.overview
        .node_view
        .visible
        .iter()
        .map(|&i| app.nodes[i].info.name.as_str())
        .collect()
}

fn selected_name(app: &App) -> &str {
    app.overview
        .selected_node(&app.nodes)
        .map_or("", |n| n.info.name.as_str())
}

/// Moves the nodes cursor to `name`.
fn select_node(app: &mut App, name: &str) {
    app.handle_key(key(KeyCode::Home));
    for _ in 0..app.nodes.len() {
        if selected_name(app) == name {
            return;
        }
        app.handle_key(key(KeyCode::Down));
    }
    assert_eq!(selected_name(app), name);
}

fn last_log(app: &App) -> &str {
    app.log.entries.back().map_or("", |e| e.text.as_str())
}

#[test]
fn a_snapshot_then_events_keep_the_nodes_current() {
    let mut app = App::new("/s", None);
    app.set_clock(NOW);
    assert_eq!(app.conn, Conn::Connecting);
    assert!(app
        .conn_text()
        .is_some_and(|t| t.contains("connecting to /s")));
    assert_eq!(app.apply(snapshot(None)), None);
    assert_eq!(app.conn, Conn::Live);
    assert_eq!(app.local.as_deref(), Some("node-1"));
    assert_eq!(names(&app), ["node-1", "node-2", "node-3"]);
    assert!(app.zones.map.is_some());

    // A state change.
    app.apply(event(
        5,
        Event::StateChanged {
            node: "node-3".into(),
            state: "Draining".into(),
        },
    ));
    assert_eq!(app.nodes[2].info.state, "Draining");
    assert_eq!(last_log(&app), "node-3 is Draining");
    assert_eq!(app.log.entries.back().map(|e| e.at_ms), Some(NOW - 5_000));

    // A load report updates the row and extends the sparkline.
    let before = app.nodes[1].history.len();
    let mut load = node("node-2", "Draining", 33, 1234.0);
    load.cpu_percent = 77.0;
    app.apply(event(4, Event::Load(load)));
    assert_eq!(app.nodes[1].history.len(), before + 1);
    assert_eq!(app.nodes[1].history.back(), Some(&1234.0));
    assert_eq!(app.nodes[1].info.clients, 33);
    assert_eq!(app.nodes[1].info.cpu_percent, 77.0);
    // Load reports are not logged: they come every two seconds per node.
    assert_eq!(last_log(&app), "node-3 is Draining");

    // The history is bounded.
    for i in 0..(HISTORY + 10) {
        app.apply(event(
            3,
            Event::Load(node("node-2", "Draining", 1, i as f32)),
        ));
    }
    assert_eq!(app.nodes[1].history.len(), HISTORY);

    // Drain progress is kept on the node and logged.
    app.apply(event(
        3,
        Event::DrainProgress {
            node: "node-3".into(),
            moved: 5,
            remaining: 70,
        },
    ));
    assert_eq!(app.nodes[2].drain, Some((5, 70)));
    assert_eq!(
        app.nodes[2].info.clients, 70,
        "the count falls with the drain"
    );
    assert_eq!(last_log(&app), "node-3 draining: 5 moved, 70 left");
    app.apply(event(
        2,
        Event::StateChanged {
            node: "node-3".into(),
            state: "Drained".into(),
        },
    ));
    assert_eq!(app.nodes[2].drain, None);

    // The host moves.
    app.apply(event(
        2,
        Event::HostChanged {
            old: "node-1".into(),
            new: "node-2".into(),
        },
    ));
    let hosts: Vec<bool> = app.nodes.iter().map(|n| n.info.host).collect();
    assert_eq!(hosts, [false, true, false]);
    assert_eq!(last_log(&app), "host changed: node-1 → node-2");

    // A loss marks the node until the member list forgets it.
    app.apply(event(
        1,
        Event::NodeLost {
            node: "node-2".into(),
            rows: 4,
        },
    ));
    assert!(app.nodes[1].lost && !app.nodes[1].info.linked);
    assert_eq!(
        last_log(&app),
        "node-2 lost; 4 of its rows gone for subscribers"
    );
    let mut without = nodes();
    without.remove(1);
    app.poll_done(Poll::Nodes, Ok(Response::Nodes { nodes: without }));
    assert_eq!(names(&app), ["node-1", "node-3"]);

    // A node whose link comes up before its record: shown at once, the list asked for.
    app.set_clock(NOW + 1);
    let _ = app.due_polls();
    app.apply(event(
        0,
        Event::NodeUp {
            node: "node-9".into(),
        },
    ));
    assert_eq!(names(&app), ["node-1", "node-3", "node-9"]);
    assert_eq!(last_log(&app), "node-9 joined (link up)");
    assert!(app.due_polls().contains(&Poll::Nodes));
}

#[test]
fn the_cursor_moves_pages_and_stays_on_its_node_across_updates() {
    let mut app = App::new("/s", None);
    app.set_clock(NOW);
    app.apply(snapshot(None));
    let many: Vec<NodeInfo> = (0..300)
        .map(|i| node(&format!("n{i:03}"), "Active", i, 0.0))
        .collect();
    app.poll_done(Poll::Nodes, Ok(Response::Nodes { nodes: many }));
    assert_eq!(app.overview.node_view.visible.len(), 300);
    assert_eq!(selected_name(&app), "n000");
    app.handle_key(key(KeyCode::Up));
    assert_eq!(selected_name(&app), "n000", "the top stops the cursor");
    app.handle_key(ch('j'));
    app.handle_key(key(KeyCode::Down));
    assert_eq!(selected_name(&app), "n002");
    // The renderer says how many rows fit; a page moves by that.
    app.overview.node_view.page.set(20);
    app.handle_key(key(KeyCode::PageDown));
    assert_eq!(selected_name(&app), "n022");
    app.handle_key(key(KeyCode::PageUp));
    app.handle_key(key(KeyCode::PageUp));
    assert_eq!(selected_name(&app), "n000");
    app.handle_key(key(KeyCode::End));
    assert_eq!(selected_name(&app), "n299");
    app.handle_key(key(KeyCode::Down));
    assert_eq!(selected_name(&app), "n299", "the bottom stops the cursor");
    app.handle_key(ch('g'));
    assert_eq!(selected_name(&app), "n000");
    app.handle_key(ch('G'));
    assert_eq!(selected_name(&app), "n299");

    // A fresh member list in another order keeps the cursor on the same node.
    select_node(&mut app, "n150");
    let mut reordered: Vec<NodeInfo> = (0..300)
        .rev()
        .map(|i| node(&format!("n{i:03}"), "Active", i, 0.0))
        .collect();
    reordered.retain(|n| n.name != "n100");
    app.poll_done(Poll::Nodes, Ok(Response::Nodes { nodes: reordered }));
    assert_eq!(selected_name(&app), "n150");
    assert_eq!(app.overview.node_view.visible.len(), 299);
}

#[test]
fn drain_asks_first_and_acts_only_on_y() {
    let mut app = live_app();
    select_node(&mut app, "node-3");

    // n cancels.
    assert_eq!(app.handle_key(ch('d')), None);
    match &app.popup {
        Some(Popup::Confirm(ConfirmPopup {
            action, question, ..
        })) => {
            assert_eq!(
                action,
                &Action::Drain {
                    node: "node-3".into()
                }
            );
            assert_eq!(question, "Drain node-3?");
        }
        other => panic!("a confirmation expected, got {other:?}"),
    }
    // Other keys do nothing while it asks (not even move the cursor or quit with q).
    assert_eq!(app.handle_key(ch('x')), None);
    assert_eq!(app.handle_key(ch('q')), None);
    assert_eq!(app.handle_key(key(KeyCode::Down)), None);
    assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
    assert!(matches!(app.popup, Some(Popup::Confirm(_))));
    assert_eq!(selected_name(&app), "node-3");
    assert_eq!(app.handle_key(ch('n')), None);
    assert!(app.popup.is_none());
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("cancelled")
    );

    // Esc cancels.
    app.handle_key(ch('d'));
    assert_eq!(app.handle_key(key(KeyCode::Esc)), None);
    assert!(app.popup.is_none());

    // y confirms: only now the action.
    app.handle_key(ch('d'));
    assert_eq!(
        app.handle_key(ch('y')),
        Some(Action::Drain {
            node: "node-3".into()
        })
    );
    assert!(app.popup.is_none());
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("drain node-3…")
    );
    let action = Action::Drain {
        node: "node-3".into(),
    };
    app.command_done(
        &action,
        Ok(Response::DrainStarted {
            node: "node-3".into(),
            clients: 75,
        }),
    );
    assert_eq!(
        app.status,
        Some(Status {
            text: "draining node-3: 75 clients to move".into(),
            error: false
        })
    );
    assert_eq!(last_log(&app), "draining node-3: 75 clients to move");

    // A node already draining is not asked about again; undrain asks, Y confirms too.
    select_node(&mut app, "node-2");
    assert_eq!(app.handle_key(ch('d')), None);
    assert!(app.popup.is_none());
    assert!(app
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("already draining")));
    app.handle_key(ch('u'));
    assert_eq!(
        app.handle_key(ch('Y')),
        Some(Action::Undrain {
            node: "node-2".into()
        })
    );
    select_node(&mut app, "node-1");
    assert_eq!(app.handle_key(ch('u')), None);
    assert!(app.popup.is_none(), "node-1 is already active");

    // Rebalance asks too.
    app.handle_key(ch('r'));
    assert_eq!(app.handle_key(ch('y')), Some(Action::Rebalance));
    app.command_done(
        &Action::Rebalance,
        Ok(Response::Rebalanced {
            moved: Some(RebalanceMove {
                from: "node-1".into(),
                to: "node-3".into(),
                count: 12,
            }),
        }),
    );
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("rebalance: asked node-1 to move 12 clients to node-3")
    );
}

#[test]
fn failures_show_in_the_status_line() {
    let mut app = live_app();
    let action = Action::Drain {
        node: "node-3".into(),
    };
    app.command_done(
        &action,
        Ok(Response::Error(AdminError::Unavailable {
            node: "node-3".into(),
            reason: "no link".into(),
        })),
    );
    assert_eq!(
        app.status,
        Some(Status {
            text: "drain node-3 failed: node node-3 did not answer: no link".into(),
            error: true
        })
    );
    assert_eq!(app.log.entries.back().map(|e| e.kind), Some(LogKind::Error));
    // A transport failure explained over several lines shows its first.
    app.command_done(
        &action,
        Err("no cloudd answers on the admin socket /s\n  start one with cloudd".into()),
    );
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("drain node-3 failed: no cloudd answers on the admin socket /s")
    );
}

#[test]
fn migrate_picks_another_node() {
    let mut app = live_app();
    // Keys for a client do nothing while the nodes pane has the cursor.
    assert_eq!(app.handle_key(ch('m')), None);
    assert!(app.popup.is_none());
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.overview.focus, Focus::Clients);
    app.handle_key(ch('j'));
    let client = app
        .overview
        .selected_client(&app.nodes)
        .map(|c| c.id.clone());
    assert_eq!(client.as_deref(), Some("0000000000000002"));

    assert_eq!(app.handle_key(ch('m')), None);
    match &app.popup {
        Some(Popup::Migrate(MigratePicker {
            choices,
            view,
            from,
            ..
        })) => {
            assert_eq!(choices, &["node-2", "node-3"]);
            assert_eq!(from, "node-1");
            // The cursor starts on the first node that takes clients (node-2 drains).
            assert_eq!(view.selected, 1);
        }
        other => panic!("a picker expected, got {other:?}"),
    }
    // Esc cancels.
    assert_eq!(app.handle_key(key(KeyCode::Esc)), None);
    assert!(app.popup.is_none());
    assert_eq!(
        app.overview.focus,
        Focus::Clients,
        "Esc closed the picker only"
    );

    app.handle_key(ch('m'));
    app.handle_key(key(KeyCode::Up));
    app.handle_key(key(KeyCode::Down));
    assert_eq!(
        app.handle_key(key(KeyCode::Enter)),
        Some(Action::Migrate {
            client: "0000000000000002".into(),
            from: "node-1".into(),
            to: "node-3".into(),
        })
    );
    assert!(app.popup.is_none());
    app.command_done(
        &Action::Migrate {
            client: "0000000000000002".into(),
            from: "node-1".into(),
            to: "node-3".into(),
        },
        Ok(Response::Migrated {
            client: "0000000000000002".into(),
            from: "node-1".into(),
            to: "node-3".into(),
        }),
    );
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("moved client 0000000000000002 from node-1 to node-3")
    );
    // The list is asked for again at once.
    assert!(app.due_polls().contains(&Poll::Clients {
        node: "node-1".into()
    }));

    // Esc goes back to the nodes.
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.overview.focus, Focus::Nodes);
}

#[test]
fn a_filter_narrows_the_list_under_the_cursor() {
    let mut app = live_app();
    select_node(&mut app, "node-2");
    app.handle_key(ch('/'));
    assert!(matches!(app.popup, Some(Popup::Filter)));
    // While typing, letters are text: q does not quit, d does not drain.
    for c in "DRA".chars() {
        assert_eq!(app.handle_key(ch(c)), None);
    }
    assert_eq!(app.overview.node_view.filter, "DRA");
    assert_eq!(names(&app), ["node-2"], "matches the state, any case");
    assert_eq!(selected_name(&app), "node-2");
    app.handle_key(key(KeyCode::Backspace));
    app.handle_key(key(KeyCode::Backspace));
    app.handle_key(key(KeyCode::Backspace));
    app.handle_key(ch('q'));
    assert_eq!(names(&app), Vec::<&str>::new());
    assert!(!app.dialog_open());
    app.handle_key(key(KeyCode::Backspace));
    for c in "7003".chars() {
        app.handle_key(ch(c));
    }
    assert_eq!(names(&app), ["node-3"], "matches an address");
    // Enter keeps the filter; the keys act again.
    app.handle_key(key(KeyCode::Enter));
    assert!(!matches!(app.popup, Some(Popup::Filter)));
    assert_eq!(app.overview.node_view.filter, "7003");
    assert_eq!(selected_name(&app), "node-3");
    // Esc first clears a kept filter; the cursor stays on its node.
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.overview.node_view.filter, "");
    assert_eq!(names(&app).len(), 3);
    assert_eq!(selected_name(&app), "node-3");

    // Esc while typing clears; each list has its own filter.
    app.handle_key(key(KeyCode::Enter));
    app.handle_key(ch('/'));
    app.handle_key(ch('0'));
    app.handle_key(ch('2'));
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.overview.client_view.filter, "02");
    assert_eq!(app.overview.node_view.filter, "");
    app.handle_key(ch('/'));
    app.handle_key(ch('x'));
    app.handle_key(key(KeyCode::Esc));
    assert_eq!(app.overview.client_view.filter, "");
    assert!(!matches!(app.popup, Some(Popup::Filter)));

    // The event log filters too.
    app.handle_key(ch('4'));
    app.handle_key(ch('/'));
    for c in "host".chars() {
        app.handle_key(ch(c));
    }
    assert_eq!(app.log.view.visible.len(), 1);
    // The zone map has no list.
    app.handle_key(key(KeyCode::Enter));
    app.handle_key(ch('3'));
    app.handle_key(ch('/'));
    assert!(!matches!(app.popup, Some(Popup::Filter)));

    // Ctrl-C quits even while typing.
    app.handle_key(ch('1'));
    app.handle_key(ch('/'));
    assert_eq!(app.handle_key(ctrl('c')), Some(Action::Quit));
}

#[test]
fn help_opens_scrolls_and_closes() {
    let mut app = live_app();
    app.handle_key(ch('?'));
    assert!(matches!(
        app.popup,
        Some(Popup::Help(HelpPopup { scroll: 0 }))
    ));
    app.handle_key(key(KeyCode::Down));
    app.handle_key(ch('j'));
    app.handle_key(ch('k'));
    assert!(matches!(
        app.popup,
        Some(Popup::Help(HelpPopup { scroll: 1 }))
    ));
    // q closes the help, it does not quit.
    assert_eq!(app.handle_key(ch('q')), None);
    assert!(app.popup.is_none());
    app.handle_key(ch('?'));
    app.handle_key(ch('?'));
    assert!(app.popup.is_none());
    app.handle_key(ch('?'));
    app.handle_key(key(KeyCode::Esc));
    assert!(app.popup.is_none());
    assert_eq!(app.handle_key(ch('q')), Some(Action::Quit));
    assert_eq!(app.handle_key(ctrl('c')), Some(Action::Quit));
}

#[test]
fn tabs_switch_by_number_and_tab() {
    let mut app = live_app();
    assert_eq!(app.tab, Tab::Overview);
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::Keys);
    app.handle_key(ch('3'));
    assert_eq!(app.tab, Tab::Zones);
    app.handle_key(key(KeyCode::Tab));
    app.handle_key(key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::Overview, "Tab wraps around");
    app.handle_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(app.tab, Tab::Events);
    app.handle_key(ch('1'));
    assert_eq!(app.tab, Tab::Overview);
}

#[test]
fn the_key_browser_follows_rows_live() {
    let mut app = live_app();
    app.handle_key(ch('2'));
    assert_eq!(app.due_polls(), [Poll::Primaries]);
    app.poll_done(
        Poll::Primaries,
        Ok(Response::Primaries {
            primaries: primaries(),
            incomplete: vec![],
        }),
    );
    app.handle_key(key(KeyCode::End));
    assert_eq!(
        app.handle_key(key(KeyCode::Enter)),
        Some(Action::Browse {
            key: Some("players".into())
        })
    );
    assert_eq!(app.keys.browsing.as_deref(), Some("players"));
    assert!(!app.keys.rows_loaded);
    // No key polling while rows are shown: the watch carries them.
    app.set_clock(NOW + 60_000);
    assert!(!app.due_polls().contains(&Poll::Primaries));

    // The new watch's snapshot brings the rows, in (secondary, owner) order.
    app.apply(snapshot(Some(vec![
        row(7, 2, "b", 5),
        row(3, 1, "a", 4),
        row(7, 1, "c", 6),
    ])));
    assert!(app.keys.rows_loaded);
    let keys = |app: &App| -> Vec<(u32, String, String)> {
        app.keys
            .rows
            .iter()
            .map(|r| (r.info.secondary, r.info.owner.clone(), r.info.data.clone()))
            .collect()
    };
    assert_eq!(
        keys(&app),
        [
            (3, format!("{:016x}", 1), "a".into()),
            (7, format!("{:016x}", 1), "c".into()),
            (7, format!("{:016x}", 2), "b".into()),
        ]
    );
    // The reconnect message is not shown for a browse's fresh watch.
    assert!(app.conn_text().is_none());

    // A new row, an update, a stale update, another key's row.
    app.handle_key(key(KeyCode::End));
    app.apply(event(0, Event::RowChanged(row(5, 9, "new", 10))));
    app.apply(event(0, Event::RowChanged(row(3, 1, "a2", 11))));
    app.apply(event(0, Event::RowChanged(row(7, 1, "old", 2))));
    let mut other = row(1, 1, "elsewhere", 3);
    other.primary = "items".into();
    app.apply(event(0, Event::RowChanged(other)));
    assert_eq!(
        keys(&app),
        [
            (3, format!("{:016x}", 1), "a2".into()),
            (5, format!("{:016x}", 9), "new".into()),
            (7, format!("{:016x}", 1), "c".into()),
            (7, format!("{:016x}", 2), "b".into()),
        ]
    );
    assert_eq!(app.keys.rows[1].changed_at_ms, NOW + 60_000);
    // The cursor stayed on its row as rows came in above it.
    assert_eq!(
        app.keys.selected_row().map(|r| r.info.data.as_str()),
        Some("b")
    );

    // A deletion (with its newer version) removes the row.
    let mut gone = row(7, 2, "b", 12);
    gone.version = 12;
    app.apply(event(
        0,
        Event::RowDeleted {
            row: gone,
            reason: "Disconnected".into(),
        },
    ));
    assert_eq!(app.keys.rows.len(), 3);
    assert_eq!(
        app.keys.selected_row().map(|r| r.info.data.as_str()),
        Some("c"),
        "the cursor moved to the row now last"
    );

    // Esc goes back to the keys, which are asked for again.
    assert_eq!(
        app.handle_key(key(KeyCode::Esc)),
        Some(Action::Browse { key: None })
    );
    assert_eq!(app.keys.browsing, None);
    assert!(app.due_polls().contains(&Poll::Primaries));
}

#[test]
fn a_refused_browse_goes_back_to_no_key() {
    let mut app = live_app();
    app.handle_key(ch('2'));
    app.poll_done(
        Poll::Primaries,
        Ok(Response::Primaries {
            primaries: primaries(),
            incomplete: vec![],
        }),
    );
    app.handle_key(key(KeyCode::Enter));
    let refused = Response::Error(AdminError::BadRequest {
        reason: "key too long".into(),
    });
    assert_eq!(app.apply(refused), Some(Action::Browse { key: None }));
    assert_eq!(app.keys.browsing, None);
    assert!(app.status.as_ref().is_some_and(|s| s.error));
}

#[test]
fn lagging_says_so_and_the_fresh_snapshot_rebuilds() {
    let mut app = live_app();
    let history = app.nodes[0].history.len();
    app.apply(event(0, Event::Lagged { missed: 42 }));
    assert_eq!(
        last_log(&app),
        "the console fell behind and missed 42 events; resyncing"
    );
    assert!(app
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("missed 42 events")));
    // The snapshot after it replaces the nodes (node-2 Active again) and keeps histories.
    let mut fresh = nodes();
    fresh[1].state = "Active".into();
    fresh.push(node("node-5", "Joining", 0, 0.0));
    let Response::Snapshot(mut snap) = snapshot(None) else {
        unreachable!()
    };
    snap.nodes = fresh;
    app.apply(Response::Snapshot(snap));
    assert_eq!(names(&app), ["node-1", "node-2", "node-3", "node-5"]);
    assert_eq!(app.nodes[1].info.state, "Active");
    assert_eq!(app.nodes[0].history.len(), history);
}

#[test]
fn a_lost_daemon_is_reported_and_the_reconnect_rebuilds() {
    let mut app = live_app();
    assert_eq!(app.conn_text(), None);
    app.watch_lost("the daemon closed the connection");
    assert_eq!(
        app.conn_text().as_deref(),
        Some(
            "disconnected from /run/cloudd/admin.sock — reconnecting… \
             (the daemon closed the connection)"
        )
    );
    assert_eq!(
        last_log(&app),
        "disconnected from /run/cloudd/admin.sock: the daemon closed the connection"
    );
    let logged = app.log.entries.len();
    // Nothing is polled while it is down.
    app.set_clock(NOW + 60_000);
    assert_eq!(app.due_polls(), []);
    // Each failed retry updates the reason, without a new log line.
    app.watch_lost("no daemon: No such file or directory (os error 2)\nmore");
    assert_eq!(app.log.entries.len(), logged);
    assert!(app
        .conn_text()
        .is_some_and(|t| t.ends_with("(no daemon: No such file or directory (os error 2))")));
    // The previous picture stays on screen meanwhile.
    assert_eq!(app.nodes.len(), 3);

    // Back: the new snapshot rebuilds everything.
    let Response::Snapshot(mut snap) = snapshot(None) else {
        unreachable!()
    };
    snap.nodes.truncate(2);
    app.apply(Response::Snapshot(snap));
    assert_eq!(app.conn, Conn::Live);
    assert_eq!(app.conn_text(), None);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("reconnected to /run/cloudd/admin.sock")
    );
    assert_eq!(last_log(&app), "reconnected to /run/cloudd/admin.sock");
    assert_eq!(names(&app), ["node-1", "node-2"]);
    assert!(!app.due_polls().is_empty());
}

#[test]
fn clients_follow_the_selected_node() {
    let mut app = live_app();
    assert_eq!(app.overview.clients_of.as_deref(), Some("node-1"));
    // Not again until the interval passed.
    assert!(app.due_polls().is_empty());
    app.set_clock(NOW + CLIENTS_EVERY_MS);
    assert_eq!(
        app.due_polls(),
        [Poll::Clients {
            node: "node-1".into()
        }]
    );
    // While one is in flight, no second one.
    app.set_clock(NOW + 10 * CLIENTS_EVERY_MS);
    app.handle_key(ch('j'));
    assert!(!app
        .due_polls()
        .iter()
        .any(|p| matches!(p, Poll::Clients { .. })));
    // The answer for node-1 arrives after the cursor left it: dropped.
    app.poll_done(
        Poll::Clients {
            node: "node-1".into(),
        },
        Ok(Response::Clients {
            clients: vec![client(99, "node-1", 1)],
            incomplete: vec![],
        }),
    );
    assert_eq!(app.overview.clients_of.as_deref(), Some("node-1"));
    assert_eq!(app.overview.clients.len(), 12);
    assert_eq!(
        app.overview.selected_client(&app.nodes),
        None,
        "not node-2's clients"
    );
    // Then node-2's are asked for at once.
    assert_eq!(
        app.due_polls(),
        [Poll::Clients {
            node: "node-2".into()
        }]
    );
    app.poll_done(
        Poll::Clients {
            node: "node-2".into(),
        },
        Ok(Response::Clients {
            clients: vec![client(5, "node-2", 1), client(6, "node-2", 2)],
            incomplete: vec!["node-2".into()],
        }),
    );
    assert_eq!(app.overview.clients_of.as_deref(), Some("node-2"));
    assert_eq!(
        app.overview.clients_note.as_deref(),
        Some("no answer from node-2")
    );
    assert_eq!(app.overview.client_view.visible, [0, 1]);
    // An error keeps the last list and says why.
    app.set_clock(NOW + 20 * CLIENTS_EVERY_MS);
    let p = app.due_polls().remove(0);
    app.poll_done(p, Err("no answer within 10s".into()));
    assert_eq!(app.overview.clients.len(), 2);
    assert_eq!(
        app.overview.clients_note.as_deref(),
        Some("no answer within 10s")
    );
    // Not polled on other tabs.
    app.handle_key(ch('3'));
    app.set_clock(NOW + 40 * CLIENTS_EVERY_MS);
    assert!(!app
        .due_polls()
        .iter()
        .any(|p| matches!(p, Poll::Clients { .. })));
}

#[test]
fn the_event_log_is_bounded_and_follows() {
    let mut app = live_app();
    for i in 0..(LOG_CAPACITY + 50) {
        app.apply(event(
            0,
            Event::Migrated {
                client: format!("{i:016x}"),
                from: "node-1".into(),
                to: "node-2".into(),
            },
        ));
    }
    assert_eq!(app.log.entries.len(), LOG_CAPACITY);
    assert_eq!(app.log.view.visible.len(), LOG_CAPACITY);
    assert!(app.log.view.at_end());
    // Moving up stops following; new entries keep the cursor on its entry.
    app.handle_key(ch('4'));
    app.handle_key(key(KeyCode::Up));
    assert!(!app.log.follow);
    let at = app
        .log
        .view
        .selected_item()
        .and_then(|i| app.log.entries.get(i))
        .map(|e| e.text.clone());
    app.apply(event(
        0,
        Event::NodeUp {
            node: "node-7".into(),
        },
    ));
    let now_at = app
        .log
        .view
        .selected_item()
        .and_then(|i| app.log.entries.get(i))
        .map(|e| e.text.clone());
    assert_eq!(at, now_at);
    // End follows again.
    app.handle_key(key(KeyCode::End));
    assert!(app.log.follow);
    app.apply(event(
        0,
        Event::NodeUp {
            node: "node-8".into(),
        },
    ));
    assert!(app.log.view.at_end());
}

#[test]
fn zone_map_scrolls_within_the_grid() {
    let mut app = live_app();
    app.handle_key(ch('3'));
    app.handle_key(key(KeyCode::Left));
    app.handle_key(key(KeyCode::Up));
    assert_eq!(app.zones.scroll, (0, 0));
    for _ in 0..10 {
        app.handle_key(key(KeyCode::Right));
        app.handle_key(key(KeyCode::Down));
    }
    assert_eq!(app.zones.scroll, (5, 3), "the fixture grid is 6×4");
}

#[test]
fn key_releases_are_ignored() {
    let mut app = live_app();
    let mut release = ch('q');
    release.kind = KeyEventKind::Release;
    assert_eq!(app.handle_key(release), None);
}

#[test]
fn esc_and_a_key_sent_together_are_both_taken() {
    let mut app = live_app();
    app.handle_key(key(KeyCode::Enter));
    assert_eq!(app.overview.focus, Focus::Clients);
    // What a terminal sends for Esc followed at once by `2`: Alt+2.
    let alt2 = KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT);
    assert_eq!(app.handle_key(alt2), None);
    assert_eq!(app.overview.focus, Focus::Nodes);
    assert_eq!(app.tab, Tab::Keys);
    let alt_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::ALT);
    assert_eq!(app.handle_key(alt_q), Some(Action::Quit));
}

/// Types `text` as keys.
fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        assert_eq!(
            app.handle_key(ch(c)),
            None,
            "typing {c:?} does nothing else"
        );
    }
}

#[test]
fn the_query_bar_shows_only_matches_and_keeps_them_live() {
    use cloudmesh::admin::KeysQuery;
    let mut app = live_app();
    app.handle_key(ch('2'));
    answer_polls(&mut app);
    // On the primary keys `/` still filters them.
    app.handle_key(ch('/'));
    assert!(matches!(app.popup, Some(Popup::Filter)));
    app.handle_key(key(KeyCode::Esc));
    app.handle_key(key(KeyCode::End));
    app.handle_key(key(KeyCode::Enter));
    app.apply(snapshot(Some(vec![
        row(3, 1, r#"{"x":1}"#, 4),
        row(5, 1, r#"{"x":9}"#, 5),
        row(7, 2, r#"{"x":7}"#, 6),
    ])));

    // `/` opens the bar; q and d are text there.
    app.handle_key(ch('/'));
    assert!(matches!(app.popup, Some(Popup::Query)));
    assert!(!app.dialog_open(), "the rows keep their focus");
    type_text(&mut app, "x > 2 and q != 1 sort -x limit 2");
    app.handle_key(key(KeyCode::Backspace));
    type_text(&mut app, "5");
    assert_eq!(app.handle_key(key(KeyCode::Enter)), None);
    assert!(app.popup.is_none());
    let asked = KeysQuery {
        filter: Some("x > 2 and q != 1".into()),
        sort: Some("-x".into()),
        near: None,
        limit: Some(5),
    };
    assert_eq!(app.keys.query.active.as_ref(), Some(&asked));
    // Nothing shown until the node answers; the query is asked at once.
    assert!(app.keys.shown_rows().is_empty() && !app.keys.shown_loaded());
    let poll = Poll::Query {
        key: "players".into(),
        query: asked.clone(),
    };
    assert_eq!(app.due_polls(), std::slice::from_ref(&poll));
    assert_eq!(app.due_polls(), [], "one at a time");
    let rows_answer = |rows| {
        Ok(Response::Rows {
            rows,
            truncated: false,
            incomplete: vec![],
        })
    };
    app.poll_done(
        poll.clone(),
        rows_answer(vec![row(5, 1, r#"{"x":9}"#, 5), row(7, 2, r#"{"x":7}"#, 6)]),
    );
    let shown = |app: &App| -> Vec<(u32, String)> {
        app.keys
            .shown_rows()
            .iter()
            .map(|r| (r.info.secondary, r.info.data.clone()))
            .collect()
    };
    assert_eq!(
        shown(&app),
        [(5, r#"{"x":9}"#.into()), (7, r#"{"x":7}"#.into())],
        "in the query's order"
    );
    assert_eq!(
        app.keys.shown_rows()[0].changed_at_ms,
        0,
        "the first answer"
    );

    // Live: a change under the key asks again soon (not back to back with the last
    // answer); the timer asks again too.
    assert_eq!(app.due_polls(), []);
    app.apply(event(0, Event::RowChanged(row(3, 1, r#"{"x":8}"#, 9))));
    assert_eq!(app.keys.rows.len(), 3, "every row is still followed");
    assert_eq!(app.due_polls(), []);
    app.set_clock(NOW + query::QUERY_MIN_GAP_MS);
    assert_eq!(app.due_polls(), std::slice::from_ref(&poll));
    app.set_clock(NOW + 1_000);
    app.poll_done(
        poll.clone(),
        rows_answer(vec![
            row(5, 1, r#"{"x":9}"#, 5),
            row(3, 1, r#"{"x":8}"#, 9),
            row(7, 2, r#"{"x":7}"#, 6),
        ]),
    );
    assert_eq!(shown(&app).len(), 3);
    let flashes: Vec<u64> = app
        .keys
        .shown_rows()
        .iter()
        .map(|r| r.changed_at_ms)
        .collect();
    assert_eq!(flashes, [0, NOW + 1_000, 0], "the row that entered flashes");
    app.set_clock(NOW + 1_000 + query::QUERY_EVERY_MS);
    assert_eq!(app.due_polls(), std::slice::from_ref(&poll));
    // An answer to a query no longer in force is dropped.
    let other = Poll::Query {
        key: "players".into(),
        query: KeysQuery::default(),
    };
    app.poll_done(other, rows_answer(vec![]));
    assert_eq!(shown(&app).len(), 3);

    // Esc clears the query (every row again), then goes back to the keys.
    assert_eq!(app.handle_key(key(KeyCode::Esc)), None);
    assert!(app.keys.query.active.is_none() && app.keys.query.text.is_empty());
    assert_eq!(shown(&app).len(), 3);
    assert_eq!(shown(&app)[0].0, 3, "in key order again");
    app.poll_done(poll, rows_answer(vec![]));
    assert_eq!(
        shown(&app).len(),
        3,
        "the cleared query's answer is dropped"
    );
    assert_eq!(
        app.handle_key(key(KeyCode::Esc)),
        Some(Action::Browse { key: None })
    );
}

#[test]
fn a_malformed_query_is_said_in_the_bar() {
    let mut app = live_app();
    app.handle_key(ch('2'));
    answer_polls(&mut app);
    app.handle_key(key(KeyCode::End));
    app.handle_key(key(KeyCode::Enter));
    app.apply(snapshot(Some(vec![row(3, 1, r#"{"x":1}"#, 4)])));

    // A limit that is not a number is caught before anything is asked: the bar stays.
    app.handle_key(ch('/'));
    type_text(&mut app, "x > 1 limit many");
    app.handle_key(key(KeyCode::Enter));
    assert!(matches!(app.popup, Some(Popup::Query)));
    assert!(app.keys.query.error);
    assert!(
        app.keys
            .query
            .note
            .as_deref()
            .is_some_and(|n| n.contains("limit")),
        "{:?}",
        app.keys.query.note
    );
    assert!(app.keys.query.active.is_none());
    assert!(!app
        .due_polls()
        .iter()
        .any(|p| matches!(p, Poll::Query { .. })));

    // The node refuses what it cannot parse: the bar names the problem, every row shows,
    // and the query is not asked again.
    for _ in 0.."limit many".len() {
        app.handle_key(key(KeyCode::Backspace));
    }
    type_text(&mut app, "and players <");
    app.handle_key(key(KeyCode::Enter));
    assert!(app.popup.is_none());
    let polls = app.due_polls();
    let [poll @ Poll::Query { .. }] = polls.as_slice() else {
        panic!("the query is asked: {polls:?}");
    };
    app.poll_done(
        poll.clone(),
        Ok(Response::Error(AdminError::InvalidQuery {
            part: "where".into(),
            reason: "syntax error at byte 19: expected a value, found end of input".into(),
        })),
    );
    assert!(app.keys.query.active.is_none() && app.keys.query.error);
    let note = app.keys.query.note.clone().unwrap_or_default();
    assert!(note.contains("invalid query (where)"), "{note}");
    assert_eq!(
        app.keys.query.text, "x > 1 and players <",
        "kept to be fixed"
    );
    assert_eq!(app.keys.shown_rows().len(), 1);
    app.set_clock(NOW + 60_000);
    assert!(!app
        .due_polls()
        .iter()
        .any(|p| matches!(p, Poll::Query { .. })));

    // A failure to ask keeps the query: the next tick asks again.
    app.handle_key(ch('/'));
    type_text(&mut app, " 3");
    app.handle_key(key(KeyCode::Enter));
    let polls = app.due_polls();
    let [poll @ Poll::Query { .. }] = polls.as_slice() else {
        panic!("the query is asked: {polls:?}");
    };
    app.poll_done(poll.clone(), Err("busy".into()));
    assert!(app.keys.query.active.is_some() && app.keys.query.error);
    app.set_clock(NOW + 60_000 + query::QUERY_EVERY_MS);
    assert_eq!(app.due_polls(), std::slice::from_ref(poll));

    // A bad limit typed over a query in force ends it: its answers would hide the error.
    app.handle_key(ch('/'));
    type_text(&mut app, " limit 5 and");
    app.handle_key(key(KeyCode::Enter));
    assert!(matches!(app.popup, Some(Popup::Query)));
    assert!(app.keys.query.active.is_none() && app.keys.query.error);
    app.poll_done(
        poll.clone(),
        Ok(Response::Rows {
            rows: vec![],
            truncated: false,
            incomplete: vec![],
        }),
    );
    assert!(app.keys.query.error, "the old query's answer is dropped");
    assert_eq!(app.keys.shown_rows().len(), 1);
    app.handle_key(key(KeyCode::Esc));

    // Esc while typing clears the query and closes the bar.
    app.handle_key(ch('/'));
    app.handle_key(key(KeyCode::Esc));
    assert!(app.popup.is_none());
    assert!(!app.keys.query.shown() && app.keys.query.text.is_empty());
}
