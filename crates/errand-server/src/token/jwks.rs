//! An identity provider's keys, fetched from its JWKS URL and cached.
//!
//! The first token that needs them waits for the first fetch. After that the cached keys are
//! used, and fetched again when a token names a key id they do not have (the provider may have
//! rotated its keys), or when they are older than the maximum age (refreshed in the background
//! while the cached keys keep serving). Every fetch, whatever its cause, starts at least the
//! refetch interval after the previous attempt, so a flood of tokens with made-up key ids costs
//! the provider at most one request per interval. A failed fetch keeps the cached keys and logs
//! a warning.

use super::keys::{Key, parse_jwks};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// How long one fetch of the JWKS may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest JWKS document read; real ones are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// `url` as a JWKS URL: absolute, `http` or `https`, with a host.
pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host().is_none() {
        return Err("it must be an http:// or https:// URL with a host".into());
    }
    Ok(parsed)
}

/// A JWKS URL and its cached keys.
pub(crate) struct RemoteJwks {
    url: reqwest::Url,
    client: reqwest::Client,
    refetch_interval: Duration,
    max_age: Duration,
    state: RwLock<Cached>,
    /// Held while fetching, so concurrent callers share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cached {
    keys: Arc<[Key]>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch last started, successful or not.
    attempted_at: Option<Instant>,
    /// Whether the last fetch failed (it is logged where it fails).
    failing: bool,
}

impl RemoteJwks {
    /// A JWKS source for `url` (not fetched yet). Fails only when the HTTP client cannot be
    /// built (no TLS roots at all, for instance).
    pub fn new(
        url: reqwest::Url,
        refetch_interval: Duration,
        max_age: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("errand/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build its HTTP client: {e}"))?;
        Ok(Self {
            url,
            client,
            refetch_interval,
            max_age,
            state: RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The cached keys. The first call waits for the first fetch; once the keys are older
    /// than the maximum age, a background refresh starts (if the refetch interval allows) and
    /// the cached keys are returned meanwhile.
    pub async fn keys(self: &Arc<Self>) -> Arc<[Key]> {
        let (keys, fetched_at, attempted_at) = self.snapshot();
        match fetched_at {
            None => {
                self.refresh(attempted_at).await;
                self.snapshot().0
            }
            Some(at) if at.elapsed() >= self.max_age && self.due(attempted_at) => {
                let this = Arc::clone(self);
                tokio::spawn(async move { this.refresh(attempted_at).await });
                keys
            }
            Some(_) => keys,
        }
    }

    /// Fetches the keys again because a token named a key id they lack, if the refetch
    /// interval allows, and returns them (fetched or not).
    pub async fn refetch(&self) -> Arc<[Key]> {
        let (_, _, attempted_at) = self.snapshot();
        self.refresh(attempted_at).await;
        self.snapshot().0
    }

    /// Whether the last fetch failed: the cached keys may then lack a key the provider has.
    pub fn failing(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .failing
    }

    fn snapshot(&self) -> (Arc<[Key]>, Option<Instant>, Option<Instant>) {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        (
            Arc::clone(&state.keys),
            state.fetched_at,
            state.attempted_at,
        )
    }

    /// Whether a fetch may start, the last one having started at `attempted_at`.
    fn due(&self, attempted_at: Option<Instant>) -> bool {
        attempted_at.is_none_or(|at| at.elapsed() >= self.refetch_interval)
    }

    /// Fetches the keys, unless the refetch interval forbids it or another caller fetched
    /// since `seen` (the attempt time this caller saw before deciding to fetch).
    async fn refresh(&self, seen: Option<Instant>) {
        if !self.due(seen) {
            return;
        }
        let _fetching = self.fetching.lock().await;
        if self.snapshot().2 != seen {
            return;
        }
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .attempted_at = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "fetched the JWKS");
                let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                state.keys = keys.into();
                state.fetched_at = Some(Instant::now());
                state.failing = false;
            }
            Err(error) => {
                self.state
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .failing = true;
                let cached = self.snapshot().0.len();
                tracing::warn!(
                    url = %self.url,
                    %error,
                    cached_keys = cached,
                    "cannot fetch the identity provider's keys (JWKS); the cached keys stay in use"
                );
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "the answer is larger than {MAX_DOCUMENT_BYTES} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body).map_err(|why| format!("the answer is not a usable JWKS: {why}"))
    }
}
