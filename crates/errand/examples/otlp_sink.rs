//! A minimal OTLP/HTTP receiver: accepts `POST /v1/traces` (protobuf), counts the spans and
//! drops them, and prints the totals when stopped (Ctrl-C or SIGTERM). For measuring what span
//! export costs without a collector:
//!
//! ```sh
//! cargo run --release -p errand --example otlp_sink -- 127.0.0.1:4318 &
//! target/release/errand bench --store sqlite --jobs 40000 --otlp-endpoint http://127.0.0.1:4318
//! ```

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
    bytes: AtomicU64,
}

async fn accept(State(counts): State<Arc<Counts>>, body: Bytes) -> StatusCode {
    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let spans: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts.spans.fetch_add(spans as u64, Ordering::Relaxed);
    StatusCode::OK
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".into());
    let counts = Arc::new(Counts::default());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(accept))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("otlp_sink listening on http://{}", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    println!(
        "{{\"requests\": {}, \"spans\": {}, \"bytes\": {}}}",
        counts.requests.load(Ordering::Relaxed),
        counts.spans.load(Ordering::Relaxed),
        counts.bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
