//! The client side of the CLI: commands that talk to a running errand server over HTTP.

mod api;
mod check;
mod commands;
mod render;

pub use api::ApiClient;
pub use check::CheckArgs;
pub use commands::{ActArgs, ClientArgs, StatusArgs, SubmitArgs, TasksArgs, WatchArgs};

use crate::secrets::{self, Missing};
use crate::settings::{DEFAULT_ADDR, Settings};
use anyhow::Context as _;
use std::process::ExitCode;
use std::time::Duration;

/// The subcommands that talk to a server.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a task: `errand submit ingest_document --args '{"title":"t","content":"..."}' --wait`.
    Submit {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: SubmitArgs,
    },
    /// Show a task's status record.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: StatusArgs,
    },
    /// Follow a task live (progress bar and steps) until it finishes.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: WatchArgs,
    },
    /// List your tasks, newest first.
    Tasks {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: TasksArgs,
    },
    /// Cancel a task (a running one stops at its next await and ends `cancelled`).
    Cancel {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: ActArgs,
    },
    /// Retry a failed or cancelled task, with its original context.
    Retry {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: ActArgs,
    },
    /// Check, on a live server, that background work keeps the user's identity (mints tokens
    /// for USER and a second user with the server's secret: give the same --data-dir or
    /// ERRAND_JWT_SECRETS).
    Check {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: CheckArgs,
    },
}

/// The server's base URL: flag or `ERRAND_URL`, else the file's `url`, else the default
/// address.
pub(crate) fn base_url(settings: &Settings, url: Option<&str>) -> String {
    url.map(str::to_string)
        .or_else(|| settings.file.url.clone())
        .or_else(|| settings.file.addr.map(|a| format!("http://{a}")))
        .unwrap_or_else(|| format!("http://{DEFAULT_ADDR}"))
}

/// Runs a client command; the exit code says how it went.
pub async fn run(settings: Settings, command: ClientCommand) -> anyhow::Result<ExitCode> {
    let connect = |client: &ClientArgs| -> anyhow::Result<ApiClient> {
        if client.token.is_none() {
            eprintln!(
                "note: no token given (--token or ERRAND_TOKEN); the server will answer 401. Mint one with `errand token --user <USER>`."
            );
        }
        ApiClient::new(
            &base_url(&settings, client.url.as_deref()),
            client.token.clone(),
        )
    };
    match command {
        ClientCommand::Submit { client, args } => commands::submit(&connect(&client)?, args).await,
        ClientCommand::Status { client, args } => commands::status(&connect(&client)?, args).await,
        ClientCommand::Watch { client, args } => commands::watch(&connect(&client)?, args).await,
        ClientCommand::Tasks { client, args } => commands::tasks(&connect(&client)?, args).await,
        ClientCommand::Cancel { client, args } => {
            commands::act(&connect(&client)?, args, "cancel").await
        }
        ClientCommand::Retry { client, args } => {
            commands::act(&connect(&client)?, args, "retry").await
        }
        ClientCommand::Check { client, args } => {
            let base = base_url(&settings, client.url.as_deref());
            let secrets = secrets::jwt_secrets(&settings, Missing::Fail)
                .context("errand check mints tokens with the server's secret")?;
            let config = settings.token_config(secrets, &args.claims);
            let ttl = Duration::from_secs(3600);
            let mint = |user: &str| config.mint_token(user, args.tenant.as_deref(), false, ttl);
            let user = ApiClient::new(&base, Some(mint(&args.user_id)?))?;
            let other = user.with_token(mint(&check::other_user(&args))?);
            if let Err(e) = user.list(None, None, 1, None).await {
                if check::is_unauthorized(&e) {
                    anyhow::bail!(
                        "the server refused a token minted with this secret ({e}): give errand check the server's --data-dir or ERRAND_JWT_SECRETS"
                    );
                }
                return Err(e);
            }
            Ok(check::run(&user, &other, &base, &args).await)
        }
    }
}
