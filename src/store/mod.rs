//! Cloud memory as pure state: rows, per-client accounting, subscriptions, limits and
//! filters. No IO and no clock of its own (callers pass `now_ms`), so every rule here is
//! testable without a network. Callers hold it under one lock and deliver the returned
//! [`Fanout`]s before releasing that lock, which is what keeps notifications in version order.

mod filter;
mod limits;
mod query;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

pub use filter::{FilterAction, FilterOp, FilterRule, Filters};
pub use limits::StoreLimits;

use crate::access::{Grant, Op};
use crate::proto::{
    ClientId, Cursor, DeleteReason, GetPage, GetQuery, Key, KeySpec, NodeId, Notification, Row,
    SessionState, WireError, RESERVED_PREFIX,
};

/// Bookkeeping bytes charged per row on top of its data and key, so a client cannot fill
/// the node with empty rows while staying under its byte quota.
pub const ROW_OVERHEAD: u64 = 32;

/// Bytes charged per subscription on top of its primary key (its entries in the client's
/// record and in the subscriber index).
pub const SUB_OVERHEAD: u64 = 64;

/// Bytes charged per owner id a subscription's filter names (the id in a hash set).
pub const OWNER_COST: u64 = 16;

/// What one subscription is charged against its client's quota: what it costs the node.
fn sub_cost(spec: &KeySpec, owners: usize) -> u64 {
    spec.primary.len() as u64 + SUB_OVERHEAD + OWNER_COST * owners as u64
}

/// Approximate encoded size of a row in a get page, used for the download limit.
fn row_wire_size(primary: &str, data: &Bytes) -> usize {
    primary.len() + data.len() + 48
}

/// A change and the clients that must hear of it. Encode once, send to each.
#[derive(Debug, Clone, PartialEq)]
pub struct Fanout {
    /// What changed.
    pub notification: Notification,
    /// Subscribed clients, each once, in ascending id order.
    pub recipients: Vec<ClientId>,
}

/// One stored row, minus the key and owner that index it.
#[derive(Debug, Clone)]
struct Entry {
    data: Bytes,
    version: u64,
    updated_at_ms: u64,
    node: NodeId,
    /// The data as a JSON object, parsed the first time a query looks at the row (`None`
    /// inside when it is not one): rows nobody queries cost nothing more, and a row queried
    /// again is not parsed again. A change replaces the entry, and with it this.
    parsed: std::sync::OnceLock<Option<Arc<crate::query::Object>>>,
}

/// The rows under one key, by owner.
type Owners = BTreeMap<ClientId, Entry>;

/// Which owners' rows a subscription wants. The set is shared (`Arc`) between the client's
/// own record and the subscriber index, and between the specs of one request, so a filter
/// costs its owners once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnerFilter {
    Any,
    Only(Arc<HashSet<ClientId>>),
}

impl OwnerFilter {
    /// The filter of a query; callers have checked the list against
    /// `max_owners_per_query` first, so this builds at most that many entries.
    fn from_query(owners: &Option<Vec<ClientId>>) -> Self {
        match owners {
            None => OwnerFilter::Any,
            Some(list) => OwnerFilter::Only(Arc::new(list.iter().copied().collect())),
        }
    }

    fn wants(&self, owner: ClientId) -> bool {
        match self {
            OwnerFilter::Any => true,
            OwnerFilter::Only(set) => set.contains(&owner),
        }
    }

    /// Owner ids this filter names (what it is charged against `max_subscription_owners`).
    fn len(&self) -> usize {
        match self {
            OwnerFilter::Any => 0,
            OwnerFilter::Only(set) => set.len(),
        }
    }

    /// How many owners `self` would name once widened by `other`, counted without building
    /// the merged set (a request is checked before it allocates).
    fn merged_len(&self, other: &OwnerFilter) -> usize {
        match (self, other) {
            (OwnerFilter::Any, _) | (_, OwnerFilter::Any) => 0,
            (OwnerFilter::Only(a), OwnerFilter::Only(b)) => {
                a.len() + b.iter().filter(|o| !a.contains(o)).count()
            }
        }
    }

    /// Widens `self` to also cover `other`.
    fn merge(&mut self, other: &OwnerFilter) {
        match (&mut *self, other) {
            (OwnerFilter::Any, _) => {}
            (_, OwnerFilter::Any) => *self = OwnerFilter::Any,
            (OwnerFilter::Only(a), OwnerFilter::Only(b)) => {
                if b.iter().any(|o| !a.contains(o)) {
                    Arc::make_mut(a).extend(b.iter().copied());
                }
            }
        }
    }
}

