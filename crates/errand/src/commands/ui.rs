//! `errand ui`: prints a link that opens the dashboard signed in as a user. The token travels
//! in the URL's fragment (`/ui/#token=…`), which browsers never send to the server, so it
//! stays out of access logs; the page moves it to the tab's `sessionStorage` and clears it from
//! the address bar.

use super::token::mint_user;
use crate::auth::TokenClaimArgs;
use crate::settings::Settings;
use std::time::Duration;

/// Prints a sign-in link to the dashboard; it is alone on the last line of stdout.
#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// The user to sign in as.
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The user's tenant.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Grant the admin role: every user's tasks, and the queues, workers and activity views.
    #[arg(long)]
    pub admin: bool,
    /// The token's lifetime, e.g. 1h, 8h.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    /// The server's base URL [default: the config file's `url`, else its `addr`, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "ERRAND_URL", value_name = "URL")]
    pub url: Option<String>,
    #[command(flatten)]
    pub claims: TokenClaimArgs,
}

pub fn run(settings: Settings, args: UiArgs) -> anyhow::Result<()> {
    let token = mint_user(
        &settings,
        &args.claims,
        &args.user,
        args.tenant.as_deref(),
        args.admin,
        args.ttl,
    )?;
    let base = crate::client::base_url(&settings, args.url.as_deref());
    eprintln!(
        "dashboard link for {}{}, valid {} (the token is in the fragment, which is never sent to the server)",
        args.user,
        if args.admin { " (admin)" } else { "" },
        humantime::format_duration(args.ttl)
    );
    println!("{}/ui/#token={token}", base.trim_end_matches('/'));
    Ok(())
}
