//! The layering rules of ARCHITECTURE.md, checked over the source's own `use` lines and
//! paths, so a change that makes a lower layer name a higher one fails CI instead of
//! quietly re-tying the knot.
//!
//! Two levels:
//! - inside `src/node/`, every module has a rank (the order of `NODE_LAYERS`); a module may
//!   name only modules of a lower rank, which rules out every import cycle among its files;
//! - across the crate, each top-level module names only the modules `CRATE_RULES` allows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `src/node/`'s modules, lowest first, with the layer each belongs to. A module may use
/// the ones listed before it; `mod` is the node itself, on top.
const NODE_LAYERS: &[(&str, &str)] = &[
    ("handoff", "ground"),
    ("rate", "ground"),
    ("quiet", "ground"),
    ("hub", "ground"),
    ("shared", "ground"),
    ("reply", "requests"),
    ("place", "requests"),
    ("remote", "requests"),
    ("search", "requests"),
    ("request", "requests"),
    ("load", "services"),
    ("migrate", "services"),
    ("resume", "services"),
    ("zones", "services"),
    ("rebalance", "services"),
    ("gossip", "services"),
    ("drain", "services"),
    ("admin", "services"),
    ("client", "dispatchers"),
    ("handshake", "dispatchers"),
    ("peer", "dispatchers"),
    ("mod", "node"),
];

