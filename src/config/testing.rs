//! Helpers shared by the configuration's tests.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use clap::Parser;

use super::{Cli, Layer};

/// The flag layer of `cloudd ARGS` (flags as given, with any `CLOUDD_*` variable of the test
/// process for the rest, as clap always reads them).
pub(super) fn flags(args: &[&str]) -> Layer {
    Cli::try_parse_from(std::iter::once("cloudd").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?} parse: {e}"))
        .settings
}

/// The layer of a file holding `text`.
pub(super) fn file(text: &str) -> Option<Layer> {
    Some(Layer::from_toml(text).unwrap_or_else(|e| panic!("{text:?} parses: {e}")))
}

/// A file `name` holding `text` with `mode`, in a fresh directory kept alive by the
/// returned guard.
pub(super) fn file_with_mode(name: &str, text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    (dir, path)
}

/// A mesh secret file with `mode`.
pub(super) fn secret_file(mode: u32) -> (tempfile::TempDir, PathBuf) {
    file_with_mode("mesh.secret", "0123456789abcdef0123456789abcdef\n", mode)
}

/// A TSIG key file (key `cloudd`, hmac-sha256) with `mode`.
pub(super) fn key_file(mode: u32) -> (tempfile::TempDir, PathBuf) {
    let key =
        "key \"cloudd\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldA==\";\n};\n";
    file_with_mode("dns.key", key, mode)
}

/// A client token HS256 secret file (32 bytes and a newline) with `mode`.
pub(super) fn token_secret_file(mode: u32) -> (tempfile::TempDir, PathBuf) {
    file_with_mode("tokens.secret", "0123456789abcdef0123456789abcdef\n", mode)
}

/// A client token Ed25519 public key file (a test key made for these tests).
pub(super) fn token_pem_file() -> (tempfile::TempDir, PathBuf) {
    let pem = "-----BEGIN PUBLIC KEY-----\n\
               MCowBQYDK2VwAyEAhrFpLjRZP2ERRueAM6rH5FG6hV1fbqJGZj1eUrsGSW8=\n\
               -----END PUBLIC KEY-----\n";
    file_with_mode("tokens.pub.pem", pem, 0o644)
}

/// An error with its causes, as `cloudd` prints it.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// A path as a `&str`, for flags.
pub(super) fn utf8(path: &std::path::Path) -> &str {
    path.to_str().expect("UTF-8 path")
}
