//! Startup: builds the application from settings — the one place `main`, tests, the demo and
//! benchmarks get a running Herald from.
//!
//! Owns wiring (store, resolver, auth, router, background roles) and graceful shutdown. Must
//! not contain domain logic.

use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::ServiceAuth;
use crate::channels::{ChannelConfigError, Channels};
use crate::clock::{Clock, SystemClock};
use crate::deliver::{DispatchConfig, Dispatcher, ProviderConfigError, Providers};
use crate::identity::{Resolver, ResolverConfig};
use crate::inbound::{InboundConfigError, InboundState};
use crate::ingest::Ingest;
use crate::lexicon::Lexicons;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::storage::{Store, VaultStore};
use crate::vault::crypto::{KeyError, KeyRing};
use crate::vault::{Vault, VaultConfig};
use crate::{web, xrpc};

/// HTTP timeout for DID resolution: a slow PLC directory must not hold a request for long.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Which parts of Herald this process runs (`herald serve --roles api,ingest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub ingest: bool,
    pub deliver: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        ingest: true,
        deliver: true,
    };

    pub fn parse(list: &str) -> Result<Self, String> {
        let mut roles = Roles {
            api: false,
            ingest: false,
            deliver: false,
        };
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "api" => roles.api = true,
                "ingest" => roles.ingest = true,
                "deliver" => roles.deliver = true,
                other => return Err(format!("unknown role {other:?} (api, ingest, deliver)")),
            }
        }
        Ok(roles)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("lexicons: {0}")]
    Lexicons(String),
    #[error("vault keys: {0}")]
    Keys(#[from] KeyError),
    #[error("channel provider settings: {0}")]
    Channels(#[from] ChannelConfigError),
    #[error("delivery provider settings: {0}")]
    Providers(#[from] ProviderConfigError),
    #[error("provider callback settings: {0}")]
    Inbound(#[from] InboundConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    port: u16,
    store: Store,
    vault: Arc<Vault>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Application {
    /// Connect, migrate, bind (port 0 picks a free port) and start the chosen roles.
    pub async fn build(settings: Settings, roles: Roles) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, roles, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with the clock publish and delivery decisions read: tests
    /// and benchmarks pass a [`crate::clock::ManualClock`] to move through days.
    pub async fn build_with_clock(
        settings: Settings,
        roles: Roles,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // Only ingest's bulk writes gain from a memory-mapped index.
        let store =
            Store::connect_mapped(settings.database_url.expose_secret(), roles.ingest).await?;
        let lexicons =
            Arc::new(Lexicons::embedded().map_err(|e| StartupError::Lexicons(e.to_string()))?);
        let metrics = Arc::new(Metrics::new());
        let resolver = Arc::new(Resolver::new(ResolverConfig {
            plc_url: settings.plc_url.clone(),
            cache_ttl: settings.did_cache_ttl,
            http_timeout: RESOLVE_TIMEOUT,
        }));
        let auth = Arc::new(ServiceAuth::new(
            resolver.clone(),
            settings.service_did.clone(),
        ));
        let vault = Arc::new(Self::open_vault(&settings, store.clone(), auth.clone()).await?);
        let shutdown = CancellationToken::new();
        // A publish in this process wakes this process's dispatcher at once; other processes
        // find the new rows at their next poll.
        let wake = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();

        let mut port = 0;
        if roles.api {
            let listener = TcpListener::bind(settings.listen).await.map_err(|source| {
                StartupError::Listen {
                    addr: settings.listen,
                    source,
                }
            })?;
            port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            let app = xrpc::router()
                .with_state(xrpc::AppState {
                    store: store.clone(),
                    auth,
                    metrics: metrics.clone(),
                    vault: vault.clone(),
                    limits: Arc::new(xrpc::limits::Limits::new()),
                    wake: wake.clone(),
                    schedule: settings.schedule.clone(),
                    clock: clock.clone(),
                })
                .merge(web::router(web::WebState {
                    service_did: settings.service_did.clone(),
                    public_url: settings.public_url.to_string(),
                    metrics: metrics.clone(),
                    store: store.clone(),
                }))
                .merge(web::feed::router(web::feed::FeedState {
                    vault: vault.clone(),
                    store: store.clone(),
                    public_url: settings.public_url.to_string(),
                }))
                .merge(web::pages::router(web::pages::PagesState::new(
                    vault.clone(),
                    settings.providers.telegram.webhook_secret.clone(),
                    metrics.clone(),
                )))
                .merge(crate::inbound::router(InboundState::from_settings(
                    &settings,
                    vault.clone(),
                    metrics.clone(),
                )?))
                .layer(tower_http::limit::RequestBodyLimitLayer::new(
                    MAX_BODY_BYTES,
                ))
                .layer(tower_http::trace::TraceLayer::new_for_http());
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            }));
        }
        if roles.ingest {
            let ingest = Ingest {
                store: store.clone(),
                lexicons,
                resolver,
                metrics: metrics.clone(),
                source: match &settings.relay_url {
                    Some(relay) => crate::ingest::Source::Relay(relay.clone()),
                    None => crate::ingest::Source::Jetstream(settings.jetstream_url.clone()),
                },
            };
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = ingest.run(token).await {
                    tracing::error!(error = %e, "ingest stopped");
                }
            }));
        }
        if roles.deliver {
            let providers =
                Providers::from_settings(&settings.providers, vault.channels(), metrics.clone())?;
            let dispatcher = Arc::new(Dispatcher::new(
                store.clone(),
                vault.clone(),
                providers,
                metrics.clone(),
                wake,
                DispatchConfig {
                    delivery: settings.delivery,
                    schedule: settings.schedule.clone(),
                    clock,
                },
            ));
            let token = shutdown.clone();
            tasks.push(tokio::spawn(dispatcher.run(token)));
            tasks.push(tokio::spawn(crate::vault::forget::run(
                vault.clone(),
                crate::vault::forget::EVERY,
                shutdown.clone(),
            )));
        }
        tracing::info!(port, ?roles, service_did = %settings.service_did, "herald started");
        Ok(Self {
            port,
            store,
            vault,
            metrics,
            shutdown,
            tasks,
        })
    }

    /// The vault: its own database, the key ring and the channel adapters that send
    /// verification messages. Used by `serve` and by `herald keys rotate`.
    pub async fn open_vault(
        settings: &Settings,
        store: Store,
        auth: Arc<ServiceAuth>,
    ) -> Result<Vault, StartupError> {
        let vault_store = VaultStore::connect(settings.vault.url.expose_secret()).await?;
        let keys = KeyRing::load(&settings.vault)?;
        let channels = Arc::new(Channels::from_settings(&settings.providers)?);
        tracing::info!(channels = ?channels.available(), "channel providers");
        Ok(Vault::new(
            vault_store,
            store,
            keys,
            VaultConfig::from_settings(settings),
            channels,
            auth,
        ))
    }

    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A handle that stops every role when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Run until the shutdown token is cancelled, then wait for every role to stop.
    pub async fn run_until_stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
        self.vault.store().close().await;
    }

    /// Stop every role and wait for them.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.run_until_stopped().await;
    }
}

/// Request bodies above this are refused: Herald's inputs are small JSON documents.
const MAX_BODY_BYTES: usize = 256 * 1024;
