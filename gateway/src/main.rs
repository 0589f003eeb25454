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
    Run(ConfigArg),
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

const DEFAULT_CONFIG: &str = "conf/quickstart.yaml";

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

fn main() -> std::process::ExitCode {
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
        Command::Run(ConfigArg { config })
    };
    match cli.command.unwrap_or_else(default_run) {
        Command::Run(ConfigArg { config }) => {
            init_logging();
            gateway::server::run(&config)
        }
        Command::CheckConfig(ConfigArg { config }) => {
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
