//! The gRPC server: `rolegate.v1.Authorizer`, `grpc.health.v1.Health` (SERVING only while
//! [`Store::is_ready`]) and reflection, on TCP and Unix sockets, with load shedding, a request
//! timeout and graceful shutdown.

pub mod accept;
pub mod admin;
pub mod authorizer;
pub mod authzen;
pub mod cache;
pub mod callers;
pub mod config;
pub mod conn;

pub mod guard;
pub mod peer;
pub mod shadow;
pub mod tls;

pub use rolegate_api::convert;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio::sync::{oneshot, watch};
use tonic::transport::Server;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::cache::DecisionCache;
pub use authorizer::{Authorizer, AuthorizerService};
pub use config::{Listen, ServeConfig};
use rolegate_api::inspector_server::InspectorServer;
use rolegate_source::Source;
use rolegate_source::postgres::PostgresSource;
use rolegate_source::store::Store;
use rolegate_source::watch::WatchConfig;
use rolegate_telemetry::Metrics;
use rolegate_telemetry::Telemetry;

/// A server task, one per listener.
type ServerTask = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

/// Serves until `shutdown` resolves, then stops accepting, finishes in-flight calls and returns.
pub async fn run(
    cfg: ServeConfig,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = Arc::new(cfg.on_demand.map_or_else(Store::default, Store::on_demand));
    let metrics = telemetry.metrics.clone();
    let (health, health_service) = tonic_health::server::health_reporter();
    set_status(&health, tonic_health::ServingStatus::NotServing).await;

    let source_died = start_source(&cfg, &store, &metrics)?;
    tokio::spawn(follow_readiness(store.clone(), health.clone()));

    let shadow = match &cfg.shadow {
        Some(c) => Some(shadow::Shadow::start(c, cfg.reload_debounce, cfg.reload_poll, telemetry.clone())?),
        None => None,
    };
    let authorizer = authorizer(&cfg, &store, &telemetry, shadow);
    let access = Access::load(&cfg, &metrics)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // One limit for the whole process, however many listeners share it.
    let guard = guard::GuardLayer::new(cfg.max_concurrency, metrics.clone());
    let authzen = match &cfg.authzen {
        Some(az) => {
            Some(serve_authzen(az, &cfg, authorizer.clone(), &guard, &metrics, &access, stop_rx.clone()).await?)
        }
        None => None,
    };
    let services = grpc_services(&cfg, authorizer);
    let servers = serve(&cfg, services, health_service, guard, &access, stop_rx).await?;
    if let Some(addr) = &cfg.admin_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!("admin listening on {}", listener.local_addr()?);
        tokio::spawn(admin::serve(listener, store.clone(), metrics.clone()));
    }

    // A source that stopped can never apply a revocation again: stop, and let the orchestrator
    // restart the process, rather than serve a snapshot that is frozen for good.
    let died = tokio::select! {
        () = shutdown => None,
        why = source_died => Some(why.unwrap_or_else(|_| "the source supervisor ended".to_owned())),
    };
    tracing::info!("shutting down: finishing in-flight calls");
    set_status(&health, tonic_health::ServingStatus::NotServing).await;
    let _ = stop_tx.send(true);
    if let Some(authzen) = authzen {
        let _ = authzen.await;
    }
    drain(&cfg, &telemetry, servers).await?;
    tracing::info!("stopped");
    match died {
        Some(why) => Err(anyhow::anyhow!("{why}")),
        None => Ok(()),
    }
}

