//! The operator verbs (`status`, `nodes`, `clients`, `keys`, `drain`, `undrain`, `migrate`,
//! `rebalance`, `place`) and `completions`. The operator verbs send one command to a node's
//! admin socket through the library's [`AdminClient`] and print its answer; every failure
//! becomes an [`AdminFailure`] that carries its exit code.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use cloudmesh::admin::{
    AdminClient, AdminClientError, AdminError, Command as AdminCommand, KeysQuery, Response,
    MAX_LISTED_ROWS,
};

use crate::cli::{
    Cli, ClientsArgs, CompletionsArgs, DrainNodeArgs, KeysArgs, MigrateArgs, PlaceArgs, UndrainArgs,
};
use crate::output;
use crate::tables;

/// What an exit code of `cloudctl` means (documented in `cloudctl --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the operation failed (node unavailable, refused, connection closed).
    Failed = 1,
    /// 2: a usage error, or a request the daemon could not take as it was.
    Usage = 2,
    /// 3: no daemon answers on the admin socket.
    NoDaemon = 3,
    /// 4: no node or client of that name.
    NotFound = 4,
    /// 130: Ctrl-C while waiting (the shell's convention for an interrupted command).
    Interrupted = 130,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An operator verb that did not succeed: the message for stderr and the exit code. The
/// message is complete on its own (no `source`), so `{:#}` does not repeat its cause.
#[derive(Debug)]
pub struct AdminFailure {
    /// How `cloudctl` exits.
    pub exit: Exit,
    /// What to tell the operator.
    pub message: String,
}

impl std::fmt::Display for AdminFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AdminFailure {}

/// The exit code for an error the daemon answered with.
pub fn exit_for_admin(e: &AdminError) -> Exit {
    match e {
        AdminError::UnsupportedVersion { .. }
        | AdminError::BadRequest { .. }
        | AdminError::TooLarge { .. }
        | AdminError::InvalidQuery { .. } => Exit::Usage,
        AdminError::UnknownNode { .. } | AdminError::UnknownClient { .. } => Exit::NotFound,
        AdminError::Unavailable { .. } | AdminError::Failed { .. } => Exit::Failed,
    }
}

/// The exit code for a failure to talk to the socket.
pub fn exit_for_client(e: &AdminClientError) -> Exit {
    match e {
        AdminClientError::NoDaemon { .. } | AdminClientError::PermissionDenied { .. } => {
            Exit::NoDaemon
        }
        AdminClientError::Closed
        | AdminClientError::Frame(_)
        | AdminClientError::Timeout { .. } => Exit::Failed,
    }
}

impl From<AdminError> for AdminFailure {
    fn from(e: AdminError) -> Self {
        AdminFailure {
            exit: exit_for_admin(&e),
            message: e.to_string(),
        }
    }
}

impl From<AdminClientError> for AdminFailure {
    fn from(e: AdminClientError) -> Self {
        AdminFailure {
            exit: exit_for_client(&e),
            // NoDaemon names the path and its cause in its own message; its `source` would
            // only repeat it.
            message: e.to_string(),
        }
    }
}

/// An answer that does not fit the question: a daemon of another release, most likely.
fn unexpected(asked: &str, got: &Response) -> AdminFailure {
    AdminFailure {
        exit: Exit::Failed,
        message: format!(
            "the daemon answered `{asked}` with `{}`, which does not fit; are cloudctl and \
             cloudd the same release?",
            response_type(got)
        ),
    }
}

/// The `type` tag of a response, for messages.
fn response_type(r: &Response) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "response".to_owned())
}

/// The admin socket of the daemon to ask, and how long to wait for each of its answers.
#[derive(Debug, Clone)]
pub struct Socket {
    /// Its path.
    pub path: PathBuf,
    /// Longest wait for the next frame (`--timeout`); `None` waits as long as it takes.
    pub timeout: Option<std::time::Duration>,
}

impl Socket {
    /// Connects, with the timeout set on the client.
    pub async fn connect(&self) -> Result<AdminClient, AdminClientError> {
        let mut client = AdminClient::connect(&self.path).await?;
        client.set_timeout(self.timeout);
        Ok(client)
    }
}

