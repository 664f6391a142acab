//! The asking side of the admin socket, for `cloudctl` and the console.

use std::path::{Path, PathBuf};

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
}

/// A connection to one node's admin socket.
#[derive(Debug)]
pub struct AdminClient {
    stream: UnixStream,
    path: PathBuf,
}

impl AdminClient {
    /// Connects to the socket at `path`.
    pub async fn connect(path: &Path) -> Result<AdminClient, AdminClientError> {
        match UnixStream::connect(path).await {
            Ok(stream) => Ok(AdminClient {
                stream,
                path: path.to_owned(),
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
        match frame::read::<Response, _>(&mut self.stream, MAX_RESPONSE_BYTES).await? {
            Some(r) => Ok(r),
            None => Err(AdminClientError::Closed),
        }
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
