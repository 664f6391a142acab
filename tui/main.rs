//! `cloudctl`: the operator's CLI. Parses the command line and hands each verb to its module.

mod admin_cmds;
mod bench_cmd;
mod cli;
mod client_cmds;
mod console;
mod demo;
mod local_mesh;
mod output;
mod progress;
mod signals;
mod tables;

use std::process::ExitCode;

use clap::Parser;

use admin_cmds::AdminFailure;
use cli::{Cli, Command, UsageError};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let admin = admin_cmds::Socket {
        path: cli.socket.clone(),
        timeout: cli
            .timeout
            .map(Into::into)
            .filter(|t: &std::time::Duration| !t.is_zero()),
    };
    let result = match cli.command {
        Command::Post(args) => client_cmds::post(args, cli.json).await,
        Command::Get(args) => client_cmds::get(args, cli.json).await,
        Command::Watch(args) => client_cmds::watch(args, cli.json).await,
        Command::Bench(scenario) => {
            use cli::BenchCommand as B;
            let (socket, json) = (&cli.socket, cli.json);
            match scenario {
                B::Throughput(args) => bench_cmd::throughput(args, socket, json).await,
                B::Fanout(args) => bench_cmd::fanout(args, socket, json).await,
                B::Migration(args) => bench_cmd::migration(args, socket, json).await,
                B::Drain(args) => bench_cmd::drain(args, socket, json).await,
                B::Idle(args) => bench_cmd::idle(args, socket, json).await,
                B::Failover(args) => bench_cmd::failover(args, json).await,
                B::Blip(args) => bench_cmd::blip(args, json).await,
                B::Mesh(args) => bench_cmd::mesh(args, json).await,
                B::Query(args) => bench_cmd::query(args, socket, json).await,
            }
        }
        Command::Status => admin_cmds::status(&admin, cli.json).await,
        Command::Nodes => admin_cmds::nodes(&admin, cli.json).await,
        Command::Clients(args) => admin_cmds::clients(args, &admin, cli.json).await,
        Command::Keys(args) => admin_cmds::keys(args, &admin, cli.json).await,
        Command::Drain(args) => admin_cmds::drain(args, &admin, cli.json).await,
        Command::Undrain(args) => admin_cmds::undrain(args, &admin, cli.json).await,
        Command::Migrate(args) => admin_cmds::migrate(args, &admin, cli.json).await,
        Command::Rebalance => admin_cmds::rebalance(&admin, cli.json).await,
        Command::Place(args) => admin_cmds::place(args, &admin, cli.json).await,
        Command::Completions(args) => admin_cmds::completions(args),
        Command::Demo(args) => demo::run(args).await,
        Command::Tui => console::run(cli.socket).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_for(&e),
    }
}

/// Reports an error and picks the exit code (the table is in `cloudctl --help`): an operator
/// verb's failure carries its own; 2 for usage; 1 for everything else operational.
fn exit_for(e: &anyhow::Error) -> ExitCode {
    // First, so a write to a closed admin socket is a failure, not a reader that left.
    if let Some(f) = e.chain().find_map(|c| c.downcast_ref::<AdminFailure>()) {
        eprintln!("cloudctl: {e:#}");
        return ExitCode::from(f.exit.code());
    }
    let reader_gone = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if reader_gone {
        // `cloudctl watch | head` ends this way; the reader has all it wanted.
        return ExitCode::SUCCESS;
    }
    eprintln!("cloudctl: {e:#}");
    if e.downcast_ref::<UsageError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}