/// Connects to `socket`, sends `command` and returns its final answer; an `Error` answer
/// becomes an [`AdminFailure`].
async fn call(socket: &Socket, command: AdminCommand) -> Result<Response, AdminFailure> {
    // A daemon that accepts but never answers must not hang a script: the client waits
    // at most its timeout (--timeout) for each frame.
    let mut client = socket.connect().await?;
    match client.call(command).await {
        Ok(Response::Error(e)) => Err(e.into()),
        Ok(r) => Ok(r),
        Err(e) => Err(with_path(e, &socket.path)),
    }
}

/// A failure after connecting, with the socket named (the library's messages for these do
/// not say which daemon it was).
fn with_path(e: AdminClientError, socket: &Path) -> AdminFailure {
    let mut f = AdminFailure::from(e);
    if f.exit == Exit::Failed {
        f.message = format!("admin socket {}: {}", socket.display(), f.message);
    }
    f
}

/// Prints lines to stdout.
fn print_lines(lines: &[String]) -> anyhow::Result<()> {
    for l in lines {
        output::line(l).context("cannot write to stdout")?;
    }
    Ok(())
}

/// Prints one line to stdout.
fn print(text: &str) -> anyhow::Result<()> {
    output::line(text).context("cannot write to stdout")
}

/// Prints a response as one line of JSON: the shape each verb's help documents.
fn print_json(r: &Response) -> anyhow::Result<()> {
    output::json_line(r).context("cannot write to stdout")
}

/// Names nodes that did not answer in time on stderr.
fn warn_incomplete(incomplete: &[String], what: &str) {
    for node in incomplete {
        eprintln!(
            "cloudctl: node {node} did not answer in time; its {what} are missing (incomplete)"
        );
    }
}

/// Milliseconds since the Unix epoch, for ages.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `cloudctl status`.
pub async fn status(socket: &Socket, json: bool) -> anyhow::Result<()> {
    let r = call(socket, AdminCommand::Status).await?;
    match &r {
        Response::Status(_) if json => print_json(&r),
        Response::Status(s) => print_lines(&tables::status_lines(s)),
        other => Err(unexpected("status", other).into()),
    }
}

/// `cloudctl nodes`.
pub async fn nodes(socket: &Socket, json: bool) -> anyhow::Result<()> {
    let r = call(socket, AdminCommand::Nodes).await?;
    match &r {
        Response::Nodes { .. } if json => print_json(&r),
        Response::Nodes { nodes } => print_lines(&tables::nodes_table(nodes)),
        other => Err(unexpected("nodes", other).into()),
    }
}

/// `cloudctl clients`.
pub async fn clients(args: ClientsArgs, socket: &Socket, json: bool) -> anyhow::Result<()> {
    let r = call(
        socket,
        AdminCommand::Clients {
            node: args.node,
            session: args.session,
        },
    )
    .await?;
    let Response::Clients {
        clients,
        incomplete,
    } = &r
    else {
        return Err(unexpected("clients", &r).into());
    };
    warn_incomplete(incomplete, "clients");
    if json {
        print_json(&r)
    } else if clients.is_empty() {
        eprintln!("no clients");
        Ok(())
    } else {
        print_lines(&tables::clients_table(clients, now_ms()))
    }
}

