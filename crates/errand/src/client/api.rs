//! [`ApiClient`]: a small client of errand's HTTP API, for the CLI's client commands.

use anyhow::{Context as _, anyhow};
use errand_core::TaskRecord;
use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// A client of one errand server, as one user (its bearer token).
#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// An error answer of the API: `{error: {code, message}}` with its status.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message} ({code})")]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// errand's error code.
    pub code: String,
    /// errand's message.
    pub message: String,
}

/// The answer to a submission.
#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    /// The task's id.
    pub id: String,
    /// Its state.
    pub status: String,
    /// Where to read its record.
    pub status_url: String,
    /// Where to follow its events.
    pub events_url: String,
    /// Whether an existing task with the same key was returned.
    #[serde(default)]
    pub deduplicated: bool,
}

/// One page of the caller's tasks.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskPage {
    /// Records, newest first.
    pub items: Vec<TaskRecord>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

impl ApiClient {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// The same server, as another user.
    pub fn with_token(&self, token: String) -> Self {
        Self {
            token: Some(token),
            ..self.clone()
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r
    }

    async fn send<T: DeserializeOwned>(&self, r: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let response = r
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the errand server at {}: {e}", self.base))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer from {}", self.base))?;
        if !status.is_success() {
            return Err(failure(status, &body).into());
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("the server's answer is not what errand sends ({status})"))
    }

    /// `POST /v1/tasks`.
    pub async fn submit(&self, body: &Value) -> anyhow::Result<Submitted> {
        self.send(self.request(Method::POST, "/v1/tasks").json(body))
            .await
    }

    /// `GET /v1/tasks/{id}`.
    pub async fn get(&self, id: &str) -> anyhow::Result<TaskRecord> {
        self.send(self.request(Method::GET, &format!("/v1/tasks/{id}")))
            .await
    }

    /// `GET /v1/tasks/{id}` as raw JSON (the one shape everywhere, printed as is).
    pub async fn get_json(&self, id: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, &format!("/v1/tasks/{id}")))
            .await
    }

    /// `GET /v1/tasks`.
    pub async fn list(
        &self,
        status: Option<&str>,
        name: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> anyhow::Result<TaskPage> {
        let mut query: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        query.extend(status.map(|s| ("status", s.to_string())));
        query.extend(name.map(|n| ("name", n.to_string())));
        query.extend(cursor.map(|c| ("cursor", c.to_string())));
        self.send(self.request(Method::GET, "/v1/tasks").query(&query))
            .await
    }

    /// `POST /v1/tasks/{id}/cancel` or `/retry`.
    pub async fn act(&self, id: &str, action: &str) -> anyhow::Result<TaskRecord> {
        self.send(self.request(Method::POST, &format!("/v1/tasks/{id}/{action}")))
            .await
    }

    /// `GET /v1/search?q=`.
    pub async fn search(&self, q: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, "/v1/search").query(&[("q", q)]))
            .await
    }

    /// `GET /v1/conversations/{session_id}`.
    pub async fn conversation(&self, session_id: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, &format!("/v1/conversations/{session_id}")))
            .await
    }

    /// The status code of `GET path` (for isolation checks).
    pub async fn status_of(&self, path: &str) -> anyhow::Result<StatusCode> {
        let r = self
            .request(Method::GET, path)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the errand server at {}: {e}", self.base))?;
        Ok(r.status())
    }

    /// `GET /v1/tasks/{id}/events`: the task's record after each change, until a final state.
    pub async fn events(
        &self,
        id: &str,
    ) -> anyhow::Result<impl Stream<Item = anyhow::Result<TaskRecord>> + use<>> {
        let response = self
            .request(Method::GET, &format!("/v1/tasks/{id}/events"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the errand server at {}: {e}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(failure(status, &body).into());
        }
        let state = (response.bytes_stream().boxed(), Vec::<u8>::new(), false);
        Ok(futures::stream::unfold(
            state,
            |(mut bytes, mut buf, broken)| async move {
                if broken {
                    return None;
                }
                loop {
                    // One event ends at a blank line; its `data:` lines hold the record.
                    if let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                        let event: Vec<u8> = buf.drain(..end + 2).collect();
                        let text = String::from_utf8_lossy(&event);
                        let data: Vec<&str> = text
                            .lines()
                            .filter_map(|l| l.strip_prefix("data:"))
                            .map(|d| d.strip_prefix(' ').unwrap_or(d))
                            .collect();
                        if data.is_empty() {
                            continue; // a keep-alive comment
                        }
                        let parsed = serde_json::from_str::<TaskRecord>(&data.join("\n"))
                            .context("an event is not a task record");
                        return Some((parsed, (bytes, buf, false)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            let err = Err(anyhow!("the event stream broke: {e}"));
                            return Some((err, (bytes, buf, true)));
                        }
                        None => return None,
                    }
                }
            },
        ))
    }
}

fn failure(status: StatusCode, body: &[u8]) -> ApiFailure {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        code: String,
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => ApiFailure {
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ApiFailure {
            status,
            code: "unexpected".into(),
            message: String::from_utf8_lossy(body).chars().take(200).collect(),
        },
    }
}
