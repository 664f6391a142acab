//! `cloudctl bench`: runs the library's load scenarios and prints what they measured.

use anyhow::Context;
use cloudmesh::bench::{self, FanoutOptions, Report, ThroughputOptions};
use cloudmesh::transport::Trust;
use serde_json::json;

use crate::cli::{DrainArgs, FanoutArgs, MigrationArgs, ThroughputArgs};
use crate::client_cmds::{client_options, explain_connect};
use crate::output;

/// `cloudctl bench throughput`.
pub async fn throughput(args: ThroughputArgs, json: bool) -> anyhow::Result<()> {
    let (addr, opts) = client_options(&args.conn).await?;
    let trust = opts.trust.clone();
    let scenario = ThroughputOptions {
        clients: args.clients.max(1),
        pipeline: args.pipeline.max(1),
        duration: args.duration,
        value_size: args.value_size,
        keys: args.keys.max(1),
    };
    if !json {
        eprintln!(
            "cloudctl: bench throughput: {} clients x {} in flight, {:?}, against {addr}",
            scenario.clients, scenario.pipeline, scenario.duration
        );
    }
    let report = bench::throughput(addr, opts, &scenario)
        .await
        .map_err(|e| explain_connect(e, &trust))
        .context("benchmark clients could not connect")?;
    if json {
        print_json(
            &report,
            &[
                ("scenario", json!("throughput")),
                ("clients", json!(scenario.clients)),
                ("pipeline", json!(scenario.pipeline)),
            ],
        )?;
    } else {
        print_table(&report)?;
    }
    Ok(())
}

/// One JSON line: the report's fields plus the scenario's own (`scenario`, knobs).
fn print_json(
    report: &impl serde::Serialize,
    extra: &[(&str, serde_json::Value)],
) -> anyhow::Result<()> {
    let mut value = serde_json::to_value(report)?;
    if let Some(obj) = value.as_object_mut() {
        for (k, v) in extra {
            obj.insert((*k).into(), v.clone());
        }
    }
    output::json_line(&value)?;
    Ok(())
}

fn print_table(report: &Report) -> anyhow::Result<()> {
    output::line(&format!(
        "{:>12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "ops/s", "ops", "errors", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    ))?;
    output::line(&format!(
        "{:>12.0} {:>8} {:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        report.ops_per_sec,
        report.ops,
        report.errors,
        report.p50_ms,
        report.p99_ms,
        report.p999_ms,
        report.max_ms
    ))?;
    Ok(())
}

/// `cloudctl bench fanout`.
pub async fn fanout(args: FanoutArgs, json: bool) -> anyhow::Result<()> {
    let (post_addr, post_opts) = client_options(&args.conn).await?;
    let mut sub_conn = args.conn.clone();
    sub_conn.server = args.subscriber_server.clone();
    let (sub_addr, mut sub_opts) = client_options(&sub_conn).await?;
    if let Some(pin) = args.subscriber_pin {
        sub_opts.trust = Trust::Pin(pin);
    }
    let scenario = FanoutOptions {
        rate: args.rate.max(1),
        duration: args.duration,
        posters: args.posters.max(1),
        keys: args.keys.max(1),
    };
    if !json {
        eprintln!(
            "cloudctl: bench fanout: {} posts/s on {post_addr} for {:?}, subscriber on {sub_addr}",
            scenario.rate, scenario.duration
        );
    }
    let trust = post_opts.trust.clone();
    let report = bench::fanout(post_addr, post_opts, sub_addr, sub_opts, &scenario)
        .await
        .map_err(|e| explain_connect(e, &trust))
        .context("benchmark clients could not connect")?;
    if json {
        print_json(
            &report,
            &[
                ("scenario", json!("fanout")),
                ("rate", json!(scenario.rate)),
            ],
        )?;
    } else {
        print_table(&report.latency)?;
        output::line(&format!(
            "posted {}, notifications missing {}",
            report.posted, report.missing
        ))?;
    }
    Ok(())
}

/// `cloudctl bench migration`.
pub async fn migration(args: MigrationArgs, json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!(
            "cloudctl: bench migration: local 3-node mesh, {} clients, {} migrations",
            args.clients, args.migrations
        );
    }
    let r = bench::migration(args.clients, args.migrations)
        .await
        .map_err(anyhow::Error::msg)?;
    if json {
        print_json(
            &r,
            &[
                ("scenario", json!("migration")),
                ("clients", json!(args.clients)),
            ],
        )?;
    } else {
        output::line(&format!(
            "migrations {} (failed {}), client errors {}",
            r.migrations, r.failed, r.client_errors
        ))?;
        output::line(&format!(
            "stall p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (baseline gap p99 {:.3} ms)",
            r.stall_p50_ms, r.stall_p99_ms, r.stall_max_ms, r.baseline_p99_ms
        ))?;
    }
    Ok(())
}

/// `cloudctl bench drain`.
pub async fn drain(args: DrainArgs, json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!(
            "cloudctl: bench drain: local 3-node mesh, {} clients",
            args.clients
        );
    }
    let r = bench::drain(args.clients)
        .await
        .map_err(anyhow::Error::msg)?;
    if json {
        print_json(&r, &[("scenario", json!("drain"))])?;
    } else {
        output::line(&format!(
            "drained {} of {} clients in {:.3} s",
            r.moved, r.clients, r.seconds
        ))?;
    }
    Ok(())
}
