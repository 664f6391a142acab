//! Scoring candidate nodes for one client. Lower is better.
//!
//! Each term is normalised to roughly 0..1 and multiplied by an operator-set weight, so the
//! weights say directly how much one "unit" of each concern is worth against the others.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::proto::{NodeId, NodeState};

/// How much each concern counts when placing a client. Lives in config so operators can tune
/// placement for their game (e.g. favour RTT for shooters, zones for MMOs) without a rebuild.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// Weight of `clients / capacity`.
    pub load: f64,
    /// Weight of machine CPU use (0..1).
    pub cpu: f64,
    /// Weight of `rtt_ms / rtt_scale_ms`.
    pub rtt: f64,
    /// Penalty for a node that does not own the client's zone cell.
    pub zone: f64,
    /// The RTT, in milliseconds, that counts as much as a full node: it turns milliseconds
    /// into the same 0..1-ish scale as the load term.
    pub rtt_scale_ms: f64,
    /// How much worse (in total score) a client's current node may be than the best before
    /// the client is moved; stops clients bouncing between nodes for tiny differences.
    pub stay_margin: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            load: 1.0,
            cpu: 0.5,
            rtt: 1.0,
            // Above load + cpu together, so a zone's owner wins unless it is full or ineligible.
            zone: 2.0,
            rtt_scale_ms: 50.0,
            stay_margin: 0.1,
        }
    }
}

impl Weights {
    /// Refuses weights that would make scores meaningless (negative, NaN, a zero RTT scale),
    /// so a typo in config fails at start instead of placing clients strangely. The message
    /// names the field.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("load", self.load),
            ("cpu", self.cpu),
            ("rtt", self.rtt),
            ("zone", self.zone),
            ("stay_margin", self.stay_margin),
        ];
        for (name, value) in fields {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "placement weight {name} must be a number >= 0, got {value}"
                ));
            }
        }
        if !(self.rtt_scale_ms.is_finite() && self.rtt_scale_ms > 0.0) {
            return Err(format!(
                "placement rtt_scale_ms must be a number > 0, got {}",
                self.rtt_scale_ms
            ));
        }
        Ok(())
    }
}

/// What the router knows about one node when placing a client: gathered by the caller from
/// `cloud.nodes`, `cloud.load` and the RTTs the SDK measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The node.
    pub id: NodeId,
    /// Its name, for explanations.
    pub name: String,
    /// Its state; only `Active` nodes take placements.
    pub state: NodeState,
    /// Clients it serves now.
    pub clients: u32,
    /// Clients it may serve at most.
    pub capacity: u32,
    /// Machine CPU use, percent (0..100).
    pub cpu_percent: f32,
    /// RTT the client measured to it; `None` when the probe did not answer in time.
    pub rtt_ms: Option<f64>,
}

/// One candidate's score, term by term, so a decision can be explained and tested.
///
/// The terms are already multiplied by their weights, so `total = load + cpu + rtt + zone`
/// for an eligible node and a reader can see which term decided.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateScore {
    /// The node.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// Whether it may receive the client at all.
    pub eligible: bool,
    /// Why it is not eligible (`"joining"`, `"draining"`, `"drained"`, `"full"`,
    /// `"no capacity"`); `None` when eligible.
    pub reason: Option<String>,
    /// Weighted `clients / capacity` (infinite when capacity is 0).
    pub load: f64,
    /// Weighted CPU use.
    pub cpu: f64,
    /// Weighted RTT.
    pub rtt: f64,
    /// Weighted zone penalty.
    pub zone: f64,
    /// Sum of the terms; `f64::INFINITY` when not eligible.
    pub total: f64,
}

/// The outcome of placing one client: the chosen node and every candidate's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The best eligible node; `None` when no node may take the client.
    pub choice: Option<NodeId>,
    /// Every candidate: eligible ones first, lowest total first, ties by lower id; then the
    /// ineligible ones by id. Deterministic, so every router agrees.
    pub scores: Vec<CandidateScore>,
}

/// Whether a client already served somewhere should move (rebalance, zones, re-placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the client where it is.
    Stay,
    /// Move the client to this node.
    Move(NodeId),
}

