//! Assembles the Pingora server: proxy listener, admin listener, reload and drain services.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pingora::apps::HttpServerOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::admin::{AdminApp, AdminServer};
use crate::config::GatewayFile;
use crate::connections::{Guarded, ListenerLimits};
use crate::drain::{Drainer, ExitBarrier, ExitTask};
use crate::governance::Governor;
use crate::limits::redis::RedisLimiter;
use crate::live::LiveConfig;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::state::ActiveConfig;

/// Builds every service from the loaded `file` (read from `config_path`) and runs until
/// shutdown. Never returns on success (Pingora exits the process).
pub fn run(config_path: &Path, file: GatewayFile) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let s = &file.server;
    let nofile = crate::connections::raise_nofile_limit();
    let max_connections = s
        .max_connections
        .unwrap_or_else(|| default_max_connections(nofile));
    if let Some(limit) = nofile {
        let wanted = (max_connections as u64) * 2 + s.admin_max_connections as u64 + 256;
        if wanted > limit {
            tracing::warn!(limit, max_connections, "server.max_connections is close to the open-descriptor limit: every proxied request also holds an upstream descriptor");
        }
    }
    tracing::info!(
        max_connections,
        admin_max_connections = s.admin_max_connections,
        max_connections_per_source = ?s.max_connections_per_source,
        head_timeout_seconds = s.head_timeout_seconds,
        idle_timeout_seconds = s.idle_timeout_seconds,
        "connection limits"
    );
    let conn_metrics = crate::connections::ConnMetrics::register(metrics.registry())?;
    crate::pingora_log::count_into(conn_metrics.upstream_pool_races.clone());
    let head_caps = crate::proxy::errors::HeadCaps {
        max_url_bytes: s.max_url_bytes,
        max_head_bytes: s.max_request_head_bytes,
        max_headers: s.max_headers,
    };
    let listener_limits = |name, max_connections, per_source| ListenerLimits {
        name,
        max_connections,
        max_connections_per_source: per_source,
        head_timeout: Duration::from_secs(s.head_timeout_seconds),
        idle_timeout: Duration::from_secs(s.idle_timeout_seconds),
        max_head_bytes: s.max_request_head_bytes,
    };
    let listener = if s.tls.is_some() { "tls" } else { "proxy" };
    if let Some(bundle) = &s.upstream_ca_bundle {
        crate::upstream_tls::install(crate::upstream_tls::load(bundle)?);
    }
    let (live, cp_client) = match &s.control_plane {
        None => {
            let initial = LiveConfig::build_initial(&file, config_path)?;
            let live = Arc::new(LiveConfig::new(
                initial,
                config_path.to_owned(),
                metrics.clone(),
            ));
            (live, None)
        }
        Some(cp) => {
            if !file.snapshot.providers.is_empty()
                || !file.snapshot.projects.is_empty()
                || !file.snapshot.orgs.is_empty()
            {
                tracing::warn!(path = %config_path.display(),
                    "control-plane mode: the config file's providers, routes, projects and orgs are ignored; snapshots come from the control plane");
            }
            let live = Arc::new(LiveConfig::new(
                ActiveConfig::empty(),
                config_path.to_owned(),
                metrics.clone(),
            ));
            let client = Arc::new(crate::control_plane::Client::new(
                cp.clone(),
                &s.listen,
                live.clone(),
                metrics.clone(),
            )?);
            client.load_last_known_good();
            (live, Some(client))
        }
    };

    let conf = ServerConf {
        threads: s.threads,
        work_stealing: s.work_stealing,
        grace_period_seconds: Some(s.shutdown_grace_seconds),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let redis = match s
        .limits
        .as_ref()
        .and_then(|l| l.redis_url.as_ref().zip(Some(l)))
    {
        Some((url, limits)) => {
            let url = url.resolve().context("server.limits.redis_url")?;
            Some(RedisLimiter::new(&url, limits, metrics.registry())?)
        }
        None => None,
    };
    let has_redis = redis.is_some();
    let mut gov = Governor::new(metrics.registry(), redis)?;
    let mut cache = crate::cache::ResponseCache::new(
        s.cache_memory_bytes,
        cache_shared_store(s.redis_url.as_ref())?,
        metrics.registry(),
    )?;
    let mut usage_shipper = None;
    let mut hits_shipper = None;
    let mut guardrail_shipper = None;
    let mut guardrails = crate::guardrails::GuardrailReporter::register(metrics.registry())?;
    let mut objects_shipper = None;
    let mut ownership = crate::ownership::Ownership::new(
        crate::ownership::build(s.redis_url.as_ref())?,
        crate::ownership::OwnershipMetrics::register(metrics.registry())?,
    );
    let mut seeder = None;
    if let Some(cp) = &s.control_plane {
        let ingest_metrics = crate::ingest::IngestMetrics::register(metrics.registry())?;
        let target = |kind: &'static str, token: &gateway_schema::SecretRef, field: &str| {
            anyhow::Ok(crate::ingest::Target {
                kind,
                url: cp
                    .url
                    .join(&format!("internal/v1/ingest/{kind}"))
                    .context("control_plane.url")?,
                secret: cp
                    .internal_secret
                    .resolve()
                    .context("control_plane.internal_secret")?,
                token: token
                    .resolve()
                    .with_context(|| format!("control_plane.{field}"))?,
            })
        };
        if let Some(token) = &cp.usage_ingest_token {
            let t = target("usage", token, "usage_ingest_token")?;
            let (queue, shipper) = crate::ingest::channel(t, &cp.ingest, ingest_metrics.clone())?;
            gov = gov.with_usage_ingest(queue);
            usage_shipper = Some(shipper);
        }
        if let Some(token) = &cp.cache_hits_ingest_token {
            let t = target("cache-hits", token, "cache_hits_ingest_token")?;
            let (queue, shipper) = crate::ingest::channel(t, &cp.ingest, ingest_metrics.clone())?;
            cache = cache.with_hit_ingest(queue);
            hits_shipper = Some(shipper);
        }
        if let Some(token) = &cp.guardrail_blocks_ingest_token {
            let t = target("guardrail-blocks", token, "guardrail_blocks_ingest_token")?;
            let (queue, shipper) = crate::ingest::channel(t, &cp.ingest, ingest_metrics.clone())?;
            guardrails = guardrails.with_ingest(queue);
            guardrail_shipper = Some(shipper);
        }
        match &cp.objects_ingest_token {
            Some(token) => {
                let target = target("objects", token, "objects_ingest_token")?;
                let (queue, shipper) =
                    crate::ingest::channel(target, &cp.ingest, ingest_metrics.clone())?;
                ownership = ownership.with_reporter(queue);
                if s.redis_url.is_none() {
                    ownership = ownership.until_seeded();
                }
                objects_shipper = Some(shipper);
                seeder = Some(());
            }
            None if s.redis_url.is_none() => tracing::warn!(
                "control_plane.objects_ingest_token is not set and there is no server.redis_url: \
                 provider-object ownership is kept in this process only and lost on restart"
            ),
            None => {}
        }
    }
    let ownership = Arc::new(ownership);
    let seeder = match (seeder, &s.control_plane, &cp_client) {
        (Some(()), Some(cp), Some(client)) => Some(crate::ownership::seed::Seeder::new(
            ownership.clone(),
            &cp.url,
            &cp.internal_secret
                .resolve()
                .context("control_plane.internal_secret")?,
            client.connections(),
        )?),
        _ => None,
    };
    let gov = Arc::new(gov);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    let gateway = Gateway {
        live: live.clone(),
        metrics: metrics.clone(),
        in_flight: in_flight.clone(),
        body_read_timeout: Duration::from_secs(s.body_read_timeout_seconds),
        body_budget: {
            let limit = s
                .body_memory_budget_bytes
                .unwrap_or_else(crate::overload::budget::default_budget);
            metrics.body_budget_limit.set(limit as i64);
            tracing::info!(bytes = limit, "request-body memory budget");
            crate::overload::budget::BodyBudget::new(limit, metrics.body_budget_used.clone())
        },
        max_in_flight: Some(s.max_in_flight),
        gov: gov.clone(),
        ownership,
        cache: Arc::new(cache),
        guardrails: Arc::new(guardrails),
        head_caps,
        idle_timeout_secs: s.idle_timeout_seconds,
        conn_metrics: conn_metrics.clone(),
        listener,
    };
    let mut proxy_app = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut opts = HttpServerOptions::default();
    // h2c applies to plain listeners only; on TLS, ALPN decides.
    opts.h2c = s.h2c;
    opts.h2_idle_timeout = Some(Duration::from_secs(s.idle_timeout_seconds));
    proxy_app.server_options = Some(opts);
    let mut guarded_proxy = Guarded::new(
        proxy_app,
        listener_limits(listener, max_connections, s.max_connections_per_source),
        conn_metrics.clone(),
    );
    // TLS is terminated by the connection guard, not Pingora's listener: the handshake then
    // counts against the connection cap and spends from the head deadline (see
    // `downstream_tls`). The listener itself is plain TCP either way.
    if let Some(tls) = &s.tls {
        let acceptor = crate::downstream_tls::acceptor(&tls.cert_path, &tls.key_path)
            .context("loading the TLS certificate and key")?;
        guarded_proxy = guarded_proxy.with_tls(acceptor);
    }
    let mut proxy = Service::new("gateway".to_owned(), guarded_proxy);
    // Each client connection's read buffer (Pingora's default is 64 KiB; see the setting).
    let read_buffer = L4BufferSettings::new(s.read_buffer_bytes, DEFAULT_L4_WRITE_BUFFER_SIZE);
    proxy.add_listener(ListenerConfig::tcp(s.listen.as_str()).l4_buffer(read_buffer));

    let mut admin = Service::new(
        "admin".to_owned(),
        Guarded::new(
            AdminServer {
                app: AdminApp {
                    metrics: metrics.clone(),
                    live: live.clone(),
                    draining: draining.clone(),
                },
                head_caps,
                idle_timeout_secs: s.idle_timeout_seconds,
                conn_metrics: conn_metrics.clone(),
            },
            listener_limits("admin", s.admin_max_connections, None),
            conn_metrics,
        ),
    );
    admin.threads = Some(1);
    admin.add_listener(ListenerConfig::tcp(s.admin_listen.as_str()).l4_buffer(read_buffer));

    let reloader = background_service(
        "config-reload",
        Reloader {
            live,
            watch_file: s.watch_config,
            file_snapshots: cp_client.is_none(),
        },
    );
    let exit = ExitBarrier::default();
    let drainer = background_service(
        "drain",
        Drainer {
            in_flight,
            draining,
            exit: exit.clone(),
        },
    );

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(reloader);
    server.add_service(drainer);
    if let Some(client) = cp_client {
        server.add_service(background_service(
            "control-plane-spend",
            crate::control_plane::spend::SpendSync {
                client: client.clone(),
                gov: gov.clone(),
            },
        ));
        server.add_service(background_service(
            "control-plane",
            crate::control_plane::ControlPlaneClient(client),
        ));
    }
    if let Some(shipper) = usage_shipper {
        server.add_service(background_service(
            "usage-ingest",
            Shipper(shipper, exit.join()),
        ));
    }
    if let Some(shipper) = hits_shipper {
        server.add_service(background_service(
            "cache-hits-ingest",
            Shipper(shipper, exit.join()),
        ));
    }
    if let Some(shipper) = guardrail_shipper {
        server.add_service(background_service(
            "guardrail-blocks-ingest",
            Shipper(shipper, exit.join()),
        ));
    }
    if let Some(shipper) = objects_shipper {
        server.add_service(background_service(
            "objects-ingest",
            Shipper(shipper, exit.join()),
        ));
    }
    if let Some(seeder) = seeder {
        server.add_service(background_service("ownership-seed", seeder));
    }
    if has_redis {
        server.add_service(background_service(
            "redis-charges",
            ChargeFlusher {
                gov,
                exit: exit.join(),
            },
        ));
    }
    tracing::info!(listen = %s.listen, admin = %s.admin_listen, threads = s.threads, "gateway starting");
    server.run_forever();
}

