//! Configuration: [`NodeConfig`], the plain data a node starts from, and [`Settings`], what
//! `cloudd` builds it from: flags, each also read from a `CLOUDD_*` variable, then an
//! optional TOML file, then built-in defaults.
//!
//! # Each setting is declared once
//!
//! `settings.rs` holds one entry per setting. The entry is a field of a struct that derives
//! both `clap::Args` and `serde::Deserialize`, so its doc comment is the `--help` text, its
//! `#[arg]` attribute names the flag and the variable, its name is the TOML key, and its
//! type parses the value from all three (types such as [`HumanDuration`] parse text the same
//! way for clap and serde). Next to the field the entry says where the value goes (`set`)
//! and how `--check-config` shows it (`show` or `lines`). A `macro_rules!` table generates
//! the struct and, from the same entries, the code that applies a layer and the summary.
//!
//! Derives alone would cover parsing but not the rest of a setting's life: where its value
//! lands and how it is shown would again be written apart from its flag and its key, which
//! is the repetition this module removes. A derive of our own would need a proc-macro
//! crate; a `macro_rules!` table reads as plain clap and serde attributes and stays in the
//! library.
//!
//! Adding a setting: add the field to [`NodeConfig`] (with its default in
//! [`NodeConfig::new`]), one entry to `settings.rs`, and the key with its default to
//! `assets/cloudd.example.toml`; the tests check that every declared key is in the example
//! with its default, and that every flag has its `CLOUDD_*` variable.
//!
//! Values that need every layer at once (the mesh secret, dynamic DNS, Graphite, client
//! token keys) are
//! finished in `load.rs` once all layers are applied, and everything is checked there, with
//! typed errors ([`LoadError`]) and warnings ([`Warning`]).

mod error;
mod load;
mod node;
mod secret;
mod settings;
#[cfg(test)]
mod testing;
mod tokens;
mod values;

pub use error::{LoadError, Warning};
pub use load::{default_data_dir, Cli, Env, LogSettings, Settings};
pub use node::{default_name, ClassConfig, ConfigError, NodeConfig};
pub use secret::SecretSource;
pub use settings::{DnsLayer, GraphiteLayer, Layer, TokensLayer};
pub use tokens::TokenKeyFile;
pub use values::{DnsPublish, DnsServer, HumanDuration, JoinTarget, LogFormat};
