//! The limits that the store enforces.

use serde::{Deserialize, Serialize};

/// Limits on what clients may store and read. Every one is enforced with a typed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreLimits {
    /// Largest data of one row.
    pub max_row_bytes: u32,
    /// Most bytes one client may hold in rows at once (data + key + 32 per row).
    pub max_client_bytes: u64,
    /// Most bytes of rows in one get page; more continues with a cursor.
    pub max_get_bytes: u32,
    /// Most rows in one get page.
    pub max_get_rows: u32,
    /// Most stored rows one get page looks at (returned or skipped by an owners filter or a
    /// cursor) before it ends with a cursor: the work one request does under the hub lock.
    pub max_scan_rows: u32,
    /// Most key specs in one query.
    pub max_keys_per_query: u32,
    /// Most client ids in one query's (or unsubscribe's) `owners` list. Checked before the
    /// list is used at all: without it one request of under a megabyte made a node build
    /// an owner set per key spec, gigabytes in all.
    pub max_owners_per_query: u32,
    /// Most owner ids one client's subscriptions may name in total (each subscription's
    /// owner filter counted, merged filters included): re-subscribing the same spec with
    /// new owners cannot grow a node's memory past this.
    pub max_subscription_owners: u32,
    /// Most subscriptions one client may hold.
    pub max_subscriptions: u32,
    /// Largest session blob.
    pub max_session_bytes: u32,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_row_bytes: 64 * 1024,
            max_client_bytes: 16 * 1024 * 1024,
            max_get_bytes: 512 * 1024,
            max_get_rows: 10_000,
            max_scan_rows: 100_000,
            max_keys_per_query: 256,
            max_owners_per_query: 1024,
            max_subscription_owners: 4096,
            max_subscriptions: 1024,
            max_session_bytes: 16 * 1024,
        }
    }
}
