//! The serving side of the admin socket: a Unix socket only the daemon's user can use
//! (mode 0600, in a 0700 directory when cloudd creates it), guarded by a lock file so a
//! stale socket left by a killed daemon is replaced, while a second daemon on the same path
//! is refused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use super::frame::{self, FrameError};
use super::protocol::{
    AdminError, AdminRequest, Command, Response, ADMIN_PROTOCOL_MIN_VERSION,
    ADMIN_PROTOCOL_VERSION, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
};

/// What runs the commands the socket receives: the node (`cloudmesh::node::AdminHandle`), or
/// anything else that answers them (a test double). Defined here so the socket depends on
/// no layer above it.
pub trait CommandRunner: Clone + Send + Sync + 'static {
    /// Runs `command`. Its response frames arrive on the receiver; the last one is final
    /// ([`Response::is_final`]), except for `watch`, which streams until the receiver is
    /// dropped. Dropping the receiver early stops waiting, never the operation.
    fn execute(&self, command: Command) -> mpsc::Receiver<Response>;
}

/// Admin connections served at once, so a local flood cannot exhaust the daemon's tasks
/// or file descriptors.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection that sends no request for this long is closed (one running a command or
/// a `watch` is not idle).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a newcomer waits for an evicted connection to free its slot.
const EVICT_WAIT: Duration = Duration::from_secs(5);

/// Why the admin socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    /// Another running daemon holds the lock for this path.
    #[error("another cloudd already serves the admin socket {} (its lock {} is held); stop it, or give this one another path with --admin-socket", path.display(), lock.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Something that is not a socket is in the way.
    #[error("{} exists and is not a socket; remove it or choose another path with --admin-socket", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Creating the directory, lock or socket failed.
    #[error("cannot create the admin socket {}: {source} (choose another path with --admin-socket)", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound admin socket. Dropping it removes the socket file.
#[derive(Debug)]
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
    /// Held (locked) for as long as this daemon serves the path.
    _lock: File,
}

/// The lock file guarding `socket`.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut s = socket.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl AdminSocket {
    /// Takes the lock for `path`, replaces a stale socket there, and listens (mode 0600).
    pub fn bind(path: &Path) -> Result<AdminSocket, AdminSocketError> {
        let io = |source| AdminSocketError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
        }
        let lock = lock_path(path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AdminSocketError::InUse {
                    path: path.to_owned(),
                    lock,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // With the lock held, whatever socket is there belongs to a daemon that is gone.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                tracing::info!(path = %path.display(), "replacing a stale admin socket");
                std::fs::remove_file(path).map_err(io)?;
            }
            Ok(_) => {
                return Err(AdminSocketError::NotASocket {
                    path: path.to_owned(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let listener = UnixListener::bind(path).map_err(io)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        Ok(AdminSocket {
            listener,
            path: path.to_owned(),
            _lock: file,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves admin connections until `shutdown` turns true.
    ///
    /// At most [`MAX_CONNECTIONS`] are served at once, and each is closed after
    /// [`IDLE_TIMEOUT`] without a request. When every slot is taken, a newcomer takes the
    /// slot of the connection idle the longest (one running a command or a `watch` is not
    /// idle), so idle or hostile local clients cannot lock an operator out; only when all
    /// are busy is it told to try again.
    pub async fn serve(self, node: impl CommandRunner, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Slots::new(MAX_CONNECTIONS));
        tracing::info!(path = %self.path.display(), "admin socket serving");
        loop {
            let stream = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin socket accept failed");
                        continue;
                    }
                },
            };
            let node = node.clone();
            let shutdown = shutdown.clone();
            let slots = slots.clone();
            tokio::spawn(async move {
                let Some(slot) = slots.take().await else {
                    let mut stream = stream;
                    let busy = Response::Error(AdminError::Failed {
                        reason: format!(
                            "the admin socket is busy: {MAX_CONNECTIONS} connections are running commands; try again"
                        ),
                    });
                    let _ = tokio::time::timeout(
                        EVICT_WAIT,
                        frame::write(&mut stream, &busy, MAX_RESPONSE_BYTES),
                    )
                    .await;
                    return;
                };
                serve_connection(stream, node, shutdown, slot).await;
            });
        }
    }
}

/// The admin connections being served, and which of them wait idle for a request.
#[derive(Debug)]
struct Slots {
    /// One permit per connection served.
    permits: Arc<Semaphore>,
    /// Each served connection's state, by a number of its own.
    conns: Mutex<HashMap<u64, SlotState>>,
    /// The next connection's number.
    next: AtomicU64,
}

#[derive(Debug)]
struct SlotState {
    /// Since when it waits for a request; `None` while a command runs.
    idle_since: Option<Instant>,
    /// Told to close so a newcomer can have the slot.
    evict: Arc<Notify>,
}

/// A served connection's slot; dropping it frees the slot.
#[derive(Debug)]
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(max)),
            conns: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u64, SlotState>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, else the one of the connection idle the
    /// longest (which is told to close); `None` when every connection is busy.
    async fn take(self: &Arc<Self>) -> Option<Slot> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                {
                    // Chosen and marked under one lock, so newcomers arriving together pick
                    // different connections.
                    let mut conns = self.conns();
                    let victim = conns
                        .values_mut()
                        .filter(|c| c.idle_since.is_some())
                        .min_by_key(|c| c.idle_since)?;
                    victim.idle_since = None;
                    victim.evict.notify_one();
                }
                tokio::time::timeout(EVICT_WAIT, self.permits.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?
            }
        };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.conns().insert(
            id,
            SlotState {
                idle_since: Some(Instant::now()),
                evict: evict.clone(),
            },
        );
        Some(Slot {
            slots: self.clone(),
            id,
            evict,
            _permit: permit,
        })
    }
}