/// Starts the configured policy source (PostgreSQL follower or directory watcher) under a
/// supervisor; the receiver resolves with why if the source ever stops.
fn start_source(
    cfg: &ServeConfig,
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<oneshot::Receiver<String>> {
    let source: Box<dyn Source> = match (&cfg.postgres, &cfg.nats) {
        (Some(pg), Some(nats)) => Box::new(rolegate_source::nats::follow::NatsSource {
            nats: nats.clone(),
            snapshot: pg.clone(),
            health: Arc::new(rolegate_source::postgres::Health::labelled("nats")),
        }),
        (Some(pg), None) => Box::new(PostgresSource { cfg: pg.clone(), health: Arc::default() }),
        (None, _) => {
            Box::new(WatchConfig { root: cfg.policies.clone(), debounce: cfg.reload_debounce, poll: cfg.reload_poll })
        }
    };
    if let Some(health) = source.health() {
        metrics.follow_source(health);
    }
    let described = source.describe();
    tracing::info!("loading policies from {described}");
    let m = metrics.clone();
    let thread = source
        .spawn(store.clone(), Box::new(move |report| m.record_reload(report)))
        .with_context(|| format!("cannot start the {described}"))?;
    rolegate_source::supervise("policy source", thread, store.clone()).context("cannot supervise the source")
}

/// The `Authorizer` with its cache, limits and telemetry: what gRPC and AuthZEN decide through.
fn authorizer(
    cfg: &ServeConfig,
    store: &Arc<Store>,
    telemetry: &Arc<Telemetry>,
    shadow: Option<shadow::Shadow>,
) -> Authorizer {
    let evictions = telemetry.metrics.clone();
    let cache = DecisionCache::new(cfg.cache, move || {
        evictions.cache_evictions.fetch_add(1, Ordering::Relaxed);
    });
    let authorizer = Authorizer::new(store.clone(), cache, cfg.limits, cfg.min_revision_wait)
        .with_now_header(cfg.allow_now_header)
        .with_telemetry(telemetry.clone())
        .with_shadow(shadow);
    if cfg.allow_now_header {
        tracing::warn!("callers may set the decision instant with the `rolegate-now` header");
    }
    authorizer
}

/// The gRPC services around `authorizer` (`Authorizer` and `Inspector` share its state), with
/// the message size limits.
fn grpc_services(cfg: &ServeConfig, authorizer: Authorizer) -> Services {
    let inspector = InspectorServer::new(authorizer.clone())
        .max_decoding_message_size(cfg.limits.max_message_bytes)
        .max_encoding_message_size(cfg.limits.max_message_bytes);
    (AuthorizerService::new(authorizer, cfg.limits.max_message_bytes), inspector)
}

/// The gRPC services every listener serves besides health and reflection.
type Services = (AuthorizerService, InspectorServer<Authorizer>);

/// Who may connect and ask: the TLS credentials of the TCP listeners and the callers file, each
/// reloaded when its files change.
#[derive(Clone)]
struct Access {
    tls: Option<Arc<tls::Credentials>>,
    callers: Option<Arc<callers::Callers>>,
    /// The open connections of every gRPC and AuthZEN listener (`--max-connections`).
    connections: conn::Slots,
}

impl Access {
    fn load(cfg: &ServeConfig, metrics: &Arc<Metrics>) -> anyhow::Result<Access> {
        let tls = match &cfg.tls {
            Some(files) => {
                let creds = tls::Credentials::load(files.clone(), metrics.clone()).map_err(|e| anyhow::anyhow!(e))?;
                creds.spawn_reload();
                let clients = if creds.mutual() { "client certificates required" } else { "no client certificates" };
                tracing::info!("TLS on TCP listeners with {}; {clients}", files.cert.display());
                Some(creds)
            }
            None => None,
        };
        let callers = match &cfg.callers {
            Some(path) => {
                let callers = callers::Callers::load(path.clone(), metrics.clone())
                    .map_err(|errors| anyhow::anyhow!("the callers file is invalid:\n  {}", errors.join("\n  ")))?;
                callers.spawn_reload();
                Some(callers)
            }
            None => None,
        };
        let connections = conn::Slots::new(cfg.max_connections, metrics.clone());
        Ok(Access { tls, callers, connections })
    }
}

/// Binds every gRPC listener and serves the authorizer, health and reflection on each until
/// `stop` turns true.
async fn serve(
    cfg: &ServeConfig,
    (authorizer, inspector): Services,
    health_service: HealthServer<impl Health>,
    guard: guard::GuardLayer,
    access: &Access,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<ServerTask>> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rolegate_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("cannot build reflection")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("cannot build reflection")?;
    // Without a callers file there is no layer at all: nothing to box or dispatch per call.
    let callers = access.callers.clone().map(|c| callers::CallersLayer::new(Some(c), cfg.limits.max_message_bytes));
    let router = || {
        Server::builder()
            .timeout(cfg.request_timeout)
            .layer(guard.clone())
            .layer(tower::util::option_layer(callers.clone()))
            .add_service(health_service.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone())
            .add_service(authorizer.clone())
            .add_service(inspector.clone())
    };
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = Vec::new();
    for listen in &cfg.listen {
        let stopped = stopped(stop.clone());
        servers.push(match listen {
            Listen::Tcp(addr) => {
                let incoming =
                    conn::Connections::new(bind_tcp(addr).await?, access.tls.clone(), access.connections.clone());
                tokio::spawn(router().serve_with_incoming_shutdown(incoming, stopped))
            }
            Listen::Unix(path) => {
                let incoming = conn::Connections::new(bind_unix(path, "")?, None, access.connections.clone());
                tokio::spawn(router().serve_with_incoming_shutdown(incoming, stopped))
            }
        });
    }
    Ok(servers)
}

/// Binds the AuthZEN listener — TLS and the callers file apply as on gRPC listeners — and
/// serves it until `stop` turns true; the task ends once its in-flight calls are done.
async fn serve_authzen(
    az: &authzen::Config,
    cfg: &ServeConfig,
    authorizer: Authorizer,
    guard: &guard::GuardLayer,
    metrics: &Arc<Metrics>,
    access: &Access,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let token = match &az.token_file {
        Some(path) => Some(
            authzen::Token::follow(path.clone())
                .with_context(|| format!("cannot read the AuthZEN token file {}", path.display()))?,
        ),
        None => None,
    };
    let service =
        authzen::Service::new(authorizer, cfg.limits, guard.clone(), metrics.clone(), token, cfg.request_timeout)
            .with_callers(access.callers.clone());
    Ok(match &az.listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("AuthZEN: cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!("AuthZEN listening on {local}");
            let incoming = accept::Incoming::new(listener, format!("AuthZEN {local}"));
            let service = Arc::new(service.with_tls(access.tls.is_some()));
            tokio::spawn(authzen::serve(
                service,
                conn::Connections::new(incoming, access.tls.clone(), access.connections.clone()),
                stop,
            ))
        }
        Listen::Unix(path) => {
            let incoming = conn::Connections::new(bind_unix(path, "AuthZEN ")?, None, access.connections.clone());
            let path = path.clone();
            tokio::spawn(async move {
                authzen::serve(Arc::new(service), incoming, stop).await;
                let _ = std::fs::remove_file(path);
            })
        }
    })
}