/// Half of the descriptors left after a reserve of 1024 (every proxied request also holds an
/// upstream descriptor), at least 64 and at most 10,000.
fn default_max_connections(nofile: Option<u64>) -> usize {
    let limit = nofile.unwrap_or(1024);
    (limit.saturating_sub(1024) / 2).clamp(64, 10_000) as usize
}

/// Sends token and spend charges to Redis in batches; the last batch after the last request.
struct ChargeFlusher {
    gov: Arc<Governor>,
    exit: ExitTask,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for ChargeFlusher {
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        self.gov.run_redis_flusher(self.exit.signal()).await;
        self.exit.finish();
    }
}

/// The response cache's Redis tier, when `server.redis_url` is set.
fn cache_shared_store(
    url: Option<&gateway_schema::SecretRef>,
) -> anyhow::Result<Option<crate::cache::redis::SharedStore>> {
    let Some(r) = url else {
        return Ok(None);
    };
    let url = r.resolve().context("server.redis_url")?;
    Ok(Some(crate::cache::redis::SharedStore::new(&url)?))
}

/// Ships one kind of ingest records (usage, cache hits, ...) to the control plane; what is
/// left after the last request is delivered (or spooled) before the process exits.
struct Shipper<T>(crate::ingest::Shipper<T>, ExitTask);

#[async_trait::async_trait]
impl<T> pingora::services::background::BackgroundService for Shipper<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    async fn start(&self, _shutdown: pingora::server::ShutdownWatch) {
        self.0.run(self.1.signal()).await;
        self.1.finish();
    }
}
