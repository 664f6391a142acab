//! `cloudctl bench`: runs the library's load scenarios and prints what they measured.

use anyhow::Context;
use cloudmesh::bench::{self, ThroughputOptions};
use serde_json::json;

use crate::cli::ThroughputArgs;
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
        let mut value = serde_json::to_value(&report)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("scenario".into(), json!("throughput"));
            obj.insert("clients".into(), json!(scenario.clients));
            obj.insert("pipeline".into(), json!(scenario.pipeline));
        }
        output::json_line(&value)?;
    } else {
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
    }
    Ok(())
}
