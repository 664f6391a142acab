//! The console's IO: the terminal (raw mode, alternate screen, restored on every way out),
//! the log file, the admin connections, and the one loop that feeds the [`App`].
//!
//! Three admin connections: the watch (snapshot, then events; reopened with another key to
//! browse rows, and after the daemon restarts), one for the operator's actions, one for the
//! periodic listings, so a slow migration never stalls the clients list.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Stdout};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cloudmesh::admin::{AdminClient, AdminClientError, Command, Response};
use crossterm::event::{Event as TermEvent, EventStream};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use futures_core::Stream;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::app::App;
use super::requests::{Action, Poll};
use super::text::first_line;
use super::ui;
use crate::admin_cmds::AdminFailure;

/// How often the loop wakes with nothing else to do (ages, polls).
const TICK: Duration = Duration::from_millis(250);
/// First wait before reconnecting the watch; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long an action waits for its answer (a forwarded migration waits at most the node's
/// migration timeout, well within this).
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a listing waits for its answer.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// Watch frames taken in one go before drawing: a burst of events costs one frame.
const BATCH: usize = 512;

/// Set while the console owns the terminal: the panic hook restores it only then.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
/// Set by the panic hook: the loop stops (a task that panicked left the screen restored).
static PANICKED: AtomicBool = AtomicBool::new(false);

/// Runs the console on the daemon at `socket` until the operator quits.
///
/// Fails before touching the terminal when no daemon answers on `socket` (as an
/// [`AdminFailure`], so `cloudctl` exits 3 like the other verbs) or stdout is not a
/// terminal. Once running, a lost daemon is waited for, not an error.
pub async fn run(socket: PathBuf) -> anyhow::Result<()> {
    // Fail early and plainly for a wrong --socket, rather than inside a screen that waits.
    drop(
        AdminClient::connect(&socket)
            .await
            .map_err(AdminFailure::from)?,
    );
    if !io::stdout().is_terminal() {
        anyhow::bail!("cloudctl tui needs a terminal (stdout is not one)");
    }
    let log_path = init_log();
    tracing::info!(socket = %socket.display(), "console starting");
    let mut app = App::new(
        socket.display().to_string(),
        log_path.map(|p| p.display().to_string()),
    );
    let mut screen = Screen::take().context("setting up the terminal")?;
    let result = event_loop(&mut screen.terminal, &socket, &mut app).await;
    drop(screen);
    if let Err(e) = &result {
        tracing::error!("console stopped: {e:#}");
    } else {
        tracing::info!("console closed");
    }
    result
}

// ----- the terminal -----

type Term = Terminal<CrosstermBackend<Stdout>>;

/// The terminal while the console owns it; dropping it gives it back as it was.
struct Screen {
    terminal: Term,
}

impl Screen {
    fn take() -> io::Result<Screen> {
        install_panic_hook();
        enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        if let Err(e) = crossterm::execute!(io::stdout(), EnterAlternateScreen) {
            restore_terminal();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(mut terminal) => {
                let _ = terminal.clear();
                Ok(Screen { terminal })
            }
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves the alternate screen, shows the cursor and ends raw mode; once, whoever calls it
/// first (the screen's drop or the panic hook).
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = crossterm::execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
    }
}

/// A panic anywhere restores the terminal before the message is printed (so it is readable
/// and the shell works), and stops the loop.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            restore_terminal();
            tracing::error!("panic: {info}");
            previous(info);
        }));
    });
}

// ----- the log -----

/// Sends tracing to a file (never the screen): `$XDG_STATE_HOME/cloudmesh/cloudctl-tui.log`,
/// else `~/.local/state/cloudmesh/…`, else the temp directory. Returns its path; `None`
/// when no place would take it (then nothing is logged). Level from `CLOUDCTL_LOG`
/// (`RUST_LOG` syntax), info by default.
fn init_log() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        });
    let dirs = state
        .into_iter()
        .map(|d| d.join("cloudmesh"))
        .chain(std::iter::once(std::env::temp_dir().join("cloudmesh")));
    for dir in dirs {
        let path = dir.join("cloudctl-tui.log");
        if let Some(file) = open_log(&dir, &path) {
            let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUDCTL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .try_init();
            return Some(path);
        }
    }
    None
}

