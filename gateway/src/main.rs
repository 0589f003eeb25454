//! The `gateway` binary.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// AI gateway data plane.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
// Parsed once at start; boxing a flattened clap group would only add noise.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the gateway (the default).
    Run {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        control_plane: ControlPlaneArgs,
    },
    /// Validate a config file, secrets included, and exit.
    CheckConfig(ConfigArg),
    /// Mint a virtual key for a project: prints the key once and the digest to configure.
    MintKey {
        /// Project slug.
        #[arg(long)]
        project: String,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Standalone config file (reloaded on SIGHUP and on change).
    #[arg(long, short, default_value = DEFAULT_CONFIG, env = "GATEWAY_CONFIG")]
    config: PathBuf,
}

/// Control-plane mode from the command line (each overrides `server.control_plane.*`).
#[derive(clap::Args, Default)]
struct ControlPlaneArgs {
    /// Take snapshots from this control plane (`http(s)://host:port`) instead of the file.
    #[arg(long, env = "GATEWAY_CONTROL_PLANE")]
    control_plane: Option<url::Url>,
    /// The internal secret, as a reference: `env:NAME` or `file:/path`.
    #[arg(long, env = "GATEWAY_INTERNAL_SECRET", requires = "control_plane")]
    internal_secret: Option<gateway_schema::SecretRef>,
    /// The control plane's snapshot public key, as a reference: `env:NAME` or `file:/path`.
    #[arg(long, env = "GATEWAY_SNAPSHOT_PUBLIC_KEY", requires = "control_plane")]
    snapshot_public_key: Option<gateway_schema::SecretRef>,
    /// Where the last applied snapshot is kept.
    #[arg(long, env = "GATEWAY_LAST_KNOWN_GOOD", requires = "control_plane")]
    last_known_good: Option<PathBuf>,
    /// This gateway's id in the control plane's gateway list.
    #[arg(long, env = "GATEWAY_ID", requires = "control_plane")]
    gateway_id: Option<String>,
    /// The usage ingest token, as a reference.
    #[arg(long, env = "GATEWAY_USAGE_INGEST_TOKEN", requires = "control_plane")]
    usage_ingest_token: Option<gateway_schema::SecretRef>,
    /// The cache-hit ingest token, as a reference.
    #[arg(
        long,
        env = "GATEWAY_CACHE_HITS_INGEST_TOKEN",
        requires = "control_plane"
    )]
    cache_hits_ingest_token: Option<gateway_schema::SecretRef>,
    /// The guardrail-blocks ingest token, as a reference.
    #[arg(
        long,
        env = "GATEWAY_GUARDRAIL_BLOCKS_INGEST_TOKEN",
        requires = "control_plane"
    )]
    guardrail_blocks_ingest_token: Option<gateway_schema::SecretRef>,
    /// The objects ingest token (ownership records of provider objects), as a reference.
    #[arg(long, env = "GATEWAY_OBJECTS_INGEST_TOKEN", requires = "control_plane")]
    objects_ingest_token: Option<gateway_schema::SecretRef>,
}

impl ControlPlaneArgs {
    /// Merges the flags over the file's `server.control_plane` (flags win).
    fn merge(
        self,
        file: Option<gateway::config::ControlPlaneSettings>,
    ) -> anyhow::Result<Option<gateway::config::ControlPlaneSettings>> {
        let Some(url) = self.control_plane else {
            return Ok(file);
        };
        let (secret, key) = match (self.internal_secret, self.snapshot_public_key, &file) {
            (Some(s), Some(k), _) => (s, k),
            (s, k, Some(f)) => (
                s.unwrap_or_else(|| f.internal_secret.clone()),
                k.unwrap_or_else(|| f.public_key.clone()),
            ),
            _ => anyhow::bail!(
                "--control-plane needs --internal-secret and --snapshot-public-key \
                 (or server.control_plane.internal_secret and .public_key in the config file)"
            ),
        };
        let mut cp = file.unwrap_or(gateway::config::ControlPlaneSettings {
            url: url.clone(),
            internal_secret: secret.clone(),
            public_key: key.clone(),
            last_known_good: gateway::config::ControlPlaneSettings::default_last_known_good(),
            gateway_id: None,
            usage_ingest_token: None,
            cache_hits_ingest_token: None,
            guardrail_blocks_ingest_token: None,
            objects_ingest_token: None,
            ingest: Default::default(),
        });
        cp.url = url;
        cp.internal_secret = secret;
        cp.public_key = key;
        if let Some(p) = self.last_known_good {
            cp.last_known_good = p;
        }
        if let Some(id) = self.gateway_id {
            cp.gateway_id = Some(id);
        }
        if let Some(t) = self.usage_ingest_token {
            cp.usage_ingest_token = Some(t);
        }
        if let Some(t) = self.cache_hits_ingest_token {
            cp.cache_hits_ingest_token = Some(t);
        }
        if let Some(t) = self.guardrail_blocks_ingest_token {
            cp.guardrail_blocks_ingest_token = Some(t);
        }
        if let Some(t) = self.objects_ingest_token {
            cp.objects_ingest_token = Some(t);
        }
        Ok(Some(cp))
    }
}

