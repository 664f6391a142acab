//! The mesh-client verbs `post`, `get` and `watch`: they talk to a node over QUIC exactly
//! like a game client would, through the library's SDK.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use cloudmesh::client::{Client, ClientError, ClientOptions};
use cloudmesh::proto::{GetPage, GetQuery, KeySpec, QueryPage, DEFAULT_PORT};
use cloudmesh::query::Query;
use cloudmesh::transport::Trust;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::{AuthArgs, ConnectArgs, GetArgs, PostArgs, UsageError, WatchArgs};
use crate::output;

const NO_TRUST: &str = "say how to trust the node, with one of:\n  \
    --pin FINGERPRINT  the node's certificate fingerprint (or env CLOUDMESH_PIN); cloudd \
    prints it at start: `certificate fingerprint sha256:HEX (clients: --pin HEX)`\n  \
    --ca FILE          a PEM file with the CA that issued the node's certificate \
    (with --server-name NAME if the name differs from the --server host)\n  \
    --insecure         check nothing: anyone on the network path could pose as the node \
    (local development only)";

/// Ctrl-C or SIGTERM: the ways a user or supervisor asks a long-running verb to stop.
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn new() -> anyhow::Result<Stop> {
        Ok(Stop {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

pub fn trust(args: &AuthArgs) -> Result<Trust, UsageError> {
    match (&args.pin, &args.ca, args.insecure) {
        (Some(pin), None, false) => Ok(Trust::Pin(*pin)),
        (None, Some(ca), false) => Ok(Trust::CaFile(ca.clone())),
        (None, None, true) => {
            eprintln!(
                "cloudctl: warning: --insecure: the node's identity is not checked, so anyone \
                 on the network path could pose as it; use this for local development only"
            );
            Ok(Trust::InsecureDevOnly)
        }
        (None, None, false) => Err(UsageError(NO_TRUST.to_owned())),
        // clap's conflicts_with rules this out; say so plainly if it ever happens.
        _ => Err(UsageError(
            "give only one of --pin, --ca and --insecure".to_owned(),
        )),
    }
}

/// Splits `HOST:PORT` (or `[V6]:PORT`, or a bare host) into host and port.
fn split_server(server: &str) -> Result<(String, u16), UsageError> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = server.parse::<IpAddr>() {
        return Ok((ip.to_string(), DEFAULT_PORT));
    }
    let bad = || UsageError(format!("--server {server:?} is not HOST:PORT"));
    let (host, port) = match server.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
        None => (server, DEFAULT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Resolves `--server` to its addresses, and the host name to expect in certificates.
async fn resolve(server: &str, timeout: Duration) -> anyhow::Result<(Vec<SocketAddr>, String)> {
    let (host, port) = split_server(server)?;
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let addrs = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| anyhow!("cannot resolve {host}: no answer within {timeout:?}"))?
        .with_context(|| format!("cannot resolve {host} (--server {server})"))?
        .collect();
    Ok((addrs, host))
}

/// The node's address and the SDK options the connection flags describe.
pub async fn client_options(args: &ConnectArgs) -> anyhow::Result<(SocketAddr, ClientOptions)> {
    let trust = trust(&args.auth)?;
    let (addrs, host) = resolve(&args.server, args.auth.connect_timeout).await?;
    let addr = addrs
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("{host} (--server {}) has no address", args.server))?;
    Ok((addr, options(&args.auth, trust, host)))
}

/// Every address `server` names (a name may stand for several nodes), each with the SDK
/// options the flags describe.
pub async fn client_options_all(
    server: &str,
    auth: &AuthArgs,
    trust: &Trust,
) -> anyhow::Result<Vec<(SocketAddr, ClientOptions)>> {
    let (addrs, host) = resolve(server, auth.connect_timeout).await?;
    if addrs.is_empty() {
        bail!("{host} (--server {server}) has no address");
    }
    let opts = options(auth, trust.clone(), host);
    Ok(addrs.into_iter().map(|a| (a, opts.clone())).collect())
}

/// The SDK options for a node reached by the name `host`.
pub fn options(auth: &AuthArgs, trust: Trust, host: String) -> ClientOptions {
    let mut opts = ClientOptions::new(trust);
    opts.server_name = auth.server_name.clone().unwrap_or(host);
    opts.class = auth.class.clone();
    opts.token = auth.token.clone();
    opts.connect_timeout = auth.connect_timeout;
    opts
}

/// Connects and completes the handshake, or explains what to check.
async fn connect(args: &ConnectArgs) -> anyhow::Result<Client> {
    let (addr, opts) = client_options(args).await?;
    let trust = opts.trust.clone();
    Client::connect(addr, opts)
        .await
        .map_err(|e| explain_connect(e, &trust))
}

/// Adds a hint on what to check to a connection error.
pub fn explain_connect(e: ClientError, trust: &Trust) -> anyhow::Error {
    let hint = match (&e, trust) {
        (ClientError::Connect { reason, .. }, Trust::Pin(_))
            if reason.contains("fingerprint") || reason.contains("certificate") =>
        {
            "the node's certificate fingerprint is not the one given with --pin; cloudd \
             prints its fingerprint at start (`certificate fingerprint sha256:HEX`)"
        }
        (ClientError::Connect { reason, .. }, Trust::CaFile(_))
            if reason.contains("certificate") =>
        {
            "the node's certificate is not issued by the --ca file for the expected name \
             (set it with --server-name)"
        }
        (ClientError::Connect { reason, .. }, _) if reason.contains("no answer") => {
            "is cloudd running there? (set the address with --server or CLOUDMESH_SERVER)"
        }
        _ => "",
    };
    if hint.is_empty() {
        anyhow!(e)
    } else {
        anyhow!("{e}\n  hint: {hint}")
    }
}

fn owners(list: &[cloudmesh::proto::ClientId]) -> Option<Vec<cloudmesh::proto::ClientId>> {
    (!list.is_empty()).then(|| list.to_vec())
}

fn spec_list(keys: &[KeySpec]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_data(args: &PostArgs) -> anyhow::Result<Bytes> {
    if let Some(path) = &args.file {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(data.into());
    }
    match args.data.as_deref() {
        Some("-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the data from standard input")?;
            Ok(buf.into())
        }
        Some(text) => Ok(Bytes::copy_from_slice(text.as_bytes())),
        None => {
            Err(UsageError("give the data, `-` for standard input, or --file PATH".into()).into())
        }
    }
}

/// Reads a resume file: the client id and token, hex, on one line.
fn read_resume_file(path: &std::path::Path) -> Option<(cloudmesh::proto::ClientId, Bytes)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (id, token) = text.trim().split_once(' ')?;
    Some((id.parse().ok()?, Bytes::from(hex::decode(token).ok()?)))
}

/// Writes the client's current resume token to `path` (mode 0600: it takes the session).
fn write_resume_file(path: &std::path::Path, client: &Client) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let Some((id, token)) = client.resume_token() else {
        return Ok(());
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    writeln!(f, "{id} {}", hex::encode(&token))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Prints the session's heal events (lost, resumed, restored) as they come, and keeps the
/// resume file current.
fn report_session_events(client: &Client, json: bool, resume_file: Option<std::path::PathBuf>) {
    let mut events = client.session_events();
    let mut moves = client.migrations();
    let c = client.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.recv() => match e {
                    Ok(e) => Some(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
                m = moves.recv() => match m {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(_) => return,
                },
            };
            if let Some(e) = &event {
                let (j, human) = output::session_event(e, c.id());
                let _ = if json {
                    output::json_line(&j)
                } else {
                    eprintln!("cloudctl: {human}");
                    Ok(())
                };
            }
            if let Some(path) = &resume_file {
                if let Err(e) = write_resume_file(path, &c) {
                    eprintln!("cloudctl: {e:#}");
                }
            }
        }
    });
}