async fn bind_tcp(addr: &str) -> anyhow::Result<accept::Incoming<tokio::net::TcpListener>> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!("listening on {local}");
    Ok(accept::Incoming::new(listener, local.to_string()))
}

/// Binds a Unix socket; `what` prefixes its log line (`AuthZEN `, or empty for gRPC).
fn bind_unix(path: &Path, what: &str) -> anyhow::Result<accept::Incoming<tokio::net::UnixListener>> {
    let _ = std::fs::remove_file(path);
    let listener =
        tokio::net::UnixListener::bind(path).with_context(|| format!("cannot listen on unix:{}", path.display()))?;
    // Group-writable, so a host container sharing the pod's fsGroup can connect.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    tracing::info!("{what}listening on unix:{}", path.display());
    Ok(accept::Incoming::new(listener, format!("unix:{}", path.display())))
}

/// Waits for the servers to finish their in-flight calls, removes the Unix sockets and flushes
/// the decision log.
async fn drain(cfg: &ServeConfig, telemetry: &Telemetry, servers: Vec<ServerTask>) -> anyhow::Result<()> {
    for s in servers {
        s.await??;
    }
    for listen in &cfg.listen {
        if let Listen::Unix(path) = listen {
            let _ = std::fs::remove_file(path);
        }
    }
    if let Some(log) = telemetry.decision_log.clone() {
        // Lines still queued would be lost with the process.
        let _ = tokio::task::spawn_blocking(move || log.flush(std::time::Duration::from_secs(2))).await;
    }
    Ok(())
}

/// Keeps gRPC health in step with [`Store::is_ready`]: SERVING only while a snapshot with at
/// least one tenant is served by a running source.
async fn follow_readiness(store: Arc<Store>, health: tonic_health::server::HealthReporter) {
    let mut rx = store.subscribe();
    let mut was_ready = false;
    loop {
        let ready = store.is_ready();
        if ready != was_ready {
            if ready {
                set_status(&health, tonic_health::ServingStatus::Serving).await;
                tracing::info!("policy snapshot loaded; serving");
            } else {
                set_status(&health, tonic_health::ServingStatus::NotServing).await;
                tracing::warn!("not ready: no tenant is loaded or the policy source stopped");
            }
            was_ready = ready;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Sets the health of the whole server (`""`) and of each rolegate service by its name.
async fn set_status(health: &tonic_health::server::HealthReporter, status: tonic_health::ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(<AuthorizerService as tonic::server::NamedService>::NAME, status).await;
    health.set_service_status(<InspectorServer<Authorizer> as tonic::server::NamedService>::NAME, status).await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
