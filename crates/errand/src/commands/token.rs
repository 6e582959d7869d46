//! `errand token`: mints a bearer token the server accepts: HS256, signed with the first of
//! the server's secrets and carrying its key id (`kid`).

use crate::auth::TokenClaimArgs;
use crate::secrets::{self, Missing};
use crate::settings::Settings;
use std::time::Duration;

/// Mints a token; it is printed alone on the last line of stdout.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The user the token is for.
    #[arg(
        long,
        value_name = "USER",
        required_unless_present = "worker",
        conflicts_with = "worker"
    )]
    pub user: Option<String>,
    /// Mint a worker's token instead: the worker protocol's routes, and no user.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tenant", "admin"])]
    pub worker: Option<String>,
    /// The user's tenant.
    #[arg(long, value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Grant the admin role (sees every user's tasks).
    #[arg(long)]
    pub admin: bool,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ttl: Duration,
    #[command(flatten)]
    pub claims: TokenClaimArgs,
}

/// Mints a user's token, signed with the first of the server's secrets.
pub fn mint_user(
    settings: &Settings,
    claims: &TokenClaimArgs,
    user: &str,
    tenant: Option<&str>,
    admin: bool,
    ttl: Duration,
) -> anyhow::Result<String> {
    let secrets = secrets::jwt_secrets(settings, Missing::Fail)?;
    Ok(settings
        .token_config(secrets, claims)
        .mint_token(user, tenant, admin, ttl)?)
}

pub fn run(settings: Settings, args: TokenArgs) -> anyhow::Result<()> {
    let (user, token) = match (&args.worker, &args.user) {
        (Some(name), _) => {
            let secrets = secrets::jwt_secrets(&settings, Missing::Fail)?;
            let config = settings.token_config(secrets, &args.claims);
            (
                format!("worker {name}"),
                config.mint_worker_token(name, args.ttl)?,
            )
        }
        (None, Some(user)) => (
            user.clone(),
            mint_user(
                &settings,
                &args.claims,
                user,
                args.tenant.as_deref(),
                args.admin,
                args.ttl,
            )?,
        ),
        (None, None) => anyhow::bail!("give --user USER or --worker NAME"),
    };
    eprintln!(
        "token for {}{}{}, valid {}",
        user,
        args.tenant
            .as_deref()
            .map(|t| format!(" (tenant {t})"))
            .unwrap_or_default(),
        if args.admin { ", admin" } else { "" },
        humantime::format_duration(args.ttl)
    );
    println!("{token}");
    Ok(())
}
