//! Span export over OTLP/HTTP (protobuf), when an endpoint is configured (`--otlp-endpoint`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, or `otlp_endpoint` in the config file). Without one nothing
//! here runs and no OpenTelemetry layer is installed.
//!
//! Spans are batched (the SDK's `OTEL_BSP_*` variables tune the batches) and sent to
//! `<endpoint>/v1/traces` with the headers of `OTEL_EXPORTER_OTLP_HEADERS`; `service.name` is
//! `errand` unless `OTEL_SERVICE_NAME` says otherwise. The requests go through the process's
//! own reqwest client on its tokio runtime (the SDK's batch thread hands each one over), and
//! [`Telemetry::shutdown`] sends what is left before the process exits.

use anyhow::Context as _;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider, Tracer};
use std::time::Duration;

/// `service.name` unless `OTEL_SERVICE_NAME` is set.
pub const SERVICE_NAME: &str = "errand";
/// How long one export may take (the OTLP default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the last export may take at exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The installed exporter; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Starts exporting to `endpoint` (a base URL: spans go to `<endpoint>/v1/traces`), with
    /// requests sent on `runtime`.
    pub fn start(endpoint: &str, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let url = traces_url(endpoint)?;
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .context("cannot build the OTLP HTTP client")?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(RuntimeClient { http, runtime })
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .context("cannot build the OTLP span exporter")?;
        let service = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| SERVICE_NAME.into());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(AttemptIds::default())
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        Ok(Self { provider })
    }

    /// The tracer of errand's spans.
    pub fn tracer(&self) -> Tracer {
        self.provider.tracer("errand")
    }

    /// Sends the spans not yet sent, then stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            eprintln!("errand: the last spans could not be exported: {e}");
        }
    }
}

/// `<endpoint>/v1/traces`, for an http(s) base URL.
fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let base = endpoint.trim().trim_end_matches('/');
    let parsed: reqwest::Url = base
        .parse()
        .with_context(|| format!("invalid OTLP endpoint {endpoint:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        anyhow::bail!("the OTLP endpoint {endpoint:?} must be an http:// or https:// URL");
    }
    Ok(format!("{base}/v1/traces"))
}

/// The SDK's random ids, except for the attempt spans whose ids errand derives (see
/// `errand_core::otel`): the id pinned for the span being started wins.
#[derive(Debug, Default)]
struct AttemptIds(RandomIdGenerator);

impl IdGenerator for AttemptIds {
    fn new_trace_id(&self) -> TraceId {
        errand_core::otel::take_pinned_trace_id().unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        errand_core::otel::take_pinned_span_id().unwrap_or_else(|| self.0.new_span_id())
    }
}

/// The process's reqwest client, driven on its tokio runtime: the SDK exports from a thread of
/// its own, outside the runtime, and reqwest needs one.
#[derive(Debug)]
struct RuntimeClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for RuntimeClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let response = http.execute(reqwest::Request::try_from(request)?).await?;
            let mut answer = Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            Ok::<_, HttpError>(answer.body(response.bytes().await?)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_to_the_base_url() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").expect("valid"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://api.honeycomb.io/").expect("valid"),
            "https://api.honeycomb.io/v1/traces"
        );
        assert!(traces_url("127.0.0.1:4318").is_err());
        assert!(traces_url("ftp://example.com").is_err());
    }

    #[test]
    fn ids_are_random_without_a_pin() {
        let ids = AttemptIds::default();
        assert_ne!(ids.new_span_id(), SpanId::INVALID);
        assert_ne!(ids.new_trace_id(), TraceId::INVALID);
    }
}
