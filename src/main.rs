//! The `herald` command line: serve, migrate, demo.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use herald::settings::Settings;
use herald::startup::{Application, Roles};
use herald::storage::Store;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "ATProto-native community notification hub"
)]
struct Cli {
    /// TOML file with the same keys as the environment (HERALD_*); the environment wins.
    #[arg(long, global = true, env = "HERALD_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, ingest and delivery (or the roles named).
    Serve {
        /// Comma-separated: api, ingest, deliver.
        #[arg(long, default_value = "api,ingest,deliver")]
        roles: String,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// A self-contained local scenario: local Jetstream and PLC, a few members, one publish.
    Demo,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Demo = cli.command {
        init_tracing("warn");
        return herald::demo::run().await;
    }
    // HERALD_CONFIG_FILE names the file; it is not itself a setting.
    let settings = Settings::load_excluding(cli.config.as_deref(), &["HERALD_CONFIG_FILE"])
        .context("invalid configuration")?;
    init_tracing(&settings.log);
    match cli.command {
        Command::Serve { roles } => {
            let roles = Roles::parse(&roles).map_err(anyhow::Error::msg)?;
            tracing::info!(?settings, "starting");
            let app = Application::build(settings, roles).await?;
            let token = app.shutdown_token();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                tracing::info!("shutting down");
                token.cancel();
            });
            app.run_until_stopped().await;
        }
        Command::Migrate => {
            let store =
                Store::connect_without_migrating(settings.database_url.expose_secret()).await?;
            store.migrate().await?;
            println!("migrations applied");
        }
        Command::Demo => unreachable!("handled above"),
    }
    Ok(())
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