const DEFAULT_CONFIG: &str = "conf/quickstart.yaml";

/// jemalloc, so memory freed after a burst goes back to the system: glibc's malloc keeps
/// per-thread arenas and held ~530 MB of a 570 MB peak after 20,000 idle connections closed.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (read by the allocator before `main`): a background thread
/// purges freed pages even when no thread allocates; dirty pages are returned after 1 s and
/// not kept as lazily-freed ("muzzy") pages, which would still count in RSS. Overridable at
/// run time with the `_RJEM_MALLOC_CONF` environment variable.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// jemalloc's figures for `gateway_allocator_bytes` (refreshed first: jemalloc caches its
/// statistics until the epoch advances).
#[cfg(feature = "jemalloc")]
fn jemalloc_stats() -> Option<gateway::metrics::AllocatorStats> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    let read = |r: tikv_jemalloc_ctl::Result<usize>| r.ok().map(|n| n as u64);
    Some(gateway::metrics::AllocatorStats {
        allocated: read(stats::allocated::read())?,
        active: read(stats::active::read())?,
        resident: read(stats::resident::read())?,
        mapped: read(stats::mapped::read())?,
        retained: read(stats::retained::read())?,
        metadata: read(stats::metadata::read())?,
    })
}

/// jemalloc's `const char *malloc_conf`.
#[cfg(feature = "jemalloc")]
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a 'static, immutable, NUL-terminated string.
#[cfg(feature = "jemalloc")]
unsafe impl Sync for MallocConf {}

/// The log filter: `GATEWAY_LOG` (an env-filter), `info` when unset or blank.
fn log_filter(from_env: Option<&str>) -> &str {
    from_env.filter(|s| !s.trim().is_empty()).unwrap_or("info")
}

/// JSON lines on stdout, filtered by `GATEWAY_LOG`. Pingora's recoverable per-connection ERROR
/// lines (TLS handshake failures, its upstream pool race) are counted instead of logged unless
/// the filter names `pingora_core` (see `gateway::pingora_log`).
fn init_logging() {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let from_env = std::env::var("GATEWAY_LOG").ok();
    let wanted = log_filter(from_env.as_deref());
    let filter = EnvFilter::try_new(wanted).unwrap_or_else(|_| EnvFilter::new("info"));
    let verbose = wanted.contains("pingora_core");
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stdout)
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(gateway::pingora_log::QuietPingora::installed(verbose))
        .with(json)
        .try_init();
}

fn main() -> std::process::ExitCode {
    #[cfg(feature = "jemalloc")]
    gateway::metrics::set_allocator_stats(jemalloc_stats);
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause only when the message does not already
/// say it (our error types embed their cause's text).
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let default_run = || {
        let config =
            std::env::var_os("GATEWAY_CONFIG").map_or_else(|| DEFAULT_CONFIG.into(), PathBuf::from);
        Command::Run {
            config: ConfigArg { config },
            control_plane: ControlPlaneArgs::default(),
        }
    };
    match cli.command.unwrap_or_else(default_run) {
        Command::Run {
            config: ConfigArg { config },
            control_plane,
        } => {
            init_logging();
            let mut file = gateway::config::GatewayFile::load(&config)?;
            file.server.control_plane = control_plane.merge(file.server.control_plane.take())?;
            gateway::server::run(&config, file)
        }
        Command::CheckConfig(ConfigArg { config }) => {
            let file = gateway::config::GatewayFile::load(&config)?;
            gateway::state::ActiveConfig::build(&file.snapshot, 1)?;
            // Resolves and parses server.redis_url (does not connect).
            gateway::ownership::build(file.server.redis_url.as_ref())?;
            if let Some(bundle) = &file.server.upstream_ca_bundle {
                gateway::upstream_tls::load(bundle)?;
            }
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::MintKey { project } => {
            print!("{}", gateway::mint::mint(&project)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_filter_defaults_to_info() {
        assert_eq!(log_filter(None), "info");
        assert_eq!(log_filter(Some(" ")), "info");
        assert_eq!(log_filter(Some("gateway=debug")), "gateway=debug");
    }
}
