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
enum Command {
    /// Run the gateway (the default).
    Run {
        /// Standalone config file (reloaded on SIGHUP and on change).
        #[arg(
            long,
            short,
            default_value = "conf/quickstart.yaml",
            env = "GATEWAY_CONFIG"
        )]
        config: PathBuf,
    },
    /// Validate a config file, secrets included, and exit.
    CheckConfig {
        #[arg(
            long,
            short,
            default_value = "conf/quickstart.yaml",
            env = "GATEWAY_CONFIG"
        )]
        config: PathBuf,
    },
    /// Mint a virtual key for a project: prints the key once and the digest to configure.
    MintKey {
        /// Project slug.
        #[arg(long)]
        project: String,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        config: PathBuf::from("conf/quickstart.yaml"),
    }) {
        Command::Run { config } => {
            init_logging();
            gateway::server::run(&config)
        }
        Command::CheckConfig { config } => {
            let file = gateway::config::GatewayFile::load(&config)?;
            gateway::state::ActiveConfig::build(&file.snapshot, 1)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::MintKey { project } => {
            print!("{}", gateway::mint::mint(&project)?);
            Ok(())
        }
    }
}
