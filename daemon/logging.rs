//! Log output: stderr always, plus daily-rotated files with `--log-dir`.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use cloudmesh::config::{LogFormat, LogSettings};

type BoxedLayer =
    Box<dyn Layer<tracing_subscriber::layer::Layered<EnvFilter, Registry>> + Send + Sync>;

/// The filter of `settings`, or why it does not parse (naming where it came from).
pub fn filter(settings: &LogSettings) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(&settings.filter).with_context(|| {
        format!(
            "invalid log filter {:?} (from {})",
            settings.filter, settings.filter_source
        )
    })
}

/// Installs the global subscriber. Keep the returned guard alive until exit: dropping it
/// flushes the file writer.
pub fn init(settings: &LogSettings, filter: EnvFilter) -> anyhow::Result<Option<WorkerGuard>> {
    let ansi = std::io::stderr().is_terminal();
    let mut layers: Vec<BoxedLayer> = vec![layer(settings.format, ansi, std::io::stderr)];
    let mut guard = None;
    if let Some(dir) = &settings.dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
        let appender = RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix("cloudd")
            .filename_suffix("log")
            .build(dir)
            .with_context(|| format!("cannot open a log file in {}", dir.display()))?;
        let (writer, g) = tracing_appender::non_blocking(appender);
        guard = Some(g);
        layers.push(layer(settings.format, false, writer));
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .try_init()
        .context("cannot install the log subscriber")?;
    Ok(guard)
}

fn layer<W>(format: LogFormat, ansi: bool, writer: W) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    }
}
