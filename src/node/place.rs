//! Requests layer: placement at the node, a pure read of the hub. Every node routes. Candidates are the mesh's members with the
//! load they last reported; the client adds the RTTs it measured and its position. A better
//! node means a `Redirect` carrying a ticket the target honours without redirecting again.

use std::time::Duration;

use super::hub::{now_ms, Hub};
use super::shared::Shared;
use crate::mesh::issue_ticket;
use crate::placement::{score, verdict, Candidate, Decision, Verdict};
use crate::proto::{ClientId, NodeRtt, Placement, Position};

/// How long a redirect ticket stays valid: enough to connect, too short to hoard.
const TICKET_LIFETIME: Duration = Duration::from_secs(15);

/// Scores every member for a client with these RTTs and position.
pub(super) fn decide(
    hub: &Hub,
    shared: &Shared,
    rtts: &[NodeRtt],
    position: Option<Position>,
) -> Decision {
    let cfg = &shared.config;
    let live_clients = hub.links.values().filter(|l| !l.kind.is_peer()).count();
    let candidates: Vec<Candidate> = hub
        .members()
        .all()
        .into_iter()
        .filter_map(|m| {
            // This node's own count is live; others' come from their last Load message, and a
            // member that has not reported yet is not a candidate.
            let (clients, capacity, cpu) = if m.id == shared.id {
                let cpu = hub.loads.get(&m.id).map_or(0.0, |l| l.cpu_percent);
                (
                    u32::try_from(live_clients).unwrap_or(u32::MAX),
                    cfg.max_clients,
                    cpu,
                )
            } else {
                let l = hub.loads.get(&m.id)?;
                (l.clients, l.capacity, l.cpu_percent)
            };
            Some(Candidate {
                id: m.id,
                name: m.name.clone(),
                state: m.state,
                clients,
                capacity,
                cpu_percent: cpu,
                rtt_ms: rtts
                    .iter()
                    .find(|r| r.node == m.id)
                    .map(|r| f64::from(r.micros) / 1000.0),
            })
        })
        .collect();
    let zone_owner = match (position, hub.zones.as_ref()) {
        (Some(p), Some(map)) => Some(map.owner_at(p.x, p.y)),
        _ => None,
    };
    score(&candidates, zone_owner, &cfg.placement)
}

/// Turns a decision into what the client is told. Redirects need the mesh secret (tickets);
/// without one this node is the whole mesh and the answer is always `Stay`.
pub(super) fn placement(
    hub: &Hub,
    shared: &Shared,
    decision: &Decision,
    ticket_client: ClientId,
) -> Placement {
    let Verdict::Move(target) = verdict(shared.id, decision, &shared.config.placement) else {
        return Placement::Stay;
    };
    let (Some(secret), Some(member)) = (&shared.config.secret, hub.members().get(target)) else {
        return Placement::Stay;
    };
    let expires = now_ms() + TICKET_LIFETIME.as_millis() as u64;
    Placement::Redirect {
        node: target,
        name: member.name.clone(),
        addrs: member.addrs_for_clients().to_vec(),
        ticket: issue_ticket(secret, ticket_client, target, expires),
        fingerprint: member.fingerprint,
    }
}