/// Why `c` may not take a client, or `None` if it may.
fn ineligibility(c: &Candidate) -> Option<&'static str> {
    match c.state {
        NodeState::Active => {}
        NodeState::Joining => return Some("joining"),
        NodeState::Draining => return Some("draining"),
        NodeState::Drained => return Some("drained"),
    }
    if c.capacity == 0 {
        Some("no capacity")
    } else if c.clients >= c.capacity {
        Some("full")
    } else {
        None
    }
}

/// An RTT worth using: finite and not negative (a bad probe is treated as no probe).
fn known_rtt(c: &Candidate) -> Option<f64> {
    c.rtt_ms.filter(|r| r.is_finite() && *r >= 0.0)
}

/// Ranks `candidates` for one client whose position lies in a cell owned by `zone_owner`
/// (`None`: no zones, or the client reported no position). Lower total is better.
///
/// A candidate whose RTT is unknown is given the worst RTT known among the eligible
/// candidates: an unanswered probe must not make a node look close, and eligible nodes are
/// the ones it competes with. If no eligible RTT is known, RTT plays no part.
pub fn score(candidates: &[Candidate], zone_owner: Option<NodeId>, weights: &Weights) -> Decision {
    let reasons: Vec<Option<&'static str>> = candidates.iter().map(ineligibility).collect();
    let worst_rtt = candidates
        .iter()
        .zip(&reasons)
        .filter(|(_, reason)| reason.is_none())
        .filter_map(|(c, _)| known_rtt(c))
        .fold(None, |worst: Option<f64>, r| {
            Some(worst.map_or(r, |w| w.max(r)))
        });
    // A scale that is not positive cannot turn milliseconds into a score: ignore RTT rather
    // than divide by zero (validate() refuses such config anyway).
    let rtt_scale = Some(weights.rtt_scale_ms).filter(|s| s.is_finite() && *s > 0.0);

    let mut scores: Vec<CandidateScore> = candidates
        .iter()
        .zip(reasons)
        .map(|(c, reason)| {
            let load = if c.capacity == 0 {
                f64::INFINITY
            } else {
                f64::from(c.clients) / f64::from(c.capacity)
            };
            // Unknown CPU (NaN) counts as busy: optimism about a node we cannot see is how
            // overloaded nodes attract even more clients.
            let cpu = if c.cpu_percent.is_nan() {
                1.0
            } else {
                (f64::from(c.cpu_percent) / 100.0).clamp(0.0, 1.0)
            };
            let rtt = match (rtt_scale, known_rtt(c).or(worst_rtt)) {
                (Some(scale), Some(ms)) => ms / scale,
                _ => 0.0,
            };
            let zone = match zone_owner {
                Some(owner) if owner != c.id => 1.0,
                _ => 0.0,
            };
            let (load, cpu, rtt, zone) = (
                load * weights.load,
                cpu * weights.cpu,
                rtt * weights.rtt,
                zone * weights.zone,
            );
            let total = match reason {
                None => load + cpu + rtt + zone,
                Some(_) => f64::INFINITY,
            };
            CandidateScore {
                id: c.id,
                name: c.name.clone(),
                eligible: reason.is_none(),
                reason: reason.map(str::to_owned),
                load,
                cpu,
                rtt,
                zone,
                total,
            }
        })
        .collect();
    scores.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(a.total.total_cmp(&b.total))
            .then(a.id.cmp(&b.id))
    });
    let choice = scores.first().filter(|s| s.eligible).map(|s| s.id);
    Decision { choice, scores }
}

/// Whether a client on `current` should move, given a fresh `decision` for it.
///
/// Stays when `current` is the choice, when `current` is eligible and at most
/// `weights.stay_margin` worse than the best (hysteresis: scores jitter with load and RTT, and
/// each move costs the client a handoff), or when there is nowhere to go. Moves to the choice
/// otherwise, including when `current` is draining, full or not a candidate at all.
pub fn verdict(current: NodeId, decision: &Decision, weights: &Weights) -> Verdict {
    let Some(best) = decision.choice else {
        return Verdict::Stay;
    };
    if best == current {
        return Verdict::Stay;
    }
    let best_total = decision
        .scores
        .iter()
        .find(|s| s.id == best)
        .map_or(f64::INFINITY, |s| s.total);
    // max(0.0) also turns a NaN margin into no margin.
    let margin = weights.stay_margin.max(0.0);
    let keep = decision
        .scores
        .iter()
        .any(|s| s.id == current && s.eligible && s.total <= best_total + margin);
    if keep {
        Verdict::Stay
    } else {
        Verdict::Move(best)
    }
}

