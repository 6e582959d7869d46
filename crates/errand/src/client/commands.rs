//! The client subcommands: `submit`, `status`, `watch`, `tasks`, `cancel`, `retry`.

use super::api::ApiClient;
use super::render;
use anyhow::{Context as _, bail};
use errand_core::TaskRecord;
use futures::StreamExt;
use std::process::ExitCode;
use std::time::Duration;

/// Where the API is and who the caller is.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// Base URL of the errand server [default: the config file's `url`, else http://127.0.0.1:8080].
    #[arg(long, env = "ERRAND_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Bearer token (mint one with `errand token`).
    #[arg(
        long,
        env = "ERRAND_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// Submits a task.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The registered task name (see GET /v1/task-types).
    pub name: String,
    /// The task's arguments, as JSON.
    #[arg(long, default_value = "{}", value_name = "JSON")]
    pub args: String,
    /// Idempotency key: while a task of yours with this key is live, it is returned instead.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Do not run before this delay (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub delay: Option<Duration>,
    /// Attempts allowed (overrides the task's policy).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Time limit of one attempt (overrides the task's policy).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Follow the task until it finishes, like `errand watch`.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Shows a task's status record.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The task id.
    pub id: String,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Follows a task live (progress bar and steps) until it finishes.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The task id.
    pub id: String,
    /// Print each record as a JSON line instead of drawing.
    #[arg(long)]
    pub json: bool,
}

/// Lists your tasks, newest first.
#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// Only tasks in this state (pending, scheduled, running, retrying, success, failed, cancelled).
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only tasks of this name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue after this cursor (printed after a full page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Cancels or retries a task.
#[derive(Debug, clap::Args)]
pub struct ActArgs {
    /// The task id.
    pub id: String,
}

/// The exit code for a task's final state: 0 success, 1 failed, 2 cancelled.
pub fn exit_for(record: &TaskRecord) -> ExitCode {
    match record.status {
        errand_core::TaskState::Success => ExitCode::SUCCESS,
        errand_core::TaskState::Cancelled => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

pub async fn submit(client: &ApiClient, args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let parsed: serde_json::Value = serde_json::from_str(&args.args)
        .with_context(|| format!("--args is not valid JSON: {}", args.args))?;
    let mut body = serde_json::json!({ "name": args.name, "args": parsed });
    if let Some(k) = &args.key {
        body["key"] = k.clone().into();
    }
    if let Some(d) = args.delay {
        body["delay_s"] = d.as_secs_f64().into();
    }
    if let Some(n) = args.max_attempts {
        body["max_attempts"] = n.into();
    }
    if let Some(t) = args.timeout {
        body["timeout_s"] = t.as_secs_f64().into();
    }
    let submitted = client.submit(&body).await?;
    if args.json && !args.wait {
        println!(
            "{}",
            serde_json::json!({
                "id": submitted.id,
                "status": submitted.status,
                "status_url": submitted.status_url,
                "events_url": submitted.events_url,
                "deduplicated": submitted.deduplicated,
            })
        );
    } else if !args.json {
        eprintln!(
            "{} {} ({}){}",
            if submitted.deduplicated {
                "existing task"
            } else {
                "submitted"
            },
            submitted.id,
            submitted.status,
            if submitted.deduplicated {
                ": same key, still live"
            } else {
                ""
            }
        );
        eprintln!(
            "status: {}  events: {}",
            submitted.status_url, submitted.events_url
        );
        if !args.wait {
            println!("{}", submitted.id);
        }
    }
    if args.wait {
        return follow(client, &submitted.id, args.json).await;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(client: &ApiClient, args: StatusArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&client.get_json(&args.id).await?)?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let record = client.get(&args.id).await?;
    print!("{}", render::record(&record));
    Ok(ExitCode::SUCCESS)
}

pub async fn watch(client: &ApiClient, args: WatchArgs) -> anyhow::Result<ExitCode> {
    follow(client, &args.id, args.json).await
}

/// Follows the events route until a final state; draws on a terminal, prints lines otherwise.
async fn follow(client: &ApiClient, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut events = Box::pin(client.events(id).await?);
    let mut screen = render::Screen::new(json);
    let mut last = None;
    while let Some(record) = events.next().await {
        let record = record?;
        screen.show(&record)?;
        let done = record.status.is_terminal();
        last = Some(record);
        if done {
            break;
        }
    }
    // The stream can end early (server restart); the record says where the task is.
    let record = match last {
        Some(r) if r.status.is_terminal() => r,
        _ => {
            let r = client.get(id).await?;
            if !r.status.is_terminal() {
                bail!(
                    "the event stream ended while the task is still {}; run `errand watch {id}` again",
                    r.status
                );
            }
            screen.show(&r)?;
            r
        }
    };
    screen.finish(&record)?;
    Ok(exit_for(&record))
}

pub async fn tasks(client: &ApiClient, args: TasksArgs) -> anyhow::Result<ExitCode> {
    if let Some(s) = &args.status {
        s.parse::<errand_core::TaskState>()?;
    }
    let page = client
        .list(
            args.status.as_deref(),
            args.name.as_deref(),
            args.limit,
            args.cursor.as_deref(),
        )
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "items": page.items,
                "next_cursor": page.next_cursor,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render::table(&page.items));
    if let Some(c) = page.next_cursor {
        eprintln!("more: errand tasks --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn act(client: &ApiClient, args: ActArgs, action: &str) -> anyhow::Result<ExitCode> {
    let record = client.act(&args.id, action).await?;
    eprintln!("{action}: {} is now {}", record.id, record.status);
    if record.cancel_requested && !record.status.is_terminal() {
        eprintln!(
            "the task is running: its cancellation token fired; it ends `cancelled` when it stops"
        );
    }
    Ok(ExitCode::SUCCESS)
}
