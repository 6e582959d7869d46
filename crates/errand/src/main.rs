//! The `errand` binary: `errand serve` runs the API and workers on the embedded store; the
//! other commands mint tokens, run workers, talk to a server, and benchmark the stores.

mod auth;
mod backoff;
mod client;
mod commands;
mod deployment;
mod logging;
mod secrets;
mod settings;
mod shutdown;
mod stores;
mod telemetry;

use clap::Parser;
use settings::{GlobalArgs, Settings};
use std::process::ExitCode;

/// errand: background work that never forgets who it is for.
///
/// Configuration comes from flags, then ERRAND_* environment variables, then a TOML file
/// (--config, or ./errand.toml when it exists), then defaults that suit one machine
/// (127.0.0.1:8080, the SQLite store under ./errand-data). Secrets come from
/// ERRAND_JWT_SECRETS (comma-separated, the first signs) / ERRAND_SEAL_KEYS (comma-separated,
/// the first seals), the config file, or files `errand serve` generates in the data directory
/// (mode 0600). `serve` also accepts an identity provider's tokens: --jwks-url or --jwks-file,
/// with --issuer and --audience.
#[derive(Debug, Parser)]
#[command(name = "errand", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Serve the HTTP API, with workers (the main job).
    Serve(Box<commands::serve::ServeArgs>),
    /// Run workers only, against a shared store (Redis, or the same SQLite data directory).
    Worker(commands::worker::WorkerArgs),
    /// Mint a bearer token; it is printed alone on the last line of stdout.
    Token(commands::token::TokenArgs),
    /// Print a link that opens the dashboard (`/ui/`) signed in as a user.
    Ui(commands::ui::UiArgs),
    /// Benchmark a store; prints one JSON object as the last line.
    Bench(commands::bench::BenchArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

impl Command {
    /// The span export flags of a command that runs tasks.
    fn telemetry(&self) -> Option<&settings::TelemetryArgs> {
        match self {
            Command::Serve(args) => Some(&args.telemetry),
            Command::Worker(args) => Some(&args.telemetry),
            Command::Bench(args) => Some(&args.telemetry),
            Command::Token(_) | Command::Ui(_) | Command::Client(_) => None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("errand: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.global)?;
    // Client commands log warnings only, so their output stays clean.
    let filter = match cli.command {
        Command::Client(_) | Command::Token(_) | Command::Ui(_)
            if settings.global.log.is_none() =>
        {
            "warn".into()
        }
        _ => settings.log_filter(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Spans are exported only by the commands that run tasks, and only when asked to.
    let telemetry = match cli
        .command
        .telemetry()
        .and_then(|t| settings.otlp_endpoint(t))
    {
        Some(endpoint) => Some(telemetry::Telemetry::start(
            &endpoint,
            runtime.handle().clone(),
        )?),
        None => None,
    };
    let tracer = telemetry.as_ref().map(telemetry::Telemetry::tracer);
    logging::init(settings.log_format(), &filter, tracer)?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve::run(settings, *args).await?,
            Command::Worker(args) => commands::worker::run(settings, args).await?,
            Command::Token(args) => commands::token::run(settings, args)?,
            Command::Ui(args) => commands::ui::run(settings, args)?,
            Command::Bench(args) => commands::bench::run(settings, args).await?,
            Command::Client(command) => return client::run(settings, command).await,
        }
        Ok(ExitCode::SUCCESS)
    });
    // The runtime still runs the last exports.
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    result
}
