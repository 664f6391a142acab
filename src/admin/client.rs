//! The asking side of the admin socket, for `cloudctl` and the console.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;

use super::frame::{self, FrameError};
use super::protocol::{AdminRequest, Command, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};

/// Why talking to a node's admin socket failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// Nothing listens at the path (no socket file, or a stale one).
    #[error("no cloudd answers on the admin socket {}: {source}\n  start one with `cloudd` (it serves this path by default; see --admin-socket), or point cloudctl at the right one with --socket PATH", path.display())]
    NoDaemon {
        /// The path tried.
        path: PathBuf,
        /// What connecting said.
        source: std::io::Error,
    },
    /// The socket exists but this user may not use it (it is mode 0600, owned by the
    /// daemon's user).
    #[error("permission denied on the admin socket {}: run cloudctl as the user cloudd runs as (or root)", path.display())]
    PermissionDenied {
        /// The path tried.
        path: PathBuf,
    },
    /// The daemon closed the connection before answering.
    #[error("the daemon closed the admin connection before answering")]
    Closed,
    /// A frame could not be read or written.
    #[error("admin connection: {0}")]
    Frame(#[from] FrameError),
    /// The daemon did not answer in time (connected, but no frame came).
    #[error("the daemon at the admin socket {} did not answer within {}; it may be overloaded or stuck (see its log), or give it longer with --timeout", path.display(), humantime::format_duration(*after))]
    Timeout {
        /// The path asked.
        path: PathBuf,
        /// How long it waited.
        after: Duration,
    },
}

/// How long [`AdminClient`] waits for the next frame unless told otherwise: every
/// one-answer command is answered well within it (a forwarded migration, the slowest, waits
/// at most the node's migration timeout plus a few seconds), and a drain sends progress
/// more often than that.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one node's admin socket.
#[derive(Debug)]
pub struct AdminClient {
    stream: UnixStream,
    path: PathBuf,
    /// Longest wait for the next frame; `None` waits as long as it takes (a `watch`).
    timeout: Option<Duration>,
}

impl AdminClient {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> Result<AdminClient, AdminClientError> {
        match UnixStream::connect(path).await {
            Ok(stream) => Ok(AdminClient {
                stream,
                path: path.to_owned(),
                timeout: Some(DEFAULT_TIMEOUT),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(AdminClientError::PermissionDenied {
                    path: path.to_owned(),
                })
            }
            Err(source) => Err(AdminClientError::NoDaemon {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Sets the longest wait for the next frame (`None`: no limit, for `watch` streams).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The socket path this client talks to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends a command; read its answers with [`AdminClient::next`].
    pub async fn send(&mut self, command: Command) -> Result<(), AdminClientError> {
        frame::write(
            &mut self.stream,
            &AdminRequest::new(command),
            MAX_REQUEST_BYTES,
        )
        .await?;
        Ok(())
    }

    /// The next response frame.
    pub async fn next(&mut self) -> Result<Response, AdminClientError> {
        let read = frame::read::<Response, _>(&mut self.stream, MAX_RESPONSE_BYTES);
        let frame = match self.timeout {
            None => read.await?,
            Some(after) => tokio::time::timeout(after, read).await.map_err(|_| {
                AdminClientError::Timeout {
                    path: self.path.clone(),
                    after,
                }
            })??,
        };
        frame.ok_or(AdminClientError::Closed)
    }

    /// Sends a command and returns its final answer (skipping intermediate frames).
    pub async fn call(&mut self, command: Command) -> Result<Response, AdminClientError> {
        self.send(command).await?;
        loop {
            let r = self.next().await?;
            if r.is_final() {
                return Ok(r);
            }
        }
    }
}