/// Per-client state.
#[derive(Debug)]
struct ClientEntry {
    /// Class for filter rules.
    class: String,
    /// Keys this client holds a row under.
    keys: BTreeSet<Key>,
    /// Bytes charged against the quota: rows (data + key + [`ROW_OVERHEAD`] each) and
    /// subscriptions (see [`sub_cost`]).
    bytes: u64,
    /// Subscriptions, by the spec they were made with.
    subs: HashMap<KeySpec, OwnerFilter>,
    /// Owner ids its subscriptions' filters name in total (bounded by
    /// `max_subscription_owners`).
    owner_entries: usize,
    /// Opaque session blob.
    session: Bytes,
    /// The node's own identity, allowed to write `cloud.` keys.
    system: bool,
    /// What its signed token grants (rights and expiry), when it connected with one. Boxed:
    /// most clients have none, and this keeps them small.
    grant: Option<Box<Grant>>,
}

/// Subscribers of one primary key.
#[derive(Debug, Default)]
struct PrimarySubs {
    /// Subscribed to every secondary.
    whole: HashMap<ClientId, OwnerFilter>,
    /// Subscribed to one secondary.
    exact: HashMap<u32, HashMap<ClientId, OwnerFilter>>,
}

impl PrimarySubs {
    fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.exact.is_empty()
    }
}

/// Summary figures for admin and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Registered clients (system identities included).
    pub clients: usize,
    /// Stored rows.
    pub rows: usize,
    /// Bytes of row data.
    pub data_bytes: u64,
    /// Subscriptions across all clients.
    pub subscriptions: usize,
}

/// The cloud memory of one node.
#[derive(Debug)]
pub struct Store {
    /// This node, stamped on rows it stores.
    node: NodeId,
    /// Last version handed out; every change takes the next one, so versions strictly
    /// increase per row even across delete and re-create.
    clock: u64,
    /// Rows by primary, then secondary, then owner: the order of `(Key, owner)`, with lookups
    /// by `&str` (no key built or cloned to find a row) and few string comparisons.
    rows: BTreeMap<String, BTreeMap<u32, Owners>>,
    clients: HashMap<ClientId, ClientEntry>,
    subs: HashMap<String, PrimarySubs>,
    limits: StoreLimits,
    filters: Filters,
    stats_rows: usize,
    stats_bytes: u64,
    /// Rows per primary key, to tell peers which primaries this node holds.
    primary_rows: HashMap<String, usize>,
    /// Primaries that became held (`true`) or unheld (`false`) since the last take.
    hold_changes: Vec<(String, bool)>,
    /// How many clients (not system identities) subscribe to each spec.
    spec_refs: HashMap<KeySpec, usize>,
    /// Specs no client subscribes to any more since the last take (to withdraw interest
    /// registered at other nodes).
    interest_dropped: Vec<KeySpec>,
    /// Sort indexes built by sorted queries, kept up to date by every change of their rows
    /// (see `query.rs`); rows under other primaries pay nothing for them.
    indexes: query::Indexes,
}

impl Store {
    /// An empty store for `node`.
    pub fn new(node: NodeId, limits: StoreLimits, filters: Filters) -> Self {
        Store {
            node,
            clock: 0,
            rows: BTreeMap::new(),
            clients: HashMap::new(),
            subs: HashMap::new(),
            limits,
            filters,
            stats_rows: 0,
            stats_bytes: 0,
            primary_rows: HashMap::new(),
            hold_changes: Vec::new(),
            spec_refs: HashMap::new(),
            interest_dropped: Vec::new(),
            indexes: query::Indexes::default(),
        }
    }

    /// Specs that lost their last client subscriber since the last call.
    pub fn take_interest_dropped(&mut self) -> Vec<KeySpec> {
        let mut v = std::mem::take(&mut self.interest_dropped);
        // A spec dropped and subscribed again since is still wanted.
        v.retain(|s| !self.spec_refs.contains_key(s));
        v.sort();
        v.dedup();
        v
    }

    fn spec_ref(&mut self, spec: &KeySpec, up: bool) {
        if up {
            *self.spec_refs.entry(spec.clone()).or_insert(0) += 1;
        } else if let Some(n) = self.spec_refs.get_mut(spec) {
            *n -= 1;
            if *n == 0 {
                self.spec_refs.remove(spec);
                self.interest_dropped.push(spec.clone());
            }
        }
    }

    /// Primary keys this node holds at least one row under.
    pub fn held_primaries(&self) -> Vec<String> {
        let mut v: Vec<String> = self.primary_rows.keys().cloned().collect();
        v.sort();
        v
    }

    /// Changes to [`Store::held_primaries`] since the last call, in order.
    pub fn take_hold_changes(&mut self) -> Vec<(String, bool)> {
        std::mem::take(&mut self.hold_changes)
    }