/// Which other top-level modules of the crate each one may name. A module missing here
/// fails the test: a new module states its place.
const CRATE_RULES: &[(&str, &[&str])] = &[
    ("proto", &[]),
    ("query", &["proto"]),
    ("transport", &[]),
    ("metrics", &[]),
    ("access", &["proto"]),
    ("store", &["proto", "access", "query"]),
    ("mesh", &["proto"]),
    ("placement", &["proto"]),
    ("admin", &["proto"]),
    ("client", &["proto", "transport", "query"]),
    (
        "config",
        &[
            "proto",
            "transport",
            "access",
            "store",
            "mesh",
            "placement",
            "admin",
            "dyndns",
            "metrics",
        ],
    ),
    (
        "node",
        &[
            "proto",
            "transport",
            "store",
            "mesh",
            "placement",
            "admin",
            "metrics",
            "config",
            "dyndns",
            "query",
        ],
    ),
    ("dyndns", &["proto", "mesh", "transport"]),
    (
        "bench",
        &[
            "proto",
            "transport",
            "client",
            "admin",
            "local_mesh",
            "query",
        ],
    ),
    ("sim", &["proto", "transport", "client", "placement"]),
    ("local_mesh", &["proto", "transport", "client", "admin"]),
    // The decoders' contracts for the fuzz targets: it drives the parsers, nothing drives it.
    (
        "fuzzing",
        &["proto", "admin", "dyndns", "mesh", "placement", "config"],
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The source without comments (line comments, and block comments as rustfmt leaves
/// them), so a path named in a doc comment is not an import.
fn code_of(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut in_block = false;
    for line in source.lines() {
        let mut rest = line;
        let mut kept = String::new();
        loop {
            if in_block {
                match rest.find("*/") {
                    Some(i) => {
                        in_block = false;
                        rest = &rest[i + 2..];
                    }
                    None => break,
                }
            } else {
                let line_comment = rest.find("//");
                let block = rest.find("/*");
                match (line_comment, block) {
                    (Some(l), Some(b)) if b < l => {
                        kept.push_str(&rest[..b]);
                        in_block = true;
                        rest = &rest[b + 2..];
                    }
                    (Some(l), _) => {
                        kept.push_str(&rest[..l]);
                        break;
                    }
                    (None, Some(b)) => {
                        kept.push_str(&rest[..b]);
                        in_block = true;
                        rest = &rest[b + 2..];
                    }
                    (None, None) => {
                        kept.push_str(rest);
                        break;
                    }
                }
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segments of every path that follows `prefix` (e.g. `super::`): for
/// `super::{a, b::c}` both `a` and `b`; for `super::d::e` just `d`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        // `foo_super::` is not `super::`.
        let before = rest[..i].chars().next_back();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let inner = &group[..end];
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in inner
                .char_indices()
                .chain(std::iter::once((inner.len(), ',')))
            {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let name = ident_at(inner[start..j].trim());
                        if !name.is_empty() {
                            out.insert(name.to_owned());
                        }
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Module names another file of `src/node/` takes from this one's parent, with what each
/// name refers to: a module of the node, or (anything else) an item of `node/mod.rs`.
fn node_violations() -> Vec<String> {
    let dir = root().join("src/node");
    let rank = |m: &str| NODE_LAYERS.iter().position(|(n, _)| *n == m);
    let mut problems = Vec::new();
    let files = rust_files(&dir);
    for file in &files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 name");
        let Some(own) = rank(name) else {
            problems.push(format!(
                "src/node/{name}.rs has no place in NODE_LAYERS (tests/layering.rs): give it one"
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).expect("read source"));
        let mut named = names_after(&code, "super::");
        named.extend(names_after(&code, "crate::node::"));
        if name == "mod" {
            continue;
        }
        for used in named {
            // `super::X` where X is no module of the node is an item of node/mod.rs.
            let (target, target_rank) = match rank(&used) {
                Some(r) => (used.clone(), r),
                None => (format!("mod ({used})"), NODE_LAYERS.len() - 1),
            };
            if target_rank >= own {
                problems.push(format!(
                    "src/node/{name}.rs ({}) names {target} ({}), which is not below it",
                    NODE_LAYERS[own].1, NODE_LAYERS[target_rank].1
                ));
            }
        }
    }
    assert!(
        files.len() >= NODE_LAYERS.len() - 1,
        "fewer node files than layers listed: {files:?}"
    );
    problems
}

fn crate_violations() -> Vec<String> {
    let src = root().join("src");
    let mut problems = Vec::new();
    let top_modules: Vec<String> = std::fs::read_dir(&src)
        .expect("read src")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_str()?.to_owned();
            (p.is_dir() || p.extension().is_some_and(|x| x == "rs")).then_some(stem)
        })
        .filter(|m| m != "lib")
        .collect();
    for module in &top_modules {
        let Some((_, allowed)) = CRATE_RULES.iter().find(|(m, _)| m == module) else {
            problems.push(format!(
                "src/{module} has no rule in CRATE_RULES (tests/layering.rs): say what it may use"
            ));
            continue;
        };
        let dir = src.join(module);
        let files = if dir.is_dir() {
            rust_files(&dir)
        } else {
            vec![src.join(format!("{module}.rs"))]
        };
        for file in files {
            let code = code_of(&std::fs::read_to_string(&file).expect("read source"));
            for used in names_after(&code, "crate::") {
                if used != *module && !allowed.contains(&used.as_str()) {
                    problems.push(format!(
                        "{} names crate::{used}; src/{module} may use only {allowed:?}",
                        file.strip_prefix(root()).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    problems
}

#[test]
fn node_modules_name_only_lower_layers() {
    let problems = node_violations();
    assert!(
        problems.is_empty(),
        "layering broken in src/node:\n  {}",
        problems.join("\n  ")
    );
}

/// The rules themselves allow no cycle: following "may use" from any module never comes
/// back to it, so the crate's modules stand in layers too.
#[test]
fn the_crate_rules_are_layers() {
    fn reaches(from: &str, target: &str, seen: &mut BTreeSet<String>) -> bool {
        let Some((_, uses)) = CRATE_RULES.iter().find(|(m, _)| *m == from) else {
            return false;
        };
        uses.iter()
            .any(|u| *u == target || (seen.insert((*u).to_owned()) && reaches(u, target, seen)))
    }
    for (module, _) in CRATE_RULES {
        assert!(
            !reaches(module, module, &mut BTreeSet::new()),
            "CRATE_RULES let {module} reach itself: a cycle"
        );
    }
}

#[test]
fn crate_modules_name_only_what_their_rule_allows() {
    let problems = crate_violations();
    assert!(
        problems.is_empty(),
        "layering broken across the crate:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_parser_sees_grouped_nested_and_plain_paths() {
    let code = code_of(
        "use super::{a, b::{c, d}, e::f};\n// use super::commented;\nlet x = super::g::h(); \
         my_super::no; /* super::blocked */ use crate::k::l;",
    );
    let names = names_after(&code, "super::");
    let want: BTreeSet<String> = ["a", "b", "e", "g"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names, want);
    assert!(names_after(&code, "crate::").contains("k"));
}
