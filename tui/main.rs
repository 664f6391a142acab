//! `cloudctl`: the operator's CLI. Parses the command line and hands each verb to its module.

mod bench_cmd;
mod cli;
mod client_cmds;
mod output;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, UsageError};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Post(args) => client_cmds::post(args, cli.json).await,
        Command::Get(args) => client_cmds::get(args, cli.json).await,
        Command::Watch(args) => client_cmds::watch(args, cli.json).await,
        Command::Bench(cli::BenchCommand::Throughput(args)) => {
            bench_cmd::throughput(args, cli.json).await
        }
        Command::Bench(cli::BenchCommand::Fanout(args)) => bench_cmd::fanout(args, cli.json).await,
        Command::Bench(cli::BenchCommand::Migration(args)) => {
            bench_cmd::migration(args, cli.json).await
        }
        Command::Bench(cli::BenchCommand::Drain(args)) => bench_cmd::drain(args, cli.json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_for(&e),
    }
}

/// Reports an error and picks the exit code: 2 for usage, 1 for everything operational.
fn exit_for(e: &anyhow::Error) -> ExitCode {
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
