//! The `controlplane` binary: `serve`, `backup --out FILE`, `restore --in FILE`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use controlplane::config::Config;

#[derive(Parser)]
#[command(name = "controlplane", about = "AI gateway control plane")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the API and admin servers.
    Serve {
        /// Config file.
        #[arg(long, default_value = "conf/controlplane.yaml")]
        config: PathBuf,
    },
    /// Write the whole store to a JSON file.
    Backup {
        /// Config file (for the database settings).
        #[arg(long, default_value = "conf/controlplane.yaml")]
        config: PathBuf,
        /// Output file (created; an existing file is not overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a new Ed25519 snapshot-signing key pair: `<out>.key` (private, mode 0600) and
    /// `<out>.pub` (public, for every gateway).
    Keygen {
        /// Path prefix of the two files (neither may exist).
        #[arg(long, default_value = "snapshot-signing")]
        out: PathBuf,
    },
    /// Load a backup into an empty store.
    Restore {
        /// Config file (for the database settings).
        #[arg(long, default_value = "conf/controlplane.yaml")]
        config: PathBuf,
        /// Backup file.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logs();
    match Cli::parse().cmd {
        Cmd::Serve { config } => {
            let cfg = Config::load(&config)?;
            let listener = tokio::net::TcpListener::bind(cfg.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
            let admin = tokio::net::TcpListener::bind(cfg.server.admin_listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.server.admin_listen))?;
            controlplane::run(listener, admin, cfg, shutdown_signal()).await?;
        }
        Cmd::Backup { config, out } => {
            let cfg = Config::load(&config)?;
            let store = controlplane::connect_store(&cfg).await?;
            let counts = controlplane::backup::backup_to_file(&store, &out).await?;
            println!("backup written to {}: {counts}", out.display());
        }
        Cmd::Keygen { out } => {
            let (private, public) = controlplane::keygen::write_pair(&out)?;
            println!(
                "private key: {} (mode 0600; reference it as snapshots.signing_key: file:{})\npublic key:  {} (give it to every gateway as --snapshot-public-key file:...)",
                private.display(),
                private.display(),
                public.display()
            );
        }
        Cmd::Restore { config, input } => {
            let cfg = Config::load(&config)?;
            let store = controlplane::connect_store(&cfg).await?;
            let counts = controlplane::backup::restore_from_file(&store, &input).await?;
            println!("restored from {}: {counts}", input.display());
        }
    }
    Ok(())
}
