//! `errand check`: proves, against a running server, that background work keeps its user.
//!
//! For each test it submits reference work as the given user, then checks three things: the
//! task's status names that user as its owner; the work's results are attributed to that user
//! (search finds the document, the conversation holds the messages); and a second user can see
//! none of it (404 on the task, no search hit, 404 on the conversation).

use super::api::{ApiClient, ApiFailure};
use crate::auth::TokenClaimArgs;
use errand_core::TaskRecord;
use reqwest::StatusCode;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Which checks to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckTest {
    /// Conversation persistence (persist_conversation).
    Chat,
    /// Document ingestion (ingest_document) and search.
    Document,
    /// Both.
    All,
}

/// Checks that background work keeps the user's identity, on a live server.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The user to submit as.
    #[arg(long, value_name = "USER")]
    pub user_id: String,
    /// The user's tenant.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Which test to run.
    #[arg(long, value_enum, default_value = "all")]
    pub test: CheckTest,
    /// The second user, who must see nothing [default: <USER>-intruder].
    #[arg(long, value_name = "USER")]
    pub other_user_id: Option<String>,
    #[command(flatten)]
    pub claims: TokenClaimArgs,
    /// How long to wait for each task.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// The outcome of one test: every check, in order, with whether it held.
struct Report {
    name: &'static str,
    checks: Vec<(bool, String)>,
}

impl Report {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            checks: Vec::new(),
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) -> bool {
        let what = what.into();
        println!("  {} {what}", if ok { "✔" } else { "✖" });
        self.checks.push((ok, what));
        ok
    }

    fn fail(&mut self, what: impl Into<String>) {
        self.check(false, what);
    }

    fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|(ok, _)| *ok)
    }
}

/// Runs the checks; `user` and `other` are clients of the same server as the two users.
pub async fn run(user: &ApiClient, other: &ApiClient, base: &str, args: &CheckArgs) -> ExitCode {
    let other_id = other_user(args);
    let line = "=".repeat(60);
    println!("{line}\nerrand check: background work keeps the user's identity\n{line}");
    println!("Server:     {base}");
    println!("User ID:    {}", args.user_id);
    println!("Other user: {other_id}");
    println!(
        "Test:       {}\n",
        match args.test {
            CheckTest::Chat => "chat",
            CheckTest::Document => "document",
            CheckTest::All => "all",
        }
    );
    let mut reports = Vec::new();
    let mut n = 0;
    if matches!(args.test, CheckTest::Chat | CheckTest::All) {
        n += 1;
        println!(
            "Test {n}: chat persistence (persist_conversation)\n{}",
            "-".repeat(60)
        );
        let mut r = Report::new("chat");
        chat(user, other, args, &mut r).await;
        reports.push(r);
        println!();
    }
    if matches!(args.test, CheckTest::Document | CheckTest::All) {
        n += 1;
        println!(
            "Test {n}: document ingestion (ingest_document)\n{}",
            "-".repeat(60)
        );
        let mut r = Report::new("document");
        document(user, other, args, &mut r).await;
        reports.push(r);
        println!();
    }
    println!("{line}\nSummary\n{line}");
    for r in &reports {
        println!(
            "{} {}: {}",
            if r.passed() { "✅" } else { "❌" },
            r.name,
            if r.passed() { "PASSED" } else { "FAILED" }
        );
    }
    if reports.iter().all(Report::passed) {
        println!("\nAll tests passed.");
        ExitCode::SUCCESS
    } else {
        println!("\nSome tests FAILED.");
        ExitCode::FAILURE
    }
}

/// The second user's id.
pub fn other_user(args: &CheckArgs) -> String {
    args.other_user_id
        .clone()
        .unwrap_or_else(|| format!("{}-intruder", args.user_id))
}

/// Submits, then follows the task to a final state (polling its status URL).
async fn submit_and_wait(
    client: &ApiClient,
    body: serde_json::Value,
    timeout: Duration,
    r: &mut Report,
) -> Option<TaskRecord> {
    let submitted = match client.submit(&body).await {
        Ok(s) => s,
        Err(e) => {
            r.fail(format!("submit failed: {e:#}"));
            return None;
        }
    };
    r.check(
        true,
        format!("submitted task {} ({})", submitted.id, submitted.status),
    );
    let deadline = Instant::now() + timeout;
    loop {
        match client.get(&submitted.id).await {
            Ok(rec) if rec.status.is_terminal() => return Some(rec),
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(rec) => {
                r.fail(format!("task still {} after {timeout:?}", rec.status));
                return None;
            }
            Err(e) => {
                r.fail(format!("reading the task's status failed: {e:#}"));
                return None;
            }
        }
    }
}