/// `cloudctl keys`.
pub async fn keys(args: KeysArgs, socket: &Socket, json: bool) -> anyhow::Result<()> {
    let (primary, secondary) = match args.key {
        Some(spec) => (Some(spec.primary), spec.secondary),
        None => (None, None),
    };
    // The node parses the query, so the admin socket's other clients get the same syntax
    // and the same errors. A bare --limit is not a query (a query sees only rows whose data
    // is a JSON object): it keeps the first rows of the plain listing, as `get --limit` does.
    let asks_query = args.filter.is_some() || args.sort.is_some() || args.near.is_some();
    let query = asks_query.then_some(KeysQuery {
        filter: args.filter,
        sort: args.sort,
        near: args.near,
        limit: args.limit,
    });
    let cut = args.limit.filter(|_| !asks_query);
    let mut r = call(
        socket,
        AdminCommand::Keys {
            primary,
            secondary,
            query,
        },
    )
    .await?;
    if let (
        Some(n),
        Response::Rows {
            rows, truncated, ..
        },
    ) = (cut, &mut r)
    {
        if rows.len() > n as usize {
            rows.truncate(n as usize);
            // Cut short as the operator asked: not the listing's own cap.
            *truncated = false;
        }
    }
    match &r {
        Response::Primaries {
            primaries,
            incomplete,
        } => {
            warn_incomplete(incomplete, "keys");
            if json {
                print_json(&r)
            } else if primaries.is_empty() {
                eprintln!("no keys");
                Ok(())
            } else {
                print_lines(&tables::primaries_table(primaries))
            }
        }
        Response::Rows {
            rows,
            truncated,
            incomplete,
        } => {
            warn_incomplete(incomplete, "rows");
            if *truncated {
                eprintln!(
                    "cloudctl: more rows than the {MAX_LISTED_ROWS} listed (truncated); \
                     `cloudctl get` pages through all of them"
                );
            }
            if json {
                print_json(&r)
            } else if rows.is_empty() {
                eprintln!("no rows");
                Ok(())
            } else {
                print_lines(&tables::rows_table(rows))
            }
        }
        other => Err(unexpected("keys", other).into()),
    }
}

/// A drain the node refused or could not finish, naming the node when its reason does
/// not already.
fn drain_failed(node: &str, e: AdminError) -> AdminFailure {
    let f = AdminFailure::from(e);
    match f.exit {
        Exit::Failed if !f.message.contains(node) => AdminFailure {
            message: format!("drain of {node} failed: {}", f.message),
            ..f
        },
        _ => f,
    }
}

/// `cloudctl drain`.
pub async fn drain(args: DrainNodeArgs, socket: &Socket, json: bool) -> anyhow::Result<()> {
    let command = AdminCommand::Drain {
        node: args.node.clone(),
        wait: args.wait,
    };
    if !args.wait {
        let mut client = socket.connect().await.map_err(AdminFailure::from)?;
        let r = match client.call(command).await {
            Ok(Response::Error(e)) => return Err(drain_failed(&args.node, e).into()),
            Ok(r) => r,
            Err(e) => return Err(with_path(e, &socket.path).into()),
        };
        return match &r {
            Response::DrainStarted { .. } if json => print_json(&r),
            Response::DrainStarted { node, clients } => {
                print(&format!("draining {node}: {clients} clients to move"))
            }
            other => Err(unexpected("drain", other).into()),
        };
    }

    let mut client = socket.connect().await.map_err(AdminFailure::from)?;
    client
        .send(command)
        .await
        .map_err(|e| with_path(e, &socket.path))?;
    // Taken once, before waiting: from here a Ctrl-C is ours to handle, none is lost
    // between frames, and it only ends the wait (the drain runs in the node).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot handle SIGINT")?;
    let mut progress = Progress::new(json);
    loop {
        let frame = tokio::select! {
            frame = client.next() => frame.map_err(|e| {
                let mut f = with_path(e, &socket.path);
                // The drain runs in the node whatever happened to this connection.
                f.message.push_str(&format!(
                    "; the drain of {} may still be going on (see `cloudctl nodes`)",
                    args.node
                ));
                f
            }),
            _ = interrupt.recv() => {
                progress.finish();
                return Err(AdminFailure {
                    exit: Exit::Interrupted,
                    message: format!(
                        "stopped waiting; the drain of {} goes on (follow it with `cloudctl \
                         nodes`; `cloudctl undrain {}` cancels it)",
                        args.node, args.node
                    ),
                }
                .into());
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                progress.finish();
                return Err(e.into());
            }
        };
        match &frame {
            Response::Progress {
                node,
                moved,
                remaining,
            } => {
                if json {
                    print_json(&frame)?;
                } else {
                    progress.show(node, *moved, *remaining);
                }
            }
            Response::Drained { node, moved } => {
                progress.finish();
                return if json {
                    print_json(&frame)
                } else {
                    print(&format!("{node} drained: {moved} clients moved"))
                };
            }
            Response::Error(e) => {
                progress.finish();
                return Err(drain_failed(&args.node, e.clone()).into());
            }
            other => {
                progress.finish();
                return Err(unexpected("drain --wait", other).into());
            }
        }
    }
}

