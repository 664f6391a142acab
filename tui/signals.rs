//! The signals that end a command owning processes (a local mesh, simulated players), so it
//! stops them in order instead of dying and leaving them running.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Ctrl-C, SIGTERM and SIGHUP, handled from the moment this is made.
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Starts handling them (instead of the default death).
    pub fn new() -> anyhow::Result<Signals> {
        let on = |kind| signal(kind).context("cannot handle signals");
        Ok(Signals {
            int: on(SignalKind::interrupt())?,
            term: on(SignalKind::terminate())?,
            hup: on(SignalKind::hangup())?,
        })
    }

    /// The next one, named.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}