/// A term for the table: three decimals, or `inf`/`nan` spelled out.
fn number(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else if v.is_nan() {
        "nan".to_owned()
    } else {
        "inf".to_owned()
    }
}

impl Decision {
    /// Renders the decision as an aligned table, best first, for `cloudctl place --explain`
    /// and logs: an operator asking "why did this client land there?" gets the answer term
    /// by term.
    ///
    /// ```text
    /// choice: beta (22000000)
    /// node              eligible       load    cpu    rtt   zone  total
    /// beta (22000000)   yes           0.100  0.050  0.400  0.000  0.550
    /// alpha (11000000)  yes           0.900  0.400  0.200  0.000  1.500
    /// gamma (33000000)  no: draining  0.000  0.000  0.400  0.000      -
    /// lower is better; terms are weighted, total = load + cpu + rtt + zone
    /// ```
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let label = |s: &CandidateScore| format!("{} ({:08x})", s.name, (s.id.0 >> 96) as u32);
        match self
            .choice
            .and_then(|id| self.scores.iter().find(|s| s.id == id))
        {
            Some(best) => {
                let _ = writeln!(out, "choice: {}", label(best));
            }
            None => out.push_str("choice: none (no eligible node)\n"),
        }
        let header = ["node", "eligible", "load", "cpu", "rtt", "zone", "total"].map(String::from);
        let mut rows = vec![header];
        for s in &self.scores {
            let eligible = match &s.reason {
                None => "yes".to_owned(),
                Some(reason) => format!("no: {reason}"),
            };
            let total = if s.eligible {
                number(s.total)
            } else {
                "-".to_owned()
            };
            rows.push([
                label(s),
                eligible,
                number(s.load),
                number(s.cpu),
                number(s.rtt),
                number(s.zone),
                total,
            ]);
        }
        let mut widths = [0usize; 7];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                // Text columns read left-aligned, numbers right-aligned so decimals line up.
                let _ = match i {
                    0 | 1 => write!(line, "{cell:<w$}  "),
                    _ => write!(line, "{cell:>w$}  "),
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str("lower is better; terms are weighted, total = load + cpu + rtt + zone\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        // The distinguishing byte goes to the top so the short form in explain() shows it.
        NodeId((u128::from(n) << 120) | u128::from(n))
    }

    fn cand(n: u8, clients: u32, capacity: u32, cpu: f32, rtt: Option<f64>) -> Candidate {
        Candidate {
            id: id(n),
            name: format!("node{n}"),
            state: NodeState::Active,
            clients,
            capacity,
            cpu_percent: cpu,
            rtt_ms: rtt,
        }
    }

    fn find(d: &Decision, n: u8) -> &CandidateScore {
        d.scores
            .iter()
            .find(|s| s.id == id(n))
            .expect("candidate scored")
    }

    #[test]
    fn idle_node_beats_loaded_node() {
        let w = Weights::default();
        let d = score(
            &[
                cand(1, 900, 1000, 80.0, Some(20.0)),
                cand(2, 0, 1000, 5.0, Some(20.0)),
            ],
            None,
            &w,
        );
        assert_eq!(d.choice, Some(id(2)));
        assert_eq!(d.scores[0].id, id(2));
        assert!(d.scores[0].total < d.scores[1].total);
    }

    #[test]
    fn equal_load_lower_rtt_wins() {
        let w = Weights::default();
        let d = score(
            &[
                cand(1, 100, 1000, 30.0, Some(80.0)),
                cand(2, 100, 1000, 30.0, Some(15.0)),
            ],
            None,
            &w,
        );
        assert_eq!(d.choice, Some(id(2)));
        assert!((find(&d, 1).rtt - 80.0 / 50.0).abs() < 1e-9);
    }

    #[test]
    fn zone_owner_wins_over_small_load_advantage() {
        let w = Weights::default();
        let cands = [
            cand(1, 300, 1000, 30.0, Some(20.0)),
            cand(2, 200, 1000, 30.0, Some(20.0)),
        ];
        // Without zones the less loaded node wins...
        assert_eq!(score(&cands, None, &w).choice, Some(id(2)));
        // ...but the owner of the client's cell wins when zones are in play.
        let d = score(&cands, Some(id(1)), &w);
        assert_eq!(d.choice, Some(id(1)));
        assert_eq!(find(&d, 1).zone, 0.0);
        assert_eq!(find(&d, 2).zone, w.zone);
    }

    #[test]
    fn draining_and_full_nodes_are_never_chosen_and_say_why() {
        let w = Weights::default();
        let mut draining = cand(1, 0, 1000, 0.0, Some(1.0));
        draining.state = NodeState::Draining;
        let mut drained = cand(2, 0, 1000, 0.0, Some(1.0));
        drained.state = NodeState::Drained;
        let mut joining = cand(3, 0, 1000, 0.0, Some(1.0));
        joining.state = NodeState::Joining;
        let full = cand(4, 1000, 1000, 0.0, Some(1.0));
        let zero = cand(5, 0, 0, 0.0, Some(1.0));
        let busy = cand(6, 999, 1000, 99.0, Some(400.0));
        // Even as the zone owner, an ineligible node is not chosen.
        let d = score(
            &[draining, drained, joining, full, zero, busy],
            Some(id(1)),
            &w,
        );
        assert_eq!(d.choice, Some(id(6)));
        assert_eq!(d.scores[0].id, id(6));
        let reasons: Vec<(NodeId, Option<&str>)> = d
            .scores
            .iter()
            .map(|s| (s.id, s.reason.as_deref()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (id(6), None),
                (id(1), Some("draining")),
                (id(2), Some("drained")),
                (id(3), Some("joining")),
                (id(4), Some("full")),
                (id(5), Some("no capacity")),
            ]
        );
        for s in &d.scores[1..] {
            assert!(!s.eligible);
            assert_eq!(s.total, f64::INFINITY);
        }
    }

    #[test]
    fn no_eligible_node_means_no_choice_and_stay() {
        let w = Weights::default();
        let d = score(&[cand(1, 10, 10, 0.0, None)], None, &w);
        assert_eq!(d.choice, None);
        assert_eq!(verdict(id(1), &d, &w), Verdict::Stay);
        assert_eq!(score(&[], None, &w).choice, None);
        assert!(d.explain().contains("choice: none"));
    }

    #[test]
    fn unknown_rtt_gets_worst_known() {
        let w = Weights::default();
        let d = score(
            &[
                cand(1, 0, 100, 0.0, Some(10.0)),
                cand(2, 0, 100, 0.0, Some(90.0)),
                cand(3, 0, 100, 0.0, None),
                // A bad probe counts as no probe.
                cand(4, 0, 100, 0.0, Some(f64::NAN)),
            ],
            None,
            &w,
        );
        assert_eq!(find(&d, 3).rtt, find(&d, 2).rtt);
        assert_eq!(find(&d, 4).rtt, find(&d, 2).rtt);
        assert_eq!(d.choice, Some(id(1)));
        // Unknown RTT ties with the worst known, and the tie goes to the lower id.
        let order: Vec<NodeId> = d.scores.iter().map(|s| s.id).collect();
        assert_eq!(order, vec![id(1), id(2), id(3), id(4)]);
    }

    #[test]
    fn unknown_rtt_plays_no_part_when_none_known() {
        let w = Weights::default();
        let d = score(
            &[cand(1, 50, 100, 0.0, None), cand(2, 10, 100, 0.0, None)],
            None,
            &w,
        );
        assert!(d.scores.iter().all(|s| s.rtt == 0.0));
        assert_eq!(d.choice, Some(id(2)));
    }

    #[test]
    fn stay_margin_keeps_a_slightly_worse_node_and_moves_a_clearly_worse_one() {
        let w = Weights::default();
        // Node 1 is 0.05 worse in load: inside the 0.1 margin.
        let d = score(
            &[
                cand(1, 55, 100, 0.0, Some(10.0)),
                cand(2, 50, 100, 0.0, Some(10.0)),
            ],
            None,
            &w,
        );
        assert_eq!(d.choice, Some(id(2)));
        assert_eq!(verdict(id(1), &d, &w), Verdict::Stay);
        assert_eq!(verdict(id(2), &d, &w), Verdict::Stay);
        // Node 1 is 0.3 worse: move.
        let d = score(
            &[
                cand(1, 80, 100, 0.0, Some(10.0)),
                cand(2, 50, 100, 0.0, Some(10.0)),
            ],
            None,
            &w,
        );
        assert_eq!(verdict(id(1), &d, &w), Verdict::Move(id(2)));
    }

    #[test]
    fn verdict_moves_clients_off_ineligible_or_unknown_nodes() {
        let w = Weights::default();
        let mut draining = cand(1, 0, 100, 0.0, Some(1.0));
        draining.state = NodeState::Draining;
        let d = score(&[draining, cand(2, 99, 100, 90.0, Some(300.0))], None, &w);
        assert_eq!(verdict(id(1), &d, &w), Verdict::Move(id(2)));
        // A node that is not among the candidates (e.g. lost) cannot keep its clients.
        assert_eq!(verdict(id(9), &d, &w), Verdict::Move(id(2)));
    }

    #[test]
    fn same_input_same_output_and_ties_by_lower_id() {
        let w = Weights::default();
        let a = [
            cand(3, 10, 100, 20.0, Some(30.0)),
            cand(1, 10, 100, 20.0, Some(30.0)),
            cand(2, 10, 100, 20.0, Some(30.0)),
        ];
        let mut b = a.clone();
        b.reverse();
        let da = score(&a, None, &w);
        let db = score(&b, None, &w);
        assert_eq!(da, db, "input order must not matter");
        assert_eq!(da, score(&a, None, &w));
        assert_eq!(da.choice, Some(id(1)));
        let order: Vec<NodeId> = da.scores.iter().map(|s| s.id).collect();
        assert_eq!(order, vec![id(1), id(2), id(3)]);
        assert_eq!(da.explain(), db.explain());
    }

    #[test]
    fn terms_are_weighted_and_sum_to_total() {
        let w = Weights {
            load: 2.0,
            cpu: 3.0,
            rtt: 4.0,
            zone: 5.0,
            rtt_scale_ms: 100.0,
            stay_margin: 0.0,
        };
        let d = score(&[cand(1, 25, 100, 150.0, Some(50.0))], Some(id(2)), &w);
        let s = &d.scores[0];
        assert_eq!(s.load, 0.5);
        assert_eq!(s.cpu, 3.0, "cpu is clamped to 100%");
        assert_eq!(s.rtt, 2.0);
        assert_eq!(s.zone, 5.0);
        assert_eq!(s.total, 10.5);
    }

    #[test]
    fn explain_is_an_aligned_table_best_first() {
        let w = Weights::default();
        let mut draining = cand(3, 0, 100, 0.0, Some(20.0));
        draining.state = NodeState::Draining;
        let d = score(
            &[
                cand(1, 90, 100, 80.0, Some(10.0)),
                cand(2, 10, 100, 10.0, Some(20.0)),
                draining,
            ],
            None,
            &w,
        );
        let text = d.explain();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "choice: node2 (02000000)");
        assert!(lines[1].starts_with("node "));
        assert!(lines[2].starts_with("node2 (02000000)"));
        assert!(lines[3].starts_with("node1 (01000000)"));
        assert!(lines[4].starts_with("node3 (03000000)"));
        assert!(lines[4].contains("no: draining"));
        assert!(lines[4].ends_with('-'));
        // Aligned: every column of numbers ends at the same place.
        let end = lines[1].len();
        assert!(lines[2..5].iter().all(|l| l.len() == end), "{text}");
        assert!(lines[2].ends_with(&format!("{:.3}", d.scores[0].total)));
    }

    #[test]
    fn weights_from_config_default_and_refuse_unknown_fields() {
        let w: Weights = serde_json::from_str(r#"{"rtt": 3.0}"#).expect("parses");
        assert_eq!(
            w,
            Weights {
                rtt: 3.0,
                ..Weights::default()
            }
        );
        assert!(serde_json::from_str::<Weights>(r#"{"rtt_ms": 3.0}"#).is_err());
        assert_eq!(Weights::default().validate(), Ok(()));
        let bad = Weights {
            rtt_scale_ms: 0.0,
            ..Weights::default()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("rtt_scale_ms")));
        let bad = Weights {
            zone: -1.0,
            ..Weights::default()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("zone")));
    }
}
