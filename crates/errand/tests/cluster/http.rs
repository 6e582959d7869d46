//! HTTP: submitting [`Record`] tasks over the API or through a client ([`Submitter`]), and
//! reading a task's Server-Sent Events ([`read_events`]).

use crate::cluster::binary::{Api, Backend, serve, token, worker_token};
use crate::cluster::proof_worker::Record;
use errand_core::{Client, SealKey, TaskId};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How a proof submits its [`Record`] tasks, each for one of its users and with 10 attempts.
#[derive(Clone)]
pub enum Submitter {
    /// Straight to the store, through the library's client, with [`Record::context`].
    Client {
        /// The client.
        client: Client,
        /// The users, each submitted for in turn.
        users: Arc<Vec<String>>,
    },
    /// `POST /v1/tasks` to the APIs in turn, each user with their own bearer token.
    Http {
        /// The HTTP client.
        http: reqwest::Client,
        /// The APIs' base URLs.
        apis: Arc<Vec<String>>,
        /// Each user and their token.
        users: Arc<Vec<(String, String)>>,
    },
}

impl Submitter {
    /// Through `client`, for `users` users named `user-<n>`.
    pub fn client(client: Client, users: usize) -> Self {
        Submitter::Client {
            client,
            users: Arc::new((0..users).map(|n| format!("user-{n}")).collect()),
        }
    }

    /// Over `apis` (who must know [`Record::task_type`]), for these users and tokens.
    pub fn http(apis: &[&Api], users: Vec<(String, String)>) -> Self {
        Submitter::Http {
            http: reqwest::Client::new(),
            apis: Arc::new(apis.iter().map(|a| a.base.clone()).collect()),
            users: Arc::new(users),
        }
    }

    /// Submits the `i`-th task, a [`Record`] run of `sleep_ms`; returns its id and user, or
    /// why the submission was refused (the store or an API unreachable).
    pub async fn submit(&self, i: usize, sleep_ms: u64) -> Result<(TaskId, String), String> {
        match self {
            Submitter::Client { client, users } => {
                let user = &users[i % users.len()];
                let enqueued = client
                    .submit(Record::new(user, sleep_ms))
                    .context(Record::context(user))
                    // Each kill or outage may spend an attempt of what the workers held.
                    .max_attempts(10)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((enqueued.id, user.clone()))
            }
            Submitter::Http { http, apis, users } => {
                let (user, token) = &users[i % users.len()];
                let api = &apis[i % apis.len()];
                let response = http
                    .post(format!("{api}/v1/tasks"))
                    .bearer_auth(token)
                    .json(&Record::submission(user, token, sleep_ms))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let body: Value = response.json().await.map_err(|e| e.to_string())?;
                if status != StatusCode::ACCEPTED {
                    return Err(format!("{status}: {body}"));
                }
                let id = serde_json::from_value(body["id"].clone())
                    .map_err(|e| format!("no task id in {body}: {e}"))?;
                Ok((id, user.clone()))
            }
        }
    }
}

/// Tells the API at `api` of [`Record`] as a remote task type (with a worker's `token`), so
/// that it takes [`Submitter::Http`]'s submissions; every API of the deployment then knows it.
pub async fn register_record_type(api: &Api, token: &str) {
    let response = reqwest::Client::new()
        .put(api.url("/v1/worker/task-types"))
        .bearer_auth(token)
        .json(&Record::task_type())
        .send()
        .await
        .expect("PUT /v1/worker/task-types");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "registering the task type: {body}");
}

/// Reads a task's Server-Sent Events until a final state, the stream's end, or `within`;
/// returns the `status` events' records.
pub async fn read_events(response: reqwest::Response, within: Duration) -> Vec<Value> {
    let mut records = Vec::new();
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => panic!("the event stream failed: {e}"),
            Ok(None) | Err(_) => return records,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = Some(name.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if event.as_deref() == Some("status") {
                let record: Value = serde_json::from_str(&data).expect("an event's record");
                let last = matches!(
                    record["status"].as_str(),
                    Some("success" | "failed" | "cancelled")
                );
                records.push(record);
                if last {
                    return records;
                }
            }
        }
    }
}

/// `apis` API processes on `backend` sealing with `key`, told of the proofs' task type, and
/// a bearer token for each of `users` users (`user-<n>`).
pub async fn apis_and_users(
    apis: usize,
    users: usize,
    backend: &Backend,
    key: &SealKey,
    dir: &Path,
) -> (Vec<Api>, Vec<(String, String)>) {
    let data = dir.join("data");
    let mut started = Vec::new();
    // The first generates the shared token secret in `data`; the others read it.
    for n in 0..apis {
        let name = format!("api-{}", char::from(b'a' + n as u8));
        started.push(serve(&name, backend, Some(key), dir, &data).await);
    }
    register_record_type(&started[0], &worker_token(&data, "proofs")).await;
    let users = (0..users)
        .map(|n| {
            let user = format!("user-{n}");
            let token = token(&data, &user);
            (user, token)
        })
        .collect();
    (started, users)
}
