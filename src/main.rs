//! The `herald` command line: serve, migrate, keys, deliveries, demo.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use herald::auth::ServiceAuth;
use herald::identity::{Resolver, ResolverConfig};
use herald::settings::Settings;
use herald::startup::{Application, Roles};
use herald::storage::{Store, VaultStore};
use herald::vault::crypto::KeyRing;

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
    /// Manage the vault's key ring.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
    },
    /// Index the Herald records already in members' repositories: lists them on the relay
    /// (HERALD_RELAY_URL), reads each from its own PDS, verifies and indexes it. Resumable;
    /// safe to run beside `serve`.
    Backfill {
        /// Forget earlier progress and read every repository again.
        #[arg(long)]
        restart: bool,
        /// Repositories read at once from one PDS (default: HERALD_BACKFILL_PER_PDS).
        #[arg(long)]
        per_pds: Option<usize>,
        /// Repositories read at once in all (default: HERALD_BACKFILL_CONCURRENCY).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Inspect and re-queue deliveries.
    Deliveries {
        #[command(subcommand)]
        action: DeliveriesCommand,
    },
}

#[derive(Subcommand)]
enum DeliveriesCommand {
    /// List dead letters (oldest first): deliveries that failed permanently or ran out of
    /// attempts.
    Dead {
        /// Only this channel (email, sms, telegram, webpush, webhook, feed).
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the queue with their attempts reset: the ids given, or
    /// every dead letter (of `--channel`, if given) with `--all`.
    Retry {
        ids: Vec<String>,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a key to the key file and re-encrypt every stored address with it; resumes an
    /// unfinished rotation instead of adding another key. Safe while Herald runs.
    Rotate {
        /// Stop after this many batches of 500 (run again to go on).
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// Print a new key ring (for HERALD_VAULT_KEY or a key file); stores nothing.
    Generate,
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
            VaultStore::connect(settings.vault.url.expose_secret()).await?;
            println!("migrations applied (index and vault)");
        }
        Command::Keys {
            action: KeysCommand::Generate,
        } => print!("{}", KeyRing::generate().to_text()),
        Command::Keys {
            action: KeysCommand::Rotate { max_batches },
        } => {
            let store = Store::connect(settings.database_url.expose_secret()).await?;
            let resolver = Arc::new(Resolver::new(ResolverConfig {
                plc_url: settings.plc_url.clone(),
                cache_ttl: settings.did_cache_ttl,
                http_timeout: std::time::Duration::from_secs(10),
            }));
            let auth = Arc::new(ServiceAuth::new(resolver, settings.service_did.clone()));
            let vault = Application::open_vault(&settings, store, auth).await?;
            let mut batches = 0u64;
            let report = vault
                .rotate_keys(|resealed, remaining| {
                    batches += 1;
                    println!("re-encrypted {resealed}, {remaining} to go");
                    if max_batches.is_some_and(|max| batches >= max) {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .await?;
            println!(
                "key version {}{}: {} re-encrypted, {} remaining{}",
                report.version,
                if report.added_key {
                    " (new)"
                } else {
                    " (resumed)"
                },
                report.resealed,
                report.remaining,
                if report.remaining > 0 {
                    "; run `herald keys rotate` again to finish"
                } else {
                    ""
                }
            );
        }
        Command::Deliveries { action } => {
            let store = Store::connect(settings.database_url.expose_secret()).await?;
            deliveries(&store, action).await?;
        }
        Command::Backfill {
            restart,
            per_pds,
            concurrency,
        } => {
            let relay = settings
                .relay_url
                .clone()
                .context("backfill lists repositories on a relay: set HERALD_RELAY_URL")?;
            let store = Store::connect(settings.database_url.expose_secret()).await?;
            let resolver = Arc::new(Resolver::new(ResolverConfig {
                plc_url: settings.plc_url.clone(),
                cache_ttl: settings.did_cache_ttl,
                http_timeout: std::time::Duration::from_secs(10),
            }));
            let verifier = herald::ingest::verify::Verifier {
                resolver,
                lexicons: Arc::new(herald::lexicon::Lexicons::embedded()?),
            };
            let backfill = herald::backfill::Backfill {
                reader: herald::backfill::RepoReader::new(verifier, store.clone()),
                store,
                metrics: Arc::new(herald::metrics::Metrics::new()),
            };
            let options = herald::backfill::BackfillOptions {
                relay: herald::ingest::relay::http_base(&relay),
                per_pds: per_pds.unwrap_or(settings.backfill_per_pds),
                concurrency: concurrency.unwrap_or(settings.backfill_concurrency),
                restart,
            };
            let summary = backfill
                .run(&options, &herald::backfill::Progress::for_stderr())
                .await?;
            println!(
                "backfill: {} repositories listed, {} read ({} records), {} unavailable, {} failed",
                summary.listed, summary.done, summary.records, summary.unavailable, summary.failed
            );
            if summary.failed > 0 {
                anyhow::bail!(
                    "{} repositories failed; run `herald backfill` again to retry them",
                    summary.failed
                );
            }
        }
        Command::Demo => unreachable!("handled above"),
    }
    Ok(())
}

async fn deliveries(store: &Store, action: DeliveriesCommand) -> anyhow::Result<()> {
    let check_channel = |channel: &Option<String>| -> anyhow::Result<()> {
        match channel.as_deref() {
            Some(c) if herald::model::Channel::parse(c).is_none() => {
                anyhow::bail!("unknown channel {c:?}")
            }
            _ => Ok(()),
        }
    };
    match action {
        DeliveriesCommand::Dead {
            channel,
            limit,
            json,
        } => {
            check_channel(&channel)?;
            let dead = store.dead_letters(channel.as_deref(), limit).await?;
            if json {
                for d in &dead {
                    println!(
                        "{}",
                        serde_json::json!({
                            "id": d.id,
                            "publication": d.publication_id,
                            "recipient": d.recipient,
                            "channel": d.channel,
                            "attempts": d.attempts,
                            "error": d.last_error,
                            "createdAt": herald::storage::format_micros(d.created_at),
                        })
                    );
                }
            } else if dead.is_empty() {
                println!("no dead letters");
            } else {
                println!("{:<36}  {:<8}  {:>8}  error", "id", "channel", "attempts");
                for d in &dead {
                    println!(
                        "{:<36}  {:<8}  {:>8}  {}",
                        d.id,
                        d.channel,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        DeliveriesCommand::Retry { ids, channel, all } => {
            check_channel(&channel)?;
            if ids.is_empty() && !all {
                anyhow::bail!("name the dead letters to retry, or pass --all");
            }
            let filter = herald::storage::DeadFilter { ids, channel };
            let requeued = store
                .retry_dead_letters(&filter, herald::storage::now_micros())
                .await?;
            println!("{requeued} dead letter(s) re-queued");
        }
    }
    Ok(())
}

fn init_tracing(default: &str) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}
