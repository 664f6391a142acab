//! The migration target picker: the other nodes a client can move to, the cursor starting
//! on the first that takes clients.

use crate::console::keymap::Intent;
use crate::console::list::ListView;
use crate::console::nodes::NodeRow;
use crate::console::requests::Action;

use super::Outcome;

/// The client to move and the nodes it can go to.
#[derive(Debug)]
pub struct MigratePicker {
    /// The client.
    pub client: String,
    /// Its node.
    pub from: String,
    /// The other nodes (names).
    pub choices: Vec<String>,
    /// The cursor.
    pub view: ListView,
}

impl MigratePicker {
    /// The picker for `client` on `from`; `None` when no other node is left to move it to.
    pub fn new(client: String, from: String, nodes: &[NodeRow]) -> Option<MigratePicker> {
        let choices: Vec<String> = nodes
            .iter()
            .filter(|n| n.info.name != from && !n.lost)
            .map(|n| n.info.name.clone())
            .collect();
        if choices.is_empty() {
            return None;
        }
        let mut view = ListView::default();
        view.rebuild(choices.iter(), |_, _| true, |_| false);
        // Start on the first node that takes clients.
        if let Some(at) = choices.iter().position(|c| {
            nodes
                .iter()
                .any(|n| &n.info.name == c && n.info.state == "Active")
        }) {
            view.selected = at;
        }
        Some(MigratePicker {
            client,
            from,
            choices,
            view,
        })
    }

    /// What a key does: Enter moves the client to the node under the cursor, Esc cancels,
    /// the cursor keys move.
    pub fn handle(&mut self, intent: Intent) -> Outcome {
        match intent {
            Intent::Open => {
                let Some(to) = self
                    .view
                    .selected_item()
                    .and_then(|i| self.choices.get(i))
                    .cloned()
                else {
                    return Outcome::Stay;
                };
                Outcome::Act(Action::Migrate {
                    client: self.client.clone(),
                    from: self.from.clone(),
                    to,
                })
            }
            Intent::No => Outcome::Cancel,
            other => {
                self.view.cursor(other);
                Outcome::Stay
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixtures::nodes;

    #[test]
    fn offers_the_other_live_nodes_starting_on_one_that_takes_clients() {
        let mut rows: Vec<NodeRow> = nodes().into_iter().map(NodeRow::new).collect();
        let picker = MigratePicker::new("c1".into(), "node-1".into(), &rows).expect("choices");
        // node-2 drains: the cursor starts on node-3.
        assert_eq!(picker.choices, ["node-2", "node-3"]);
        assert_eq!(picker.view.selected, 1);

        rows[2].lost = true;
        let picker = MigratePicker::new("c1".into(), "node-1".into(), &rows).expect("choices");
        assert_eq!(picker.choices, ["node-2"], "a lost node is no target");
        rows.truncate(1);
        assert!(MigratePicker::new("c1".into(), "node-1".into(), &rows).is_none());
    }

    #[test]
    fn enter_moves_to_the_node_under_the_cursor_and_esc_cancels() {
        let rows: Vec<NodeRow> = nodes().into_iter().map(NodeRow::new).collect();
        let mut picker = MigratePicker::new("c1".into(), "node-1".into(), &rows).expect("choices");
        assert_eq!(picker.handle(Intent::Up), Outcome::Stay);
        assert_eq!(
            picker.handle(Intent::Open),
            Outcome::Act(Action::Migrate {
                client: "c1".into(),
                from: "node-1".into(),
                to: "node-2".into(),
            })
        );
        assert_eq!(picker.handle(Intent::No), Outcome::Cancel);
    }
}
