//! Service: zones. The host assigns the world grid's cells to Active nodes (balanced by load,
//! stable over time), publishes the map in `cloud.zones/0` and to every peer, and a client
//! whose reported position goes deep enough into another node's cell is handed over there
//! (the margin keeps a client walking along a border from going back and forth).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::hub::{now_ms, Hub};
use super::migrate;
use super::request::Effect;
use super::shared::Shared;
use crate::mesh::MeshEvent;
use crate::placement::{assign, ZoneMap};
use crate::proto::{ClientId, Key, NodeId, NodeState, PeerFrame};

/// How often the host reconsiders the zone map.
const ASSIGN_INTERVAL: Duration = Duration::from_millis(500);

/// Takes a zone map (from the host): newer epochs replace older ones.
fn adopt(hub: &mut Hub, map: ZoneMap) -> bool {
    let newer = hub
        .zones
        .as_ref()
        .is_none_or(|cur| map.epoch > cur.epoch || (map.epoch == cur.epoch && map != *cur));
    if newer {
        hub.zones = Some(map);
        let _ = hub.events.send(MeshEvent::ZonesChanged);
    }
    newer
}

/// A peer's `Zones` message.
pub(super) fn on_zones(shared: &Shared, json: &[u8]) {
    match serde_json::from_slice::<ZoneMap>(json) {
        Ok(map) => {
            adopt(&mut shared.hub(), map);
        }
        Err(e) => tracing::warn!(error = %e, "ignoring a zone map that does not parse"),
    }
}

/// The host's duty: keep the zone map fitting the Active nodes and their loads.
pub(super) async fn host_loop(shared: Arc<Shared>) {
    let Some(config) = shared.config.zones.clone() else {
        return;
    };
    let mut shutdown = shared.shutdown.clone();
    loop {
        {
            let mut hub = shared.hub();
            if hub.members().host() == shared.id {
                let live = hub.connected_clients() as f64;
                let nodes: Vec<(NodeId, f64)> = hub
                    .members()
                    .all()
                    .into_iter()
                    .filter(|m| m.state == NodeState::Active)
                    .map(|m| {
                        let (clients, capacity) = if m.id == shared.id {
                            (live, f64::from(shared.config.max_clients.max(1)))
                        } else {
                            hub.loads.get(&m.id).map_or((0.0, 1.0), |l| {
                                (f64::from(l.clients), f64::from(l.capacity.max(1)))
                            })
                        };
                        (m.id, 1.0 + clients / capacity)
                    })
                    .collect();
                let previous = hub.zones.clone();
                if let Some(mut map) = assign(&config, &nodes, previous.as_ref()) {
                    let changed = previous.as_ref().is_none_or(|p| p.owners != map.owners);
                    if changed {
                        // Stay above any epoch seen, so every node takes this map.
                        map.epoch = map.epoch.max(previous.map_or(0, |p| p.epoch) + 1);
                        publish(&mut hub, &shared, map);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(ASSIGN_INTERVAL) => {}
        }
    }
}

fn publish(hub: &mut Hub, shared: &Shared, map: ZoneMap) {
    let json = match serde_json::to_vec(&map) {
        Ok(j) => Bytes::from(j),
        Err(e) => {
            tracing::error!(error = %e, "zone map does not serialise");
            return;
        }
    };
    tracing::info!(epoch = map.epoch, "zone map published");
    adopt(hub, map);
    hub.broadcast(
        &PeerFrame::Zones { json: json.clone() },
        shared.config.max_frame,
    );
    let system = hub.system;
    match hub
        .store
        .post(system, Key::new("cloud.zones", 0), json, now_ms())
    {
        Ok((_, fan)) => {
            hub.deliver(fan, shared.config.max_frame, true);
            hub.flush_holds(shared.config.max_frame);
        }
        Err(e) => tracing::warn!(error = %e, "could not write cloud.zones/0"),
    }
}

/// Starts what a request asked of the node beyond the store: a zone handover.
pub(super) fn start(shared: &Arc<Shared>, effect: Effect) {
    match effect {
        Effect::None => {}
        Effect::HandOver { client, to } => {
            tokio::spawn(hand_over(shared.clone(), client, to));
        }
    }
}

/// Moves a client to its zone's owner (a make-before-break migration).
async fn hand_over(shared: Arc<Shared>, client: ClientId, target: NodeId) {
    match migrate::migrate(&shared, client, target).await {
        Ok(()) => tracing::debug!(%client, %target, "zone handover done"),
        Err(e) => tracing::debug!(%client, %target, error = %e, "zone handover not done"),
    }
}