/// `cloudctl post`.
pub async fn post(args: PostArgs, json: bool) -> anyhow::Result<()> {
    let data = read_data(&args)?;
    let mut stop = Stop::new()?;
    let kept = args.resume_file.as_deref().and_then(read_resume_file);
    let client = match kept {
        Some((id, token)) => {
            let (addr, opts) = client_options(&args.conn).await?;
            match Client::resume(addr, id, token, opts).await {
                Ok(c) => {
                    eprintln!("cloudctl: resumed the session of client {id}");
                    c
                }
                Err(e) => {
                    eprintln!("cloudctl: could not resume client {id} ({e}); starting anew");
                    connect(&args.conn).await?
                }
            }
        }
        None => connect(&args.conn).await?,
    };
    if let Some(path) = &args.resume_file {
        write_resume_file(path, &client)?;
    }
    report_session_events(&client, json, args.resume_file.clone());
    let version = client
        .post(args.key.clone(), data)
        .await
        .map_err(|e| anyhow!("cannot post {}: {e}", args.key))?;
    let note = match args.hold {
        Some(d) => format!(
            "holding the row for {} (a row lives while its client's session does)",
            humantime::format_duration(d)
        ),
        None => {
            "holding the row until Ctrl-C (a row lives while its client's session does)".to_owned()
        }
    };
    if json {
        output::json_line(&output::PostedJson {
            key: args.key.to_string(),
            version,
            client: client.id().to_string(),
            node: &client.node_name(),
        })
        .context("cannot write to stdout")?;
        eprintln!("cloudctl: {note}");
    } else {
        output::line(&format!(
            "posted {} version {version} as client {} on node {}",
            args.key,
            client.id(),
            client.node_name()
        ))
        .and_then(|()| output::line(&note))
        .context("cannot write to stdout")?;
    }
    let hold = async {
        match args.hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let closed_by_node = tokio::select! {
        _ = stop.wait() => None,
        _ = hold => None,
        why = client.closed() => Some(why),
    };
    if let Some(why) = closed_by_node {
        bail!("the row is gone because the connection ended: {why}");
    }
    client.close().await;
    if let Some(path) = &args.resume_file {
        // Closed on purpose: the session is gone, the token with it.
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Up to `max` rows, page by page.
async fn get_limited(
    client: &Client,
    mut query: GetQuery,
    max: u32,
) -> Result<GetPage, ClientError> {
    let mut all = GetPage::default();
    loop {
        let have = u32::try_from(all.rows.len()).unwrap_or(u32::MAX);
        query.limit = max.saturating_sub(have);
        let page = client.get_page(query.clone()).await?;
        all.rows.extend(page.rows);
        for n in page.incomplete {
            if !all.incomplete.contains(&n) {
                all.incomplete.push(n);
            }
        }
        all.rows.truncate(max as usize);
        match page.next {
            Some(cursor) if all.rows.len() < max as usize => query.start = Some(cursor),
            _ => return Ok(all),
        }
    }
}

/// The query `--where`, `--sort` and `--near` ask for; `None` when none is given (and not
/// `always`).
fn cli_query(
    keys: &[KeySpec],
    filter: Option<&str>,
    sort: Option<&str>,
    near: Option<&str>,
    always: bool,
) -> Result<Option<Query>, UsageError> {
    if filter.is_none() && sort.is_none() && near.is_none() && !always {
        return Ok(None);
    }
    let usage = |flag: &str, e: cloudmesh::query::QueryError| UsageError(format!("{flag}: {e}"));
    let mut q = Query::on(keys.iter().cloned());
    if let Some(text) = filter {
        q = q.where_text(text).map_err(|e| usage("--where", e))?;
    }
    if let Some(text) = sort {
        q = q.sort_text(text).map_err(|e| usage("--sort", e))?;
    }
    if let Some(text) = near {
        q = q.filter(cloudmesh::query::parse_near(text).map_err(|e| usage("--near", e))?);
    }
    q.build().map_err(|e| usage("the query", e))?;
    Ok(Some(q))
}

/// Up to `max` matches of a query (all with `None`), page by page.
async fn query_limited(
    client: &Client,
    query: Query,
    max: Option<u32>,
) -> Result<QueryPage, ClientError> {
    let mut all = QueryPage::default();
    let mut start = None;
    loop {
        let have = u32::try_from(all.rows.len()).unwrap_or(u32::MAX);
        let limit = max.map_or(0, |m| m.saturating_sub(have));
        let wire = query.clone().limit(limit).start(start).build()?;
        let page = client.query_page(wire).await?;
        all.rows.extend(page.rows);
        for n in page.incomplete {
            if !all.incomplete.contains(&n) {
                all.incomplete.push(n);
            }
        }
        if let Some(m) = max {
            all.rows.truncate(m as usize);
        }
        match page.next {
            Some(cursor) if max.is_none_or(|m| all.rows.len() < m as usize) => start = Some(cursor),
            _ => return Ok(all),
        }
    }
}

/// `cloudctl get`.
pub async fn get(args: GetArgs, json: bool) -> anyhow::Result<()> {
    let query = cli_query(
        &args.keys,
        args.filter.as_deref(),
        args.sort.as_deref(),
        args.near.as_deref(),
        false,
    )?;
    let client = connect(&args.conn).await?;
    let page = match query {
        Some(q) => query_limited(&client, q, args.limit)
            .await
            .map(|p| GetPage {
                rows: p.rows,
                next: None,
                incomplete: p.incomplete,
            })
            .map_err(|e| anyhow!("cannot query {}: {e}", spec_list(&args.keys)))?,
        None => get_rows(&client, &args).await?,
    };
    client.close().await;
    print_page(&page, json)
}

/// A plain get (no query), up to `--limit` rows.
async fn get_rows(client: &Client, args: &GetArgs) -> anyhow::Result<GetPage> {
    let query = GetQuery {
        keys: args.keys.clone(),
        owners: owners(&args.owners),
        ..GetQuery::default()
    };
    match args.limit {
        Some(max) => get_limited(client, query, max).await,
        None => client.get_all(query).await,
    }
    .map_err(|e| anyhow!("cannot get {}: {e}", spec_list(&args.keys)))
}

/// Prints a get's (or a query's) rows, and the nodes whose rows are missing.
fn print_page(page: &GetPage, json: bool) -> anyhow::Result<()> {
    for node in &page.incomplete {
        eprintln!(
            "cloudctl: node {node} did not answer in time; its rows are missing (incomplete)"
        );
    }
    let write = || -> std::io::Result<()> {
        if json {
            for row in &page.rows {
                output::json_line(&output::row_json(row))?;
            }
        } else if page.rows.is_empty() {
            eprintln!("no rows");
        } else {
            for line in output::table(&page.rows) {
                output::line(&line)?;
            }
        }
        Ok(())
    };
    write().context("cannot write to stdout")
}

/// `cloudctl watch --where/--sort/--near/--limit`: a live query.
async fn watch_query(args: WatchArgs, query: Query, json: bool) -> anyhow::Result<()> {
    let mut stop = Stop::new()?;
    let client = connect(&args.conn).await?;
    let specs = spec_list(&args.keys);
    let query = query.limit(args.limit.unwrap_or(0));
    let (rows, mut live) = client
        .watch_query(&query)
        .await
        .map_err(|e| anyhow!("cannot watch {specs}: {e}"))?;
    let print = |kind: &str, row: &cloudmesh::proto::Row, reason: Option<&'static str>| {
        if json {
            output::json_line(&output::query_event_json(kind, row, reason))
        } else {
            let mut line = output::event_human(kind, row, None);
            if let Some(r) = reason {
                line.push_str(&format!("  ({r})"));
            }
            output::line(&line)
        }
        .context("cannot write to stdout")
    };
    for row in &rows {
        print("snapshot", row, None)?;
    }
    let until = match args.count {
        Some(n) => format!("for {n} change(s)"),
        None => "until Ctrl-C".to_owned(),
    };
    eprintln!(
        "cloudctl: watching {specs} with a query: {} row(s) match; waiting {until}",
        live.len()
    );
    let mut seen = 0u64;
    while args.count.is_none_or(|n| seen < n) {
        tokio::select! {
            event = live.next() => match event {
                Some(event) => {
                    let (kind, row, reason) = output::query_event_parts(&event);
                    print(kind, row, reason)?;
                    seen += 1;
                }
                None => bail!("watch ended: {}", client.closed().await),
            },
            _ = stop.wait() => break,
        }
    }
    drop(live);
    client.close().await;
    Ok(())
}

/// `cloudctl watch`.
pub async fn watch(args: WatchArgs, json: bool) -> anyhow::Result<()> {
    if let Some(query) = cli_query(
        &args.keys,
        args.filter.as_deref(),
        args.sort.as_deref(),
        args.near.as_deref(),
        args.limit.is_some(),
    )? {
        return watch_query(args, query, json).await;
    }
    let mut stop = Stop::new()?;
    let client = connect(&args.conn).await?;
    let specs = spec_list(&args.keys);
    let (rows, mut sub) = client
        .subscribe(args.keys.clone(), owners(&args.owners))
        .await
        .map_err(|e| anyhow!("cannot watch {specs}: {e}"))?;
    let print = |kind: &str, row: &cloudmesh::proto::Row, reason| {
        if json {
            output::json_line(&output::event_json(kind, row, reason))
        } else {
            output::line(&output::event_human(kind, row, reason))
        }
        .context("cannot write to stdout")
    };
    for row in &rows {
        print("snapshot", row, None)?;
    }
    report_session_events(&client, json, None);
    let until = match args.count {
        Some(n) => format!("for {n} change(s)"),
        None => "until Ctrl-C".to_owned(),
    };
    eprintln!(
        "cloudctl: watching {specs}: {} row(s) in snapshot; waiting {until}",
        rows.len()
    );
    let mut seen = 0u64;
    while args.count.is_none_or(|n| seen < n) {
        tokio::select! {
            event = sub.next() => match event {
                Some(event) => {
                    let (kind, row, reason) = output::event_parts(&event);
                    print(kind, row, reason)?;
                    seen += 1;
                }
                None => bail!("watch ended: {}", client.closed().await),
            },
            _ = stop.wait() => break,
        }
    }
    drop(sub);
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_split() {
        let ok = |s: &str| split_server(s).expect("valid");
        assert_eq!(ok("127.0.0.1:7000"), ("127.0.0.1".into(), 7000));
        assert_eq!(ok("[::1]:7000"), ("::1".into(), 7000));
        assert_eq!(ok("::1"), ("::1".into(), DEFAULT_PORT));
        assert_eq!(ok("node.example:9"), ("node.example".into(), 9));
        assert_eq!(ok("node.example"), ("node.example".into(), DEFAULT_PORT));
        assert!(split_server("node:port").is_err());
        assert!(split_server(":7").is_err());
    }
}
