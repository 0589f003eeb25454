//! The control plane: the configuration API of the AI gateway, with verified OIDC identity,
//! RBAC, an audit log, request guards and a SQLite/Postgres store.
//!
//! [`run`] takes already-bound listeners, so tests start the real server in-process on
//! `127.0.0.1:0` and talk to it over real sockets.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod config;
pub mod connections;
pub mod error;
pub mod guards;
pub mod headers;
pub mod keygen;
pub mod metrics;
pub mod rbac;
pub mod snapshots;
pub mod state;
pub mod store;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum_server::accept::DefaultAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::net::TcpListener;

use auth::internal::InternalSecrets;
use auth::Authenticator;
use config::{Config, ConfigError};
use connections::{Listener, Watched};
use guards::rate_limit::RateLimiter;
use metrics::Metrics;
use state::AppState;
use store::{Store, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the OIDC issuer client: {0}")]
    Oidc(#[from] auth::jwks::FetchError),
    #[error(transparent)]
    Redis(#[from] guards::rate_limit::RedisConfigError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot build the OpenAPI document: {0}")]
    OpenApi(#[from] serde_json::Error),
    #[error(
        "no OIDC issuer is configured (development mode trusts forwarded identity headers), so \
         refusing to listen on non-loopback address {0}; configure `oidc`, bind to 127.0.0.1, \
         or set `dev.allow_non_loopback: true` if a trusted authenticating proxy is in front"
    )]
    DevModeNotLoopback(SocketAddr),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects the store configured in `config` (and applies migrations).
pub async fn connect_store(config: &Config) -> Result<Store, RunError> {
    let url = config.database.connect_url()?;
    Ok(Store::connect(&url, config.database.max_connections).await?)
}

/// Builds the shared state: store, identity, limiter, metrics.
pub async fn build_state(config: Config) -> Result<AppState, RunError> {
    config.validate()?;
    let metrics = Metrics::new()?;
    let store = connect_store(&config).await?;
    let auth = match &config.oidc {
        Some(o) => Authenticator::Oidc(Arc::new(
            auth::oidc::OidcVerifier::start(o, metrics.clone()).await?,
        )),
        None => Authenticator::DevHeaders,
    };
    let internal = InternalSecrets::load(&config.internal)?;
    let redis_url = match &config.guards.redis_url {
        Some(r) => Some(r.resolve().map_err(|e| ConfigError::Secret {
            field: "guards.redis_url",
            reason: e.to_string(),
        })?),
        None => None,
    };
    let limiter = RateLimiter::new(
        &config.guards,
        redis_url.as_ref(),
        &config.guards.redis_key,
        metrics.clone(),
    )?;
    let signing_key = match &config.snapshots.signing_key {
        Some(r) => {
            let text = r.resolve().map_err(|e| ConfigError::Secret {
                field: "snapshots.signing_key",
                reason: e.to_string(),
            })?;
            Some(gateway_schema::SigningKey::from_base64(&text).map_err(|e| {
                ConfigError::Secret {
                    field: "snapshots.signing_key",
                    reason: e.to_string(),
                }
            })?)
        }
        None => {
            tracing::warn!(
                "no snapshots.signing_key configured: gateways cannot receive snapshots from \
                 this control plane (run `controlplane keygen`)"
            );
            None
        }
    };
    let snapshots = snapshots::Publisher::new(store.clone(), signing_key, metrics.clone());
    Ok(AppState {
        config: Arc::new(config),
        store,
        auth: Arc::new(auth),
        internal: Arc::new(internal),
        limiter: Arc::new(limiter),
        metrics,
        snapshots,
    })
}

/// The API router with every middleware, outermost first: edge (request id, security headers,
/// metric), audit, authentication, guards.
pub fn app(st: AppState) -> Result<axum::Router, RunError> {
    Ok(api::router(st.clone())?
        .layer(from_fn_with_state(
            st.clone(),
            snapshots::publish_after_change,
        ))
        .layer(from_fn_with_state(st.clone(), guards::guard))
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(st.clone(), auth::authenticate))
        .layer(from_fn_with_state(st.clone(), audit::record))
        .layer(from_fn_with_state(st, headers::edge)))
}

/// Runs the API on `listener` and the admin endpoints on `admin_listener` until `shutdown`
/// completes, then drains in-flight requests.
pub async fn run(
    listener: TcpListener,
    admin_listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let addr = listener.local_addr()?;
    if config.oidc.is_none() {
        if !addr.ip().is_loopback() && !config.dev.allow_non_loopback {
            return Err(RunError::DevModeNotLoopback(addr));
        }
        tracing::warn!(
            "!!! DEVELOPMENT MODE: no OIDC issuer configured; X-Forwarded-Email and \
             X-Forwarded-Groups are TRUSTED as identity. Never expose this server. !!!"
        );
    }
    let st = build_state(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let publisher = tokio::spawn(st.snapshots.clone().run(stop_rx.clone()));
    let retention = tokio::spawn(audit::retention_task(
        st.store.clone(),
        audit::Retention {
            audit_days: st.config.audit.retention_days,
            usage_days: st.config.usage.retention_days,
            guardrail_blocks_days: st.config.guardrail_blocks.retention_days,
        },
        stop_rx.clone(),
    ));
    let grace = Duration::from_secs(st.config.server.shutdown_grace_secs);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let tls = match &st.config.server.tls {
        Some(t) => Some(tls::server_config(t)?),
        None => None,
    };
    let make_api = app(st.clone())?.into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let api_rx = stop_rx.clone();
    let publisher_for_stop = st.snapshots.clone();
    tokio::spawn(async move {
        wait(api_rx).await;
        publisher_for_stop.close_streams();
        h.graceful_shutdown(None);
    });
    // Slow-header (slowloris) and idle connections are closed instead of held, and counted;
    // the admin port gets the same deadlines: a probe never needs more, and a slow client must
    // not hold a descriptor of the port Kubernetes checks liveness on.
    let deadlines = connections::Deadlines {
        head: Duration::from_secs(st.config.server.header_read_timeout_secs),
        idle: Duration::from_secs(st.config.server.idle_timeout_secs),
    };
    let metrics = st.metrics.clone();
    let std_listener = listener.into_std()?;
    let api = async move {
        match tls {
            None => {
                let acceptor =
                    Watched::new(DefaultAcceptor::new(), Listener::Api, deadlines, &metrics);
                connections::server(std_listener, handle, acceptor)?
                    .serve(make_api)
                    .await
            }
            Some(cfg) => {
                let tls = RustlsAcceptor::new(RustlsConfig::from_config(cfg))
                    .handshake_timeout(deadlines.head);
                let acceptor = Watched::new(tls, Listener::Api, deadlines, &metrics);
                connections::server(std_listener, handle, acceptor)?
                    .serve(make_api)
                    .await
            }
        }
    };
    let admin_handle = axum_server::Handle::new();
    let h = admin_handle.clone();
    let admin_rx = stop_rx.clone();
    tokio::spawn(async move {
        wait(admin_rx).await;
        h.graceful_shutdown(None);
    });
    let admin = connections::server(
        admin_listener.into_std()?,
        admin_handle,
        Watched::new(
            DefaultAcceptor::new(),
            Listener::Admin,
            deadlines,
            &st.metrics,
        ),
    )?
    .serve(admin::router(st.clone()).into_make_service());
    tracing::info!(%addr, tls = st.config.server.tls.is_some(), "control plane listening");
    let servers = async { tokio::try_join!(api, admin) };
    tokio::pin!(servers);
    tokio::select! {
        r = &mut servers => { r?; }
        () = wait(stop_rx.clone()) => {
            // Drain in-flight requests, but not forever.
            match tokio::time::timeout(grace, &mut servers).await {
                Ok(r) => { r?; }
                Err(_) => tracing::warn!("shutdown grace period over; dropping connections"),
            }
        }
    }
    retention.abort();
    publisher.abort();
    st.store.close().await;
    Ok(())
}