    fn count_primary(&mut self, primary: &str, delta: isize) {
        if delta > 0 {
            let n = self.primary_rows.entry(primary.to_owned()).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.hold_changes.push((primary.to_owned(), true));
            }
        } else if let Some(n) = self.primary_rows.get_mut(primary) {
            *n -= 1;
            if *n == 0 {
                self.primary_rows.remove(primary);
                self.hold_changes.push((primary.to_owned(), false));
            }
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Registers a connected client. Its session blob must fit the session limit.
    pub fn add_client(
        &mut self,
        id: ClientId,
        class: &str,
        session: Bytes,
    ) -> Result<(), WireError> {
        self.add_client_with(id, class, session, None)
    }

    /// Registers a connected client with what its signed token grants: from then on its
    /// requests must also fall within the grant's rights (filters still apply on top).
    pub fn add_client_with(
        &mut self,
        id: ClientId,
        class: &str,
        session: Bytes,
        grant: Option<Grant>,
    ) -> Result<(), WireError> {
        self.check_session(&session)?;
        self.clients.insert(
            id,
            ClientEntry {
                class: class.to_owned(),
                keys: BTreeSet::new(),
                bytes: 0,
                subs: HashMap::new(),
                owner_entries: 0,
                session,
                system: false,
                grant: grant.map(Box::new),
            },
        );
        Ok(())
    }

    /// Registers the node's own identity, the only writer of `cloud.` keys.
    pub fn add_system_client(&mut self, id: ClientId) {
        self.clients.insert(
            id,
            ClientEntry {
                class: "system".to_owned(),
                keys: BTreeSet::new(),
                bytes: 0,
                subs: HashMap::new(),
                owner_entries: 0,
                session: Bytes::new(),
                system: true,
                grant: None,
            },
        );
    }

    /// The client class `id` was registered with.
    pub fn class_of(&self, id: ClientId) -> Option<&str> {
        self.clients.get(&id).map(|c| c.class.as_str())
    }

    /// Whether `id` is registered.
    pub fn has_client(&self, id: ClientId) -> bool {
        self.clients.contains_key(&id)
    }

    /// Number of registered clients, system identities excluded.
    pub fn client_count(&self) -> usize {
        self.clients.values().filter(|c| !c.system).count()
    }

    /// Figures for admin and metrics.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            clients: self.clients.len(),
            rows: self.stats_rows,
            data_bytes: self.stats_bytes,
            subscriptions: self.clients.values().map(|c| c.subs.len()).sum(),
        }
    }

    /// Every key spec some client (not a system identity) subscribes to, each once.
    pub fn client_subscription_specs(&self) -> Vec<KeySpec> {
        let mut v: Vec<KeySpec> = self.spec_refs.keys().cloned().collect();
        v.sort();
        v
    }

    /// What the client's signed token grants, if it connected with one.
    pub fn grant(&self, id: ClientId) -> Option<&Grant> {
        self.clients.get(&id)?.grant.as_deref()
    }

    /// The client's session blob.
    pub fn session(&self, id: ClientId) -> Option<&Bytes> {
        self.clients.get(&id).map(|c| &c.session)
    }

    /// Bytes charged against the client's quota.
    pub fn client_bytes(&self, id: ClientId) -> Option<u64> {
        self.clients.get(&id).map(|c| c.bytes)
    }

    /// Rows the client holds.
    pub fn client_row_count(&self, id: ClientId) -> Option<usize> {
        self.clients.get(&id).map(|c| c.keys.len())
    }

    /// Primary keys with rows here and how many, in key order (the admin key browser).
    pub fn primaries(&self) -> Vec<(String, usize)> {
        let mut v: Vec<(String, usize)> = self
            .primary_rows
            .iter()
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Rows under `primary` (only secondary `secondary` when given), in `(secondary, owner)`
    /// order, at most `max`; `true` when there were more. Reads past filters and
    /// subscriptions: this is the operator's view, not a client's.
    pub fn rows_under(
        &self,
        primary: &str,
        secondary: Option<u32>,
        max: usize,
    ) -> (Vec<Row>, bool) {
        let (lo, hi) = match secondary {
            Some(s) => (s, s),
            None => (0, u32::MAX),
        };
        let mut out = Vec::new();
        let Some(by_secondary) = self.rows.get(primary) else {
            return (out, false);
        };
        for (secondary, owners) in by_secondary.range(lo..=hi) {
            for (owner, e) in owners {
                if out.len() == max {
                    return (out, true);
                }
                out.push(Row {
                    key: Key::new(primary, *secondary),
                    owner: *owner,
                    node: e.node,
                    data: e.data.clone(),
                    version: e.version,
                    updated_at_ms: e.updated_at_ms,
                });
            }
        }
        (out, false)
    }

    fn check_session(&self, data: &Bytes) -> Result<(), WireError> {
        if data.len() > self.limits.max_session_bytes as usize {
            return Err(WireError::TooLarge {
                what: "session blob".into(),
                size: data.len() as u64,
                max: self.limits.max_session_bytes.into(),
            });
        }
        Ok(())
    }

    /// Replaces the client's session blob.
    pub fn set_session(&mut self, id: ClientId, data: Bytes) -> Result<(), WireError> {
        self.check_session(&data)?;
        let client = self.clients.get_mut(&id).ok_or(WireError::NotFound)?;
        client.session = data;
        Ok(())
    }

    fn next_version(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The rows under `key`, if any.
    fn owners(&self, key: &Key) -> Option<&Owners> {
        self.rows.get(key.primary.as_str())?.get(&key.secondary)
    }

    /// Takes `owner`'s row under `key` out of the map, dropping emptied levels.
    fn take_entry(&mut self, key: &Key, owner: ClientId) -> Option<Entry> {
        let by_secondary = self.rows.get_mut(key.primary.as_str())?;
        let owners = by_secondary.get_mut(&key.secondary)?;
        let entry = owners.remove(&owner)?;
        self.indexes.remove(&key.primary, key.secondary, owner);
        if owners.is_empty() {
            by_secondary.remove(&key.secondary);
            if by_secondary.is_empty() {
                self.rows.remove(key.primary.as_str());
            }
        }
        Some(entry)
    }

    /// Checks reserved keys, the client's token rights and filter rules for `op` on
    /// `primary` (one `secondary`, or every one with `None`) by `client`.
    fn check_access(
        client: &ClientEntry,
        filters: &Filters,
        op: FilterOp,
        primary: &str,
        secondary: Option<u32>,
    ) -> Result<(), WireError> {
        if client.system {
            return Ok(());
        }
        // Any case: `Cloud.nodes` would read as the mesh's own key to a person.
        let reserved = primary
            .get(..RESERVED_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX));
        if op == FilterOp::Post && reserved {
            return Err(WireError::Forbidden {
                reason: format!("keys starting with {RESERVED_PREFIX:?} are written only by nodes"),
            });
        }
        if let Some(grant) = &client.grant {
            let op = match op {
                FilterOp::Post => Op::Post,
                FilterOp::Get => Op::Get,
                FilterOp::Subscribe => Op::Subscribe,
            };
            grant
                .check(op, primary, secondary)
                .map_err(|reason| WireError::Forbidden { reason })?;
        }
        filters
            .check(op, &client.class, primary)
            .map_err(|reason| WireError::Forbidden { reason })
    }

    /// Creates or replaces `owner`'s row under `key`. On any error nothing changes.
    pub fn post(
        &mut self,
        owner: ClientId,
        key: Key,
        data: Bytes,
        now_ms: u64,
    ) -> Result<(u64, Fanout), WireError> {
        key.validate().map_err(|e| WireError::InvalidKey {
            reason: e.to_string(),
        })?;
        // One lookup of the client and one of the row (an update, the common case, finds
        // its entry and changes it in place); the fields are borrowed separately for that.
        let client = self.clients.get_mut(&owner).ok_or(WireError::NotFound)?;
        Self::check_access(
            client,
            &self.filters,
            FilterOp::Post,
            &key.primary,
            Some(key.secondary),
        )?;
        if data.len() > self.limits.max_row_bytes as usize && !client.system {
            return Err(WireError::TooLarge {
                what: "row".into(),
                size: data.len() as u64,
                max: self.limits.max_row_bytes.into(),
            });
        }
        let mut existing = self
            .rows
            .get_mut(key.primary.as_str())
            .and_then(|by_secondary| by_secondary.get_mut(&key.secondary))
            .and_then(|owners| owners.get_mut(&owner));
        let old_len = existing.as_ref().map(|e| e.data.len() as u64);
        let key_cost = key.primary.len() as u64 + ROW_OVERHEAD;
        let old_cost = old_len.map_or(0, |l| l + key_cost);
        let would_hold = client.bytes - old_cost + data.len() as u64 + key_cost;
        if would_hold > self.limits.max_client_bytes && !client.system {
            return Err(WireError::QuotaExceeded {
                limit: self.limits.max_client_bytes,
                would_hold,
            });
        }

        self.clock += 1;
        let version = self.clock;
        let entry = Entry {
            data: data.clone(),
            version,
            updated_at_ms: now_ms,
            node: self.node,
            parsed: std::sync::OnceLock::new(),
        };
        client.bytes = would_hold;
        self.stats_bytes = self.stats_bytes - old_len.unwrap_or(0) + data.len() as u64;
        if let Some(slot) = existing.take() {
            *slot = entry;
        } else {
            client.keys.insert(key.clone());
            self.stats_rows += 1;
            self.count_primary(&key.primary, 1);
            if let Some(by_secondary) = self.rows.get_mut(key.primary.as_str()) {
                by_secondary
                    .entry(key.secondary)
                    .or_default()
                    .insert(owner, entry);
            } else {
                self.rows
                    .entry(key.primary.clone())
                    .or_default()
                    .entry(key.secondary)
                    .or_default()
                    .insert(owner, entry);
            }
        }
        self.reindex(&key, owner);
        let row = Row {
            key,
            owner,
            node: self.node,
            data,
            version,
            updated_at_ms: now_ms,
        };
        let recipients = self.subscribers(&row.key, owner);
        Ok((
            version,
            Fanout {
                notification: Notification::Updated(row),
                recipients,
            },
        ))
    }

    /// Deletes `owner`'s rows under `keys`; keys without a row of theirs are skipped.
    pub fn release(
        &mut self,
        owner: ClientId,
        keys: &[Key],
        now_ms: u64,
    ) -> Result<Vec<Fanout>, WireError> {
        if keys.len() > self.limits.max_keys_per_query as usize {
            return Err(WireError::TooManyKeys {
                count: keys.len().try_into().unwrap_or(u32::MAX),
                max: self.limits.max_keys_per_query,
            });
        }
        let client = self.clients.get(&owner).ok_or(WireError::NotFound)?;
        for key in keys {
            Self::check_access(
                client,
                &self.filters,
                FilterOp::Post,
                &key.primary,
                Some(key.secondary),
            )?;
        }
        let mut out = Vec::new();
        for key in keys {
            if let Some(f) = self.delete_row(owner, key, DeleteReason::Released, now_ms) {
                out.push(f);
            }
        }
        Ok(out)
    }

    fn delete_row(
        &mut self,
        owner: ClientId,
        key: &Key,
        reason: DeleteReason,
        now_ms: u64,
    ) -> Option<Fanout> {
        let entry = self.take_entry(key, owner)?;
        if let Some(client) = self.clients.get_mut(&owner) {
            client.keys.remove(key);
            client.bytes -= entry.data.len() as u64 + key.primary.len() as u64 + ROW_OVERHEAD;
        }
        self.stats_rows -= 1;
        self.stats_bytes -= entry.data.len() as u64;
        self.count_primary(&key.primary, -1);
        let version = self.next_version();
        let row = Row {
            key: key.clone(),
            owner,
            node: entry.node,
            data: entry.data,
            version,
            updated_at_ms: now_ms,
        };
        let recipients = self.subscribers(key, owner);
        Some(Fanout {
            notification: Notification::Deleted { row, reason },
            recipients,
        })
    }

    /// Clients subscribed to changes of `owner`'s row under `key`, each once, ascending.
    pub fn subscribers(&self, key: &Key, owner: ClientId) -> Vec<ClientId> {
        let Some(ps) = self.subs.get(&key.primary) else {
            return Vec::new();
        };
        let mut out: Vec<ClientId> = ps
            .whole
            .iter()
            .chain(ps.exact.get(&key.secondary).into_iter().flatten())
            .filter(|(_, f)| f.wants(owner))
            .map(|(c, _)| *c)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The client's whole session, to move it to another node.
    pub fn export_client(&self, id: ClientId) -> Option<SessionState> {
        let client = self.clients.get(&id)?;
        let rows = client
            .keys
            .iter()
            .filter_map(|key| {
                let e = self.owners(key)?.get(&id)?;
                Some(Row {
                    key: key.clone(),
                    owner: id,
                    node: e.node,
                    data: e.data.clone(),
                    version: e.version,
                    updated_at_ms: e.updated_at_ms,
                })
            })
            .collect();
        let mut subs: Vec<(KeySpec, Option<Vec<ClientId>>)> = client
            .subs
            .iter()
            .map(|(spec, f)| {
                let owners = match f {
                    OwnerFilter::Any => None,
                    OwnerFilter::Only(set) => {
                        let mut v: Vec<ClientId> = set.iter().copied().collect();
                        v.sort();
                        Some(v)
                    }
                };
                (spec.clone(), owners)
            })
            .collect();
        subs.sort_by(|a, b| a.0.cmp(&b.0));
        Some(SessionState {
            client: id,
            class: client.class.clone(),
            rows,
            subs,
            session: client.session.clone(),
            clock: self.clock,
            grant: client.grant.as_deref().map(Grant::to_session),
        })
    }

    /// Forgets a client that moved away: its rows and subscriptions go without any
    /// notification (they live on at the target, which announces them). Returns whether
    /// the client was here.
    pub fn remove_client_silently(&mut self, id: ClientId) -> bool {
        let Some(client) = self.clients.remove(&id) else {
            return false;
        };
        for spec in client.subs.keys() {
            self.unindex_sub(id, spec);
            if !client.system {
                self.spec_ref(spec, false);
            }
        }
        for key in &client.keys {
            if let Some(e) = self.take_entry(key, id) {
                self.stats_rows -= 1;
                self.stats_bytes -= e.data.len() as u64;
            }
            self.count_primary(&key.primary, -1);
        }
        true
    }

    /// Installs a session that moved here. Rows keep their identity and their
    /// versions continue (each takes a version above the one it had), so subscribers see an
    /// update naming this node, never a deletion. Limits are not applied: the rows were
    /// accepted where they were, and refusing them now would lose them.
    pub fn import_client(&mut self, state: &SessionState, now_ms: u64) -> Vec<Fanout> {
        if !self.clients.contains_key(&state.client) {
            // The grant moves with the session: the same rights here, the same expiry.
            let grant = state
                .grant
                .as_ref()
                .map(|g| Grant::from_session(&state.class, g));
            let _ = self.add_client_with(state.client, &state.class, Bytes::new(), grant);
        }
        self.import_rows(state, now_ms)
    }

    /// Puts a moved session's rows, session blob and subscriptions onto a client already
    /// registered here (registered when the move was prepared). Subscriptions merge with
    /// those it has; rows take versions above the ones they had.
    pub fn import_rows(&mut self, state: &SessionState, now_ms: u64) -> Vec<Fanout> {
        let id = state.client;
        self.clock = self.clock.max(state.clock);
        if let Some(c) = self.clients.get_mut(&id) {
            c.session = state.session.clone();
            // Exempt from limits while its rows are put back.
            c.system = true;
        }
        let mut out = Vec::new();
        for row in &state.rows {
            self.clock = self.clock.max(row.version);
            if let Ok((_, fan)) = self.post(id, row.key.clone(), row.data.clone(), now_ms) {
                out.push(fan);
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.system = false;
        }
        for (spec, owners) in &state.subs {
            self.add_subscription(id, spec, &OwnerFilter::from_query(owners));
        }
        out
    }

    /// Raises the version clock to at least `version` (so a row arriving from elsewhere
    /// continues above it).
    pub fn observe_version(&mut self, version: u64) {
        self.clock = self.clock.max(version);
    }

    /// Unregisters a client: deletes its rows (notifying with `reason`) and its subscriptions.
    pub fn remove_client(
        &mut self,
        id: ClientId,
        reason: DeleteReason,
        now_ms: u64,
    ) -> Vec<Fanout> {
        let Some(client) = self.clients.get(&id) else {
            return Vec::new();
        };
        let keys: Vec<Key> = client.keys.iter().cloned().collect();
        let specs: Vec<KeySpec> = client.subs.keys().cloned().collect();
        let system = client.system;
        // Drop its subscriptions first: a leaving client is not told of its own deletions.
        for spec in &specs {
            self.unindex_sub(id, spec);
            if !system {
                self.spec_ref(spec, false);
            }
        }
        let out = keys
            .iter()
            .filter_map(|key| self.delete_row(id, key, reason, now_ms))
            .collect();
        self.clients.remove(&id);
        out
    }

    fn unindex_sub(&mut self, id: ClientId, spec: &KeySpec) {
        if let Some(ps) = self.subs.get_mut(&spec.primary) {
            match spec.secondary {
                None => {
                    ps.whole.remove(&id);
                }
                Some(s) => {
                    if let Some(m) = ps.exact.get_mut(&s) {
                        m.remove(&id);
                        if m.is_empty() {
                            ps.exact.remove(&s);
                        }
                    }
                }
            }
            if ps.is_empty() {
                self.subs.remove(&spec.primary);
            }
        }
    }

    fn index_sub(&mut self, id: ClientId, spec: &KeySpec, filter: OwnerFilter) {
        let ps = self.subs.entry(spec.primary.clone()).or_default();
        let map = match spec.secondary {
            None => &mut ps.whole,
            Some(s) => ps.exact.entry(s).or_default(),
        };
        map.insert(id, filter);
    }

    /// Reads rows; with `query.subscribe`, registers the subscription in the same step, so
    /// no later change is missed and none already in the snapshot is sent again.
    ///
    /// Every bound is checked before anything is built: the number of key specs, the length
    /// of the owners list, and what the client's subscriptions would name in total.
    pub fn get(&mut self, caller: ClientId, query: &GetQuery) -> Result<GetPage, WireError> {
        let limits = &self.limits;
        if query.keys.len() > limits.max_keys_per_query as usize {
            return Err(WireError::TooManyKeys {
                count: query.keys.len().try_into().unwrap_or(u32::MAX),
                max: limits.max_keys_per_query,
            });
        }
        check_owner_list(limits, query.owners.as_deref())?;
        let client = self.clients.get(&caller).ok_or(WireError::NotFound)?;
        for spec in &query.keys {
            spec.validate().map_err(|e| WireError::InvalidKey {
                reason: e.to_string(),
            })?;
            let (primary, secondary) = (&spec.primary, spec.secondary);
            Self::check_access(client, &self.filters, FilterOp::Get, primary, secondary)?;
            if query.subscribe {
                Self::check_access(
                    client,
                    &self.filters,
                    FilterOp::Subscribe,
                    primary,
                    secondary,
                )?;
            }
        }
        // Each spec once: a spec named twice in one request is one subscription.
        let mut specs: Vec<&KeySpec> = Vec::new();
        let mut filter = OwnerFilter::Any;
        if query.subscribe {
            specs = query.keys.iter().collect();
            specs.sort_unstable();
            specs.dedup();
            filter = OwnerFilter::from_query(&query.owners);
            if !client.system {
                let added = specs
                    .iter()
                    .filter(|s| !client.subs.contains_key(**s))
                    .count();
                if client.subs.len() + added > limits.max_subscriptions as usize {
                    return Err(WireError::TooManySubscriptions {
                        max: limits.max_subscriptions,
                    });
                }
                let (total, cost) = subscription_owners_after(client, &specs, &filter);
                if total > limits.max_subscription_owners as usize {
                    return Err(WireError::TooManyOwners {
                        count: total.try_into().unwrap_or(u32::MAX),
                        max: limits.max_subscription_owners,
                    });
                }
                // Subscriptions hold memory too: charged to the same quota as rows.
                let would_hold =
                    u64::try_from((i128::from(client.bytes) + cost).max(0)).unwrap_or(u64::MAX);
                if cost > 0 && would_hold > limits.max_client_bytes {
                    return Err(WireError::QuotaExceeded {
                        limit: limits.max_client_bytes,
                        would_hold,
                    });
                }
            }
        }

        let page = self.read_page(query);

        for spec in specs {
            self.add_subscription(caller, spec, &filter);
        }
        Ok(page)
    }

    /// Registers (or widens) `caller`'s subscription to `spec`. Limits were checked by the
    /// caller, or do not apply (a session moving in was accepted where it was).
    fn add_subscription(&mut self, caller: ClientId, spec: &KeySpec, filter: &OwnerFilter) {
        // A peer's stand-in gathers the interest of every client of that node, so its
        // filters are not bounded per client: past the per-client bound one is widened to
        // any owner. That is safe (the asking node filters per subscriber again) and keeps
        // what a peer can make this node hold as bounded as what a client can.
        let widen_past = self.limits.max_subscription_owners as usize;
        let Some(client) = self.clients.get_mut(&caller) else {
            return;
        };
        let system = client.system;
        let (merged, existed) = match client.subs.get(spec) {
            Some(existing) => {
                let mut merged = existing.clone();
                merged.merge(filter);
                (merged, true)
            }
            None => (filter.clone(), false),
        };
        let merged = if system && merged.len() > widen_past {
            OwnerFilter::Any
        } else {
            merged
        };
        let before = client.subs.get(spec).map(OwnerFilter::len);
        client.owner_entries = client.owner_entries - before.unwrap_or(0) + merged.len();
        if !system {
            let old_cost = before.map_or(0, |n| sub_cost(spec, n));
            client.bytes = client.bytes - old_cost + sub_cost(spec, merged.len());
        }
        client.subs.insert(spec.clone(), merged.clone());
        self.index_sub(caller, spec, merged);
        if !existed && !system {
            self.spec_ref(spec, true);
        }
    }

    fn read_page(&self, query: &GetQuery) -> GetPage {
        let limits = &self.limits;
        let max_rows = match query.limit {
            0 => limits.max_get_rows,
            n => n.min(limits.max_get_rows),
        } as usize;
        let owners: Option<HashSet<ClientId>> =
            query.owners.as_ref().map(|o| o.iter().copied().collect());

        let specs = normalize_specs(&query.keys);

        let mut page = GetPage::default();
        let mut bytes = 0usize;
        let start = query.start.as_ref();
        // Rows looked at, returned or not: an owners filter over a large primary skips rows
        // without filling the page, so the page is also cut by work done under the lock.
        let mut scanned = 0usize;
        let max_scan = (limits.max_scan_rows as usize).max(1);
        let mut last_seen: Option<(&str, u32, ClientId)> = None;
        for spec in specs {
            let primary = spec.primary.as_str();
            let mut lo = spec.secondary.unwrap_or(0);
            let hi = spec.secondary.unwrap_or(u32::MAX);
            // A cursor past this spec skips it; one inside it starts the range there.
            if let Some(c) = start {
                match c.key.primary.as_str().cmp(primary) {
                    std::cmp::Ordering::Greater => continue,
                    std::cmp::Ordering::Equal if c.key.secondary > hi => continue,
                    std::cmp::Ordering::Equal => lo = lo.max(c.key.secondary),
                    std::cmp::Ordering::Less => {}
                }
            }
            let Some(by_secondary) = self.rows.get(primary) else {
                continue;
            };
            for (&secondary, by_owner) in by_secondary.range(lo..=hi) {
                for (owner, entry) in by_owner {
                    if scanned >= max_scan {
                        // Continue after the last row looked at: the next page starts there,
                        // even when this one returns no row.
                        page.next = last_seen.map(|(p, s, o)| Cursor {
                            key: Key::new(p, s),
                            owner: o,
                        });
                        return page;
                    }
                    scanned += 1;
                    last_seen = Some((primary, secondary, *owner));
                    if start.is_some_and(|c| {
                        (primary, secondary, *owner)
                            <= (c.key.primary.as_str(), c.key.secondary, c.owner)
                    }) {
                        continue;
                    }
                    if owners.as_ref().is_some_and(|o| !o.contains(owner)) {
                        continue;
                    }
                    let size = row_wire_size(primary, &entry.data);
                    let full = page.rows.len() >= max_rows
                        || (!page.rows.is_empty() && bytes + size > limits.max_get_bytes as usize);
                    if full {
                        page.next = page.rows.last().map(|r: &Row| Cursor {
                            key: r.key.clone(),
                            owner: r.owner,
                        });
                        return page;
                    }
                    bytes += size;
                    page.rows.push(Row {
                        key: Key::new(primary, secondary),
                        owner: *owner,
                        node: entry.node,
                        data: entry.data.clone(),
                        version: entry.version,
                        updated_at_ms: entry.updated_at_ms,
                    });
                }
            }
        }
        page
    }

    /// Drops or narrows the caller's subscriptions on `keys`. Returns how many changed.
    ///
    /// With `owners`, only those owners are removed from a subscription limited to owners;
    /// a subscription to any owner is left as it is (remove it with `owners = None`).
    pub fn unsubscribe(
        &mut self,
        caller: ClientId,
        keys: &[KeySpec],
        owners: Option<&[ClientId]>,
    ) -> Result<u32, WireError> {
        // Only specs the client subscribes to (at most `max_subscriptions`) cost more than a
        // lookup, and each of those at most the owners list, which is bounded here.
        check_owner_list(&self.limits, owners)?;
        let mut changed = 0;
        for spec in keys {
            let client = self.clients.get_mut(&caller).ok_or(WireError::NotFound)?;
            let Some(filter) = client.subs.get_mut(spec) else {
                continue;
            };
            let before = filter.len();
            let remove = match (owners, &mut *filter) {
                (None, _) => true,
                (Some(_), OwnerFilter::Any) => false,
                (Some(list), OwnerFilter::Only(set)) => {
                    if list.iter().any(|o| set.contains(o)) {
                        let set = Arc::make_mut(set);
                        for o in list {
                            set.remove(o);
                        }
                        changed += 1;
                    }
                    set.is_empty()
                }
            };
            let after = if remove { 0 } else { filter.len() };
            client.owner_entries = client.owner_entries - before + after;
            if !client.system {
                let after_cost = if remove { 0 } else { sub_cost(spec, after) };
                client.bytes = client.bytes - sub_cost(spec, before) + after_cost;
            }
            if remove {
                let system = client.system;
                client.subs.remove(spec);
                self.unindex_sub(caller, spec);
                if !system {
                    self.spec_ref(spec, false);
                }
                if owners.is_none() {
                    changed += 1;
                }
            } else if let Some(f) = client.subs.get(spec).cloned() {
                self.index_sub(caller, spec, f);
            }
        }
        Ok(changed)
    }
}

/// Refuses an owners list longer than `max_owners_per_query`, before anything is built
/// from it.
/// Key specs sorted, deduplicated, and with exact specs a whole-primary spec covers left
/// out: the order in which a page visits rows.
fn normalize_specs(keys: &[KeySpec]) -> Vec<&KeySpec> {
    let mut specs: Vec<&KeySpec> = keys.iter().collect();
    specs.sort_by(|a, b| (&a.primary, a.secondary).cmp(&(&b.primary, b.secondary)));
    specs.dedup();
    let whole: HashSet<&str> = specs
        .iter()
        .filter(|s| s.secondary.is_none())
        .map(|s| s.primary.as_str())
        .collect();
    specs.retain(|s| s.secondary.is_none() || !whole.contains(s.primary.as_str()));
    specs
}

fn check_owner_list(limits: &StoreLimits, owners: Option<&[ClientId]>) -> Result<(), WireError> {
    match owners {
        Some(list) if list.len() > limits.max_owners_per_query as usize => {
            Err(WireError::TooManyOwners {
                count: list.len().try_into().unwrap_or(u32::MAX),
                max: limits.max_owners_per_query,
            })
        }
        _ => Ok(()),
    }
}

/// Owner ids `client`'s subscriptions would name in total once `filter` is merged into
/// each of `specs`, and the bytes that would add to its quota; counted without building any
/// set.
fn subscription_owners_after(
    client: &ClientEntry,
    specs: &[&KeySpec],
    filter: &OwnerFilter,
) -> (usize, i128) {
    let mut total = client.owner_entries;
    // Signed: widening a filter to any owner makes it cheaper.
    let mut cost = 0i128;
    for spec in specs {
        let (before, after) = match client.subs.get(*spec) {
            Some(existing) => (Some(existing.len()), existing.merged_len(filter)),
            None => (None, filter.len()),
        };
        total = total - before.unwrap_or(0) + after;
        cost +=
            i128::from(sub_cost(spec, after)) - i128::from(before.map_or(0, |n| sub_cost(spec, n)));
    }
    (total, cost)
}

#[cfg(test)]
mod tests;