impl Slot {
    /// Marks the connection idle (waiting for a request) or busy (running one).
    fn idle(&self, idle: bool) {
        if let Some(c) = self.slots.conns().get_mut(&self.id) {
            c.idle_since = idle.then(Instant::now);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.conns().remove(&self.id);
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        // Still holding the lock: the file is ours to remove.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A request as the connection's reader saw it: a command, or why not (and whether the
/// connection can go on after that).
type Incoming = Result<Command, (AdminError, bool)>;

/// Answers one connection's requests in order until it closes. A reader task takes
/// requests off the socket (so a client may send the next one before the answer to the
/// last), and this loop answers them one at a time; a client that hangs up ends the
/// connection at the next answer it cannot be sent.
async fn serve_connection(
    stream: UnixStream,
    node: impl CommandRunner,
    mut shutdown: watch::Receiver<bool>,
    slot: Slot,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (requests, mut incoming) = mpsc::channel::<Incoming>(4);
    let reader = tokio::spawn(async move {
        loop {
            let item = match frame::read_raw(&mut rd, MAX_REQUEST_BYTES).await {
                Ok(None) => return,
                Ok(Some(body)) => parse(&body).map_err(|e| (e, false)),
                // The rest of an oversize frame is never read: answer, then hang up.
                Err(FrameError::TooLarge { size, max }) => {
                    Err((AdminError::TooLarge { size, max }, true))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "admin connection ended");
                    return;
                }
            };
            let fatal = matches!(item, Err((_, true)));
            if requests.send(item).await.is_err() || fatal {
                return;
            }
        }
    });
    loop {
        slot.idle(true);
        let next = tokio::select! {
            _ = shutdown.changed() => break,
            r = incoming.recv() => r,
            () = tokio::time::sleep(IDLE_TIMEOUT) => {
                tracing::debug!("closing an idle admin connection");
                break;
            }
            () = slot.evict.notified() => {
                tracing::debug!("closing the longest idle admin connection for a newcomer");
                break;
            }
        };
        slot.idle(false);
        let command = match next {
            None => break,
            Some(Ok(command)) => command,
            Some(Err((e, fatal))) => {
                tracing::info!(error = %e, "admin request refused");
                if send(&mut wr, &Response::Error(e)).await.is_err() || fatal {
                    break;
                }
                continue;
            }
        };
        let mut answers = node.execute(command);
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => {
                    reader.abort();
                    return;
                }
                r = answers.recv() => r,
            };
            let Some(response) = next else { break };
            let last = response.is_final();
            if send(&mut wr, &response).await.is_err() {
                reader.abort();
                return;
            }
            if last {
                break;
            }
        }
    }
    reader.abort();
}

/// The command in a request body, or why it is refused.
fn parse(body: &[u8]) -> Result<Command, AdminError> {
    // The version is read first on its own, so a newer client gets "unsupported version"
    // rather than a parse error about a command this node does not know.
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u16,
    }
    let v: Versioned = serde_json::from_slice(body).map_err(|e| AdminError::BadRequest {
        reason: e.to_string(),
    })?;
    if !(ADMIN_PROTOCOL_MIN_VERSION..=ADMIN_PROTOCOL_VERSION).contains(&v.version) {
        return Err(AdminError::UnsupportedVersion {
            requested: v.version,
            supported: ADMIN_PROTOCOL_VERSION,
        });
    }
    let r: AdminRequest = serde_json::from_slice(body).map_err(|e| AdminError::BadRequest {
        reason: e.to_string(),
    })?;
    Ok(r.command)
}

async fn send(stream: &mut OwnedWriteHalf, response: &Response) -> Result<(), FrameError> {
    match frame::write(stream, response, MAX_RESPONSE_BYTES).await {
        Err(FrameError::TooLarge { size, max }) => {
            let e = AdminError::Failed {
                reason: format!("the answer ({size} bytes) is over the {max} byte frame limit; narrow the query"),
            };
            frame::write(stream, &Response::Error(e), MAX_RESPONSE_BYTES).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_before_commands() {
        let e = parse(br#"{"version":9,"command":{"cmd":"teleport"}}"#).expect_err("refused");
        assert_eq!(
            e,
            AdminError::UnsupportedVersion {
                requested: 9,
                supported: ADMIN_PROTOCOL_VERSION
            }
        );
        let e = parse(br#"{"version":0,"command":{"cmd":"status"}}"#).expect_err("refused");
        assert!(
            matches!(e, AdminError::UnsupportedVersion { requested: 0, .. }),
            "{e:?}"
        );
        assert_eq!(
            parse(br#"{"version":2,"command":{"cmd":"keys","primary":"p","query":{"where":"a = 1"}}}"#)
                .map(|c| matches!(c, Command::Keys { query: Some(_), .. })),
            Ok(true)
        );
        let e = parse(br#"{"version":1,"command":{"cmd":"teleport"}}"#).expect_err("refused");
        assert!(matches!(e, AdminError::BadRequest { .. }), "{e:?}");
        let e = parse(b"\xff\x00").expect_err("refused");
        assert!(matches!(e, AdminError::BadRequest { .. }), "{e:?}");
        assert_eq!(
            parse(br#"{"version":1,"command":{"cmd":"status"}}"#),
            Ok(Command::Status)
        );
    }
}