/// `drain --wait`'s progress on stderr: a bar redrawn in place on a terminal, one line per
/// report otherwise (a log or CI output gets no carriage returns).
#[derive(Debug)]
struct Progress {
    /// Redraw in place.
    terminal: bool,
    /// Print nothing (`--json` puts the frames on stdout instead).
    quiet: bool,
    /// Characters of the bar line last drawn, to blank what a shorter one leaves.
    drawn: usize,
}

impl Progress {
    fn new(json: bool) -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            quiet: json,
            drawn: 0,
        }
    }

    fn show(&mut self, node: &str, moved: usize, remaining: usize) {
        if self.quiet {
            return;
        }
        let line = tables::progress_line(node, moved, remaining, self.terminal);
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the drain's report.
        if self.terminal {
            let n = line.chars().count();
            let pad = " ".repeat(self.drawn.saturating_sub(n));
            let _ = write!(err, "\r{line}{pad}");
            self.drawn = n;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the bar's line, so what follows starts on its own.
    fn finish(&mut self) {
        if self.drawn > 0 {
            let _ = writeln!(std::io::stderr());
            self.drawn = 0;
        }
    }
}

/// `cloudctl undrain`.
pub async fn undrain(args: UndrainArgs, socket: &Socket, json: bool) -> anyhow::Result<()> {
    let r = call(socket, AdminCommand::Undrain { node: args.node }).await?;
    match &r {
        Response::Undrained { .. } if json => print_json(&r),
        Response::Undrained { node } => print(&format!("{node} is active again")),
        other => Err(unexpected("undrain", other).into()),
    }
}

/// `cloudctl migrate`.
pub async fn migrate(args: MigrateArgs, socket: &Socket, json: bool) -> anyhow::Result<()> {
    let command = AdminCommand::Migrate {
        client: args.client.to_string(),
        to: args.to,
    };
    let r = call(socket, command).await?;
    match &r {
        Response::Migrated { .. } if json => print_json(&r),
        Response::Migrated { client, from, to } => {
            print(&format!("moved client {client} from {from} to {to}"))
        }
        other => Err(unexpected("migrate", other).into()),
    }
}

/// `cloudctl rebalance`.
pub async fn rebalance(socket: &Socket, json: bool) -> anyhow::Result<()> {
    let r = call(socket, AdminCommand::Rebalance).await?;
    match &r {
        Response::Rebalanced { .. } if json => print_json(&r),
        Response::Rebalanced { moved: Some(m) } => print(&format!(
            "asked {} to move {} clients to {}",
            m.from, m.count, m.to
        )),
        Response::Rebalanced { moved: None } => {
            print("the mesh is within the rebalance threshold; nothing to move")
        }
        other => Err(unexpected("rebalance", other).into()),
    }
}

/// `cloudctl place`.
pub async fn place(args: PlaceArgs, socket: &Socket, json: bool) -> anyhow::Result<()> {
    // --explain is the only mode; the flag is accepted so scripts can already say it.
    let _ = args.explain;
    let r = call(
        socket,
        AdminCommand::Place {
            position: args.position,
        },
    )
    .await?;
    match &r {
        Response::Placement(_) if json => print_json(&r),
        Response::Placement(report) => {
            let explain = report.explain.trim_end();
            // The node's table starts with its choice; say it ourselves if it does not.
            if !explain.starts_with("choice:") {
                print(&format!(
                    "choice: {}",
                    report
                        .choice
                        .as_deref()
                        .unwrap_or("none (no eligible node)")
                ))?;
            }
            print(explain)
        }
        other => Err(unexpected("place", other).into()),
    }
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "cloudctl", out);
}