/// Checks the record: success, owned by the user.
fn check_record(rec: &TaskRecord, args: &CheckArgs, r: &mut Report) -> bool {
    let ok = r.check(
        rec.status == errand_core::TaskState::Success,
        format!(
            "task finished: {}{}",
            rec.status,
            rec.error
                .as_ref()
                .map(|e| format!(" ({})", e.message))
                .unwrap_or_default()
        ),
    );
    let owner = rec.owner.user_id.as_deref().unwrap_or("<none>");
    ok & r.check(
        owner == args.user_id && rec.owner.tenant == args.tenant,
        format!(
            "status names the owner: {owner} (expected {})",
            args.user_id
        ),
    )
}

/// Checks that the other user gets a 404 for `path`.
async fn hidden_from_other(other: &ApiClient, path: &str, what: &str, r: &mut Report) {
    match other.status_of(path).await {
        Ok(StatusCode::NOT_FOUND) => {
            r.check(true, format!("the other user cannot see {what} (404)"));
        }
        Ok(s) => r.fail(format!("the other user got {s} for {what}: expected 404")),
        Err(e) => r.fail(format!("asking as the other user failed: {e:#}")),
    }
}

async fn chat(user: &ApiClient, other: &ApiClient, args: &CheckArgs, r: &mut Report) {
    let session = format!("check-{}", uuid::Uuid::now_v7().simple());
    let messages = serde_json::json!([
        {"role": "user", "content": format!("hello from {}", args.user_id)},
        {"role": "assistant", "content": "hello back"}
    ]);
    let body = serde_json::json!({
        "name": "persist_conversation",
        "args": {"session_id": session, "messages": messages},
    });
    let Some(rec) = submit_and_wait(user, body, args.timeout, r).await else {
        return;
    };
    if !check_record(&rec, args, r) {
        return;
    }
    match user.conversation(&session).await {
        Ok(conv) => {
            let got = conv["messages"].as_array().map_or(0, Vec::len);
            let first = conv["messages"][0]["content"].as_str().unwrap_or_default();
            r.check(
                got == 2 && first == format!("hello from {}", args.user_id),
                format!("the conversation is the user's: {got} messages"),
            );
        }
        Err(e) => r.fail(format!("the user cannot read their conversation: {e:#}")),
    }
    hidden_from_other(other, &format!("/v1/tasks/{}", rec.id), "the task", r).await;
    hidden_from_other(
        other,
        &format!("/v1/conversations/{session}"),
        "the conversation",
        r,
    )
    .await;
}

async fn document(user: &ApiClient, other: &ApiClient, args: &CheckArgs, r: &mut Report) {
    let marker = format!("errandcheck{}", uuid::Uuid::now_v7().simple());
    let content = format!(
        "This document was written by {user} for errand check.\n\n\
         Its marker word is {marker}, which only {user}'s search may find.",
        user = args.user_id
    );
    let body = serde_json::json!({
        "name": "ingest_document",
        "args": {"title": format!("errand check {marker}"), "content": content},
    });
    let Some(rec) = submit_and_wait(user, body, args.timeout, r).await else {
        return;
    };
    if !check_record(&rec, args, r) {
        return;
    }
    let all_steps_ok = rec.steps.len() == 4
        && rec
            .steps
            .iter()
            .all(|s| s.status == errand_core::StepStatus::Success);
    r.check(
        all_steps_ok,
        "steps chunk → embed → index → freshness all succeeded",
    );
    let id = rec.id.to_string();
    match user.search(&marker).await {
        Ok(found) => {
            let hits = found["results"].as_array().cloned().unwrap_or_default();
            r.check(
                hits.iter().any(|h| h["task_id"] == id.as_str()),
                format!("the user's search finds the document ({} hit)", hits.len()),
            );
        }
        Err(e) => r.fail(format!("the user's search failed: {e:#}")),
    }
    match other.search(&marker).await {
        Ok(found) => {
            let hits = found["results"].as_array().map_or(0, Vec::len);
            r.check(
                hits == 0,
                format!("the other user's search finds nothing ({hits} hits)"),
            );
        }
        Err(e) => r.fail(format!("the other user's search failed: {e:#}")),
    }
    hidden_from_other(other, &format!("/v1/tasks/{id}"), "the task", r).await;
    match other.list(None, Some("ingest_document"), 100, None).await {
        Ok(page) => {
            r.check(
                !page.items.iter().any(|t| t.id.to_string() == id),
                "the task is not in the other user's list",
            );
        }
        Err(e) => r.fail(format!("listing as the other user failed: {e:#}")),
    }
}

/// Whether an error is the API saying 401 (wrong secret or claim).
pub fn is_unauthorized(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>()
        .is_some_and(|f| f.status == StatusCode::UNAUTHORIZED)
}
