//! Operator filter rules: allow or deny post/get/subscribe by key prefix and client
//! class. Rules are checked in order; the first that matches decides; none matching allows.

use serde::{Deserialize, Serialize};

/// Which kind of access a rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterOp {
    /// Post and release.
    Post,
    /// Get.
    Get,
    /// Subscribe (a get with `subscribe = true` needs both Get and Subscribe).
    Subscribe,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterAction {
    /// Let it through.
    Allow,
    /// Refuse it with `Forbidden`.
    Deny,
}

/// One rule, as written in the config's `[[filters]]` tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// What to do when the rule matches.
    pub action: FilterAction,
    /// Which operations it covers; empty covers all.
    #[serde(default)]
    pub ops: Vec<FilterOp>,
    /// Primary keys starting with this; empty matches every key.
    #[serde(default)]
    pub prefix: String,
    /// Client classes it applies to; empty applies to every class.
    #[serde(default)]
    pub classes: Vec<String>,
}

impl FilterRule {
    fn matches(&self, op: FilterOp, class: &str, primary: &str) -> bool {
        (self.ops.is_empty() || self.ops.contains(&op))
            && primary.starts_with(&self.prefix)
            && (self.classes.is_empty() || self.classes.iter().any(|c| c == class))
    }
}

/// The ordered rule list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Rules in config order.
    rules: Vec<FilterRule>,
}

impl Filters {
    /// Rules checked in the given order.
    pub fn new(rules: Vec<FilterRule>) -> Self {
        Filters { rules }
    }

    /// `Err(reason)` when a rule denies `op` on `primary` for `class`.
    pub fn check(&self, op: FilterOp, class: &str, primary: &str) -> Result<(), String> {
        match self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(op, class, primary))
        {
            Some((i, rule)) if rule.action == FilterAction::Deny => Err(format!(
                "filter rule {} denies {op:?} on {primary:?} for class {class:?}",
                i + 1
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins_and_default_allows() {
        let f = Filters::new(vec![
            FilterRule {
                action: FilterAction::Allow,
                ops: vec![FilterOp::Post],
                prefix: "admin.".into(),
                classes: vec!["server".into()],
            },
            FilterRule {
                action: FilterAction::Deny,
                ops: vec![FilterOp::Post],
                prefix: "admin.".into(),
                classes: vec![],
            },
        ]);
        assert!(f.check(FilterOp::Post, "server", "admin.x").is_ok());
        assert!(f.check(FilterOp::Post, "default", "admin.x").is_err());
        assert!(f.check(FilterOp::Get, "default", "admin.x").is_ok());
        assert!(f.check(FilterOp::Post, "default", "players").is_ok());
    }
}