/// `cloudctl completions`.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut script = Vec::new();
    write_completions(args.shell, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn every_admin_error_has_its_exit_code() {
        let s = || String::from("x");
        let cases = [
            (
                AdminError::UnsupportedVersion {
                    requested: 9,
                    supported: 1,
                },
                2,
            ),
            (AdminError::BadRequest { reason: s() }, 2),
            (AdminError::TooLarge { size: 1, max: 0 }, 2),
            (
                AdminError::InvalidQuery {
                    part: s(),
                    reason: s(),
                },
                2,
            ),
            (
                AdminError::UnknownNode {
                    name: s(),
                    known: vec![s()],
                },
                4,
            ),
            (AdminError::UnknownClient { client: s() }, 4),
            (
                AdminError::Unavailable {
                    node: s(),
                    reason: s(),
                },
                1,
            ),
            (AdminError::Failed { reason: s() }, 1),
        ];
        for (e, code) in cases {
            assert_eq!(exit_for_admin(&e).code(), code, "{e:?}");
            let f = AdminFailure::from(e.clone());
            assert_eq!(f.exit.code(), code);
            assert_eq!(f.message, e.to_string());
        }
    }

    #[test]
    fn socket_failures_have_their_exit_codes() {
        let path = PathBuf::from("/nonexistent/admin.sock");
        let no_daemon = AdminClientError::NoDaemon {
            path: path.clone(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        let f = AdminFailure::from(no_daemon);
        assert_eq!(f.exit.code(), 3);
        assert!(
            f.message.contains("/nonexistent/admin.sock"),
            "{}",
            f.message
        );
        assert!(f.message.contains("cloudd"), "{}", f.message);
        let denied = AdminClientError::PermissionDenied { path: path.clone() };
        assert_eq!(exit_for_client(&denied).code(), 3);
        assert_eq!(exit_for_client(&AdminClientError::Closed).code(), 1);
        let closed = with_path(AdminClientError::Closed, &path);
        assert!(closed
            .message
            .starts_with("admin socket /nonexistent/admin.sock: "));
        assert_eq!(Exit::Interrupted.code(), 130);
    }

    #[test]
    fn failed_drains_name_the_node_once() {
        let failed = |reason: &str| AdminError::Failed {
            reason: reason.into(),
        };
        let f = drain_failed("node-3", failed("no Active node can take clients"));
        assert_eq!(f.exit, Exit::Failed);
        assert_eq!(
            f.message,
            "drain of node-3 failed: no Active node can take clients"
        );
        let f = drain_failed("node-3", failed("drain of node-3: no other node"));
        assert_eq!(f.message, "drain of node-3: no other node");
        let f = drain_failed(
            "node-9",
            AdminError::UnknownNode {
                name: "node-9".into(),
                known: vec!["node-1".into()],
            },
        );
        assert_eq!(f.exit, Exit::NotFound);
        assert!(f.message.starts_with("no node named"));
    }

    #[test]
    fn unexpected_answers_name_their_type() {
        let f = unexpected("nodes", &Response::Undrained { node: "n".into() });
        assert_eq!(f.exit, Exit::Failed);
        assert!(f.message.contains("with `undrained`"), "{}", f.message);
    }

    #[test]
    fn completions_are_generated() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::Elvish,
            clap_complete::Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            let text = String::from_utf8(out).expect("utf-8");
            assert!(text.contains("cloudctl"), "{shell}");
            assert!(text.contains("drain"), "{shell}");
        }
    }

    #[tokio::test]
    async fn no_daemon_is_exit_3_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("admin.sock");
        let socket = Socket {
            path: path.clone(),
            timeout: None,
        };
        let err = status(&socket, false).await.expect_err("no daemon there");
        let f = err.downcast_ref::<AdminFailure>().expect("an AdminFailure");
        assert_eq!(f.exit, Exit::NoDaemon);
        assert!(f.message.contains(&path.display().to_string()));
    }
}
