//! Log output: pretty lines for people (coloured on a terminal), JSON lines for machines. In
//! JSON, each line lists every span it is in (`spans`), so a line logged inside a task's own
//! span still carries the task's `task_id`, `user_id`, `tenant`, `correlation_id` and `attempt`.
//! With a tracer (span export is on, see `telemetry`), an OpenTelemetry layer turns spans into
//! OpenTelemetry spans; without one no such layer exists. Each output has its own filter: the
//! log filter (`--log`) decides what is written, and spans are exported at `info` and above
//! whatever it says, so `--log warn` quiets the logs without emptying the traces.

use crate::settings::LogFormat;
use opentelemetry_sdk::trace::Tracer;
use std::io::IsTerminal;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber, writing to stderr (stdout stays for command output), and
/// recording spans with `tracer` when there is one.
pub fn init(format: LogFormat, filter: &str, tracer: Option<Tracer>) -> anyhow::Result<()> {
    // Colours for a person at a terminal only: a file or a log collector gets plain text.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    subscriber(format, filter, ansi, std::io::stderr, tracer)?
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// The subscriber `init` installs, writing to `writer`.
fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    ansi: bool,
    writer: W,
    tracer: Option<Tracer>,
) -> anyhow::Result<Box<dyn Subscriber + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid log filter {filter:?}: {e}"))?;
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    let spans = otel(tracer).map(|layer| layer.with_filter(LevelFilter::INFO));
    let registry = tracing_subscriber::registry().with(spans);
    Ok(match format {
        LogFormat::Pretty => Box::new(registry.with(lines.with_filter(filter))),
        LogFormat::Json => Box::new(
            registry.with(
                lines
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_filter(filter),
            ),
        ),
    })
}

/// The OpenTelemetry layer, when there is a tracer (`None` is no layer at all). It leaves out
/// what costs on every span or poll and tells little here: source locations (always errand's
/// own), threads, busy/idle times, and the OpenTelemetry context made current on each poll
/// (errand reads a span's context from the span itself).
fn otel<S>(tracer: Option<Tracer>) -> Option<OpenTelemetryLayer<S, Tracer>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn json_lines_inside_nested_spans_carry_the_task_fields() {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let writer = move || SinkWriter(sink.clone());
        let subscriber =
            subscriber(LogFormat::Json, "info", false, writer, None).expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            let task = tracing::info_span!("task", task_id = "t-1", user_id = "alice", attempt = 2);
            let _task = task.enter();
            let inner = tracing::info_span!("fetch", url = "x");
            let _inner = inner.enter();
            tracing::info!("inner line");
        });
        let text = String::from_utf8(buffer.lock().expect("lock").clone()).expect("utf-8");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        let spans = line["spans"].as_array().expect("the span list");
        assert_eq!(spans[0]["user_id"], "alice");
        assert_eq!(spans[0]["task_id"], "t-1");
        assert_eq!(line["span"]["name"], "fetch");
    }

    struct SinkWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