fn open_log(dir: &Path, path: &Path) -> Option<File> {
    std::fs::create_dir_all(dir).ok()?;
    OpenOptions::new().create(true).append(true).open(path).ok()
}

// ----- admin connections -----

/// What the watch task reports.
#[derive(Debug)]
enum WatchMsg {
    /// A frame of the watch.
    Frame(Box<Response>),
    /// The watch ended (or could not start); the task tries again after a pause.
    Lost(String),
}

/// A task aborted when its handle goes (the loop's tasks end with the loop).
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows the watch on `socket`, reconnecting with backoff for as long as the console runs.
/// Each message carries `generation`, so the loop can ignore a replaced watch's leftovers.
fn spawn_watch(
    socket: PathBuf,
    key: Option<String>,
    generation: u64,
    tx: mpsc::Sender<(u64, WatchMsg)>,
) -> Task {
    Task(tokio::spawn(async move {
        let mut delay = RETRY_FIRST;
        loop {
            let (reason, was_live) = watch_once(&socket, key.clone(), generation, &tx).await;
            tracing::info!(reason, "watch ended");
            if tx.send((generation, WatchMsg::Lost(reason))).await.is_err() {
                return;
            }
            if was_live {
                delay = RETRY_FIRST;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }))
}

/// One watch connection, until it ends: why it ended, and whether it got as far as a
/// snapshot.
async fn watch_once(
    socket: &Path,
    key: Option<String>,
    generation: u64,
    tx: &mpsc::Sender<(u64, WatchMsg)>,
) -> (String, bool) {
    let mut client = match AdminClient::connect(socket).await {
        Ok(c) => c,
        Err(e) => return (why(e), false),
    };
    // A watch streams for as long as the console runs; quiet spells are not failures.
    client.set_timeout(None);
    if let Err(e) = client.send(Command::Watch { key }).await {
        return (why(e), false);
    }
    let mut live = false;
    loop {
        match client.next().await {
            Ok(frame) => {
                live |= matches!(frame, Response::Snapshot(_));
                if tx
                    .send((generation, WatchMsg::Frame(Box::new(frame))))
                    .await
                    .is_err()
                {
                    return ("the console closed".to_owned(), live);
                }
            }
            Err(e) => return (why(e), live),
        }
    }
}

/// A lost watch in a few words (the status line names the socket already).
fn why(e: AdminClientError) -> String {
    match e {
        AdminClientError::NoDaemon { source, .. } => format!("no daemon: {source}"),
        AdminClientError::PermissionDenied { .. } => "permission denied".to_owned(),
        AdminClientError::Closed => "the daemon closed the connection".to_owned(),
        AdminClientError::Frame(e) => e.to_string(),
        AdminClientError::Timeout { after, .. } => {
            format!("no answer within {}", humantime::format_duration(after))
        }
    }
}

/// What a command was for, so its answer finds its way back.
#[derive(Debug)]
enum JobKind {
    Action(Action),
    Poll(Poll),
}

/// One command for a worker.
#[derive(Debug)]
struct Job {
    kind: JobKind,
    command: Command,
}

/// An answered job.
#[derive(Debug)]
struct Done {
    kind: JobKind,
    result: Result<Response, String>,
}

/// A connection that runs commands one at a time, in order, connecting when it needs to.
struct Worker {
    jobs: mpsc::Sender<Job>,
    _task: Task,
}

impl Worker {
    fn spawn(socket: PathBuf, done: mpsc::UnboundedSender<Done>, limit: Duration) -> Worker {
        let (jobs, mut rx) = mpsc::channel::<Job>(16);
        let task = tokio::spawn(async move {
            let mut conn: Option<AdminClient> = None;
            while let Some(job) = rx.recv().await {
                let result = ask(&socket, &mut conn, job.command, limit).await;
                if done
                    .send(Done {
                        kind: job.kind,
                        result,
                    })
                    .is_err()
                {
                    return;
                }
            }
        });
        Worker {
            jobs,
            _task: Task(task),
        }
    }

    /// Queues a job; gives it back when the queue is full.
    fn submit(&self, kind: JobKind, command: Command) -> Result<(), JobKind> {
        self.jobs
            .try_send(Job { kind, command })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j.kind,
            })
    }
}

