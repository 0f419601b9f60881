//! The `phonetree` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use phonetree::config::{Config, parse_port_range};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "phonetree", version, about = "IVR and call-routing engine")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        default_value = "phonetree.yaml",
        env = "PHONETREE_CONFIG"
    )]
    config: PathBuf,
    /// SIP listen address (UDP and TCP), e.g. 0.0.0.0:5060.
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// HTTP admin listen address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// RTP port range, e.g. 10000-20000.
    #[arg(long, value_name = "LO-HI")]
    rtp_ports: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (the default).
    Serve(ServeArgs),
    /// Compile the flows and prompts; print every error with file:line:column.
    Check {
        /// Flows directory (default: the one in the config).
        dir: Option<PathBuf>,
        /// Prompts directory (default: the one in the config).
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Check { dir, prompts }) => check(&cli.serve.config, dir, prompts),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phonetree: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // rsipstack logs every datagram at info; keep it to warnings unless asked.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rsipstack=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let explicit = std::env::args().any(|a| a == "--config" || a.starts_with("--config="))
        || std::env::var_os("PHONETREE_CONFIG").is_some();
    let mut config = Config::load(&args.config, explicit)?;
    if let Some(sip) = args.sip {
        config.sip_listen = sip;
    }
    if let Some(http) = args.http {
        config.http_listen = http;
    }
    if let Some(r) = &args.rtp_ports {
        config.rtp_ports = parse_port_range(r).map_err(|e| anyhow::anyhow!("--rtp-ports: {e}"))?;
    }
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("phonetree-rt")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let engine = phonetree::runtime::Engine::start(config).await?;
        eprintln!(
            "phonetree listening: SIP {} (UDP+TCP), HTTP http://{}  — call sip:ivr@{}",
            engine.sip_addr(),
            engine.http_addr(),
            engine.sip_addr()
        );
        wait_for_signals(&engine).await;
        tracing::info!("shutting down");
        engine.shutdown().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

async fn wait_for_signals(engine: &phonetree::runtime::Engine) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => return,
            _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => {
                match engine.reload().await {
                    Ok(v) => tracing::info!(version = v, "SIGHUP: flows reloaded"),
                    Err(e) => tracing::warn!(errors = e.len(), "SIGHUP: reload refused"),
                }
            }
        }
    }
}

fn check(
    config_path: &std::path::Path,
    dir: Option<PathBuf>,
    prompts: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, false)?;
    let flows_dir = dir.unwrap_or(config.flows_dir);
    let prompts_dir = prompts.unwrap_or(config.prompts_dir);
    match phonetree::catalog::Catalog::load(&flows_dir, &prompts_dir, 1) {
        Ok(c) => {
            for w in &c.warnings {
                println!("{w}");
            }
            println!(
                "ok: {} flow(s), {} prompt(s), {} warning(s)",
                c.flows.flow_names().count(),
                c.prompts.len(),
                c.warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