/// Runs one command on the worker's connection. A kept connection that fails before
/// answering (the daemon restarted since) is replaced and the command tried once more.
async fn ask(
    socket: &Path,
    conn: &mut Option<AdminClient>,
    command: Command,
    limit: Duration,
) -> Result<Response, String> {
    let mut retried = false;
    loop {
        let reused = conn.is_some();
        let client = match conn {
            Some(c) => c,
            None => conn.insert(
                AdminClient::connect(socket)
                    .await
                    .map_err(|e| first_line(&e.to_string()).to_owned())?,
            ),
        };
        match tokio::time::timeout(limit, client.call(command.clone())).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => {
                *conn = None;
                if reused && !retried {
                    retried = true;
                    continue;
                }
                return Err(e.to_string());
            }
            Err(_) => {
                *conn = None;
                return Err(format!("no answer within {}s", limit.as_secs()));
            }
        }
    }
}

// ----- the loop -----

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The next terminal event (`None`: the terminal is gone).
async fn next_event(events: &mut EventStream) -> Option<io::Result<TermEvent>> {
    std::future::poll_fn(|cx| Pin::new(&mut *events).poll_next(cx)).await
}

/// A watch message for the app; stale generations are dropped.
fn on_watch(app: &mut App, current: u64, generation: u64, msg: WatchMsg) -> Option<Action> {
    if generation != current {
        return None;
    }
    match msg {
        WatchMsg::Frame(frame) => app.apply(*frame),
        WatchMsg::Lost(reason) => {
            app.watch_lost(&reason);
            None
        }
    }
}

async fn event_loop(terminal: &mut Term, socket: &Path, app: &mut App) -> anyhow::Result<()> {
    let mut events = EventStream::new();
    let (watch_tx, mut watch_rx) = mpsc::channel::<(u64, WatchMsg)>(1024);
    let mut generation = 0u64;
    // Replacing it drops (so aborts) the old watch.
    let mut _watch = spawn_watch(socket.to_owned(), None, generation, watch_tx.clone());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let actions = Worker::spawn(socket.to_owned(), done_tx.clone(), ACTION_TIMEOUT);
    let polls = Worker::spawn(socket.to_owned(), done_tx, POLL_TIMEOUT);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Raw mode turns Ctrl-C into a key; these are for signals sent from elsewhere.
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;

    loop {
        app.set_clock(now_ms());
        for poll in app.due_polls() {
            if let Err(JobKind::Poll(p)) = polls.submit(JobKind::Poll(poll.clone()), poll.command())
            {
                app.poll_done(p, Err("busy".to_owned()));
            }
        }
        terminal
            .draw(|frame| ui::draw(frame, app))
            .context("drawing")?;

        let action = tokio::select! {
            ev = next_event(&mut events) => match ev {
                Some(Ok(TermEvent::Key(key))) => app.handle_key(key),
                // A resize (or anything else) is handled by drawing again.
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => return Ok(()),
            },
            Some((g, msg)) = watch_rx.recv() => {
                let mut action = on_watch(app, generation, g, msg);
                let mut taken = 1;
                while action.is_none() && taken < BATCH {
                    match watch_rx.try_recv() {
                        Ok((g, msg)) => action = on_watch(app, generation, g, msg),
                        Err(_) => break,
                    }
                    taken += 1;
                }
                action
            },
            Some(done) = done_rx.recv() => {
                match done.kind {
                    JobKind::Action(a) => app.command_done(&a, done.result),
                    JobKind::Poll(p) => app.poll_done(p, done.result),
                }
                None
            },
            _ = tick.tick() => {
                if PANICKED.load(Ordering::SeqCst) {
                    anyhow::bail!("the console stopped after a panic (see the log)");
                }
                None
            },
            _ = sigterm.recv() => return Ok(()),
            _ = sighup.recv() => return Ok(()),
            _ = sigint.recv() => return Ok(()),
        };

        match action {
            None => {}
            Some(Action::Quit) => return Ok(()),
            Some(Action::Browse { key }) => {
                generation += 1;
                tracing::info!(?key, generation, "reopening the watch");
                _watch = spawn_watch(socket.to_owned(), key, generation, watch_tx.clone());
            }
            Some(action) => {
                if let Some(command) = action.command() {
                    if let Err(JobKind::Action(a)) =
                        actions.submit(JobKind::Action(action), command)
                    {
                        app.command_done(&a, Err("too many actions waiting; try again".to_owned()));
                    }
                }
            }
        }
    }
}
