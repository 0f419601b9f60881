//! The `phonetree` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use phonetree::catalog::{Catalog, CatalogErrors, queue_names_from_config};
use phonetree::config::{Config, parse_port_range};
use phonetree::flow::{self, graph::GraphFormat, sim::parse_digits, testcase};
use phonetree::media::types::{Digit, PromptId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Parser)]
#[command(name = "phonetree", version, about = "IVR and call-routing engine")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log format on stderr: text (coloured only on a terminal) or json (one object a line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PHONETREE_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
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
    /// Do not reload the flows when a file in the flows or prompts directory changes.
    #[arg(long)]
    no_watch: bool,
    /// On SIGTERM, calls in progress may finish for this long (new calls get 503); then
    /// the rest are ended. A second SIGTERM, or Ctrl-C, ends them at once.
    #[arg(long, default_value = "5m", env = "PHONETREE_DRAIN_DEADLINE")]
    drain_deadline: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine (the default).
    Serve(ServeArgs),
    /// Compile the flows and prompts; print every error with file:line:column.
    Check {
        /// A flow file or a flows directory (default: the one in the config).
        #[arg(value_name = "FILE_OR_DIR")]
        dir: Option<PathBuf>,
        /// Prompts directory (default: the one in the config).
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
    /// Run a call through a flow offline and print what the caller hears.
    /// Queues take the call at position 1 and an agent answers after 10 s;
    /// callbacks are registered and transfers succeed.
    Simulate(SimulateArgs),
    /// Run the flow test cases in DIR/tests/ (`ok`/`FAILED` per case).
    Test {
        /// Flows directory (default: the one in the config).
        dir: Option<PathBuf>,
        /// Prompts directory (default: the one in the config).
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Only run cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Load customers from a CSV file into the SQLite directory (all rows or none).
    Import {
        /// The CSV file (columns as in data/customers.csv).
        csv: PathBuf,
        /// The database (default: `directory.path` in the config).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Ask a running engine to drain: it refuses new calls (503), lets the calls in
    /// progress finish, and exits when the last one ends or at the deadline.
    Drain {
        /// The engine's admin URL (default: http.listen of the config).
        #[arg(long)]
        url: Option<String>,
        /// An admin token.
        #[arg(long, env = "PHONETREE_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Calls still up after this long are ended.
        #[arg(long, default_value = "5m")]
        deadline: String,
    },
    /// Draw a flow as a Mermaid or Graphviz DOT graph.
    Graph {
        /// Flow name.
        flow: String,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormatArg,
        /// A flow file or a flows directory (default: the one in the config).
        #[arg(long, value_name = "FILE_OR_DIR")]
        dir: Option<PathBuf>,
        /// Prompts directory (default: the one in the config).
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum GraphFormatArg {
    Mermaid,
    Dot,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// A flow file or a flows directory (default: the one in the config).
    #[arg(value_name = "FILE_OR_DIR")]
    path: Option<PathBuf>,
    /// Run this flow (default: route --number like a real call).
    #[arg(long, conflicts_with = "number")]
    flow: Option<String>,
    /// The dialled number, routed like a real call.
    #[arg(long, default_value = "ivr")]
    number: String,
    /// The calling number (`$caller`).
    #[arg(long, default_value = "anonymous")]
    caller: String,
    /// Keys, one comma-separated group each time the flow listens: "1,123456#".
    #[arg(long, conflicts_with = "interactive")]
    digits: Option<String>,
    /// Wall-clock time of the call, e.g. 2026-12-25T10:00:00-05:00,
    /// 2026-12-25T10:00[Europe/Berlin] or 2026-12-25T10:00 (local time); default: now.
    #[arg(long)]
    at: Option<String>,
    /// Read the keys from the terminal, one line each time the flow listens.
    #[arg(long)]
    interactive: bool,
    /// Where `lookup`, `verify_pin` and `update` go: `configured` (the directory of the
    /// configuration, as a real call: the SQLite file or the HTTP store) or `none` (no
    /// answers: directory nodes take their `timeout` branch).
    #[arg(long, default_value = "configured", value_parser = ["configured", "none"])]
    directory: String,
    /// Prompts directory (default: the one in the config).
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// Time between keys of a group.
    #[arg(long, default_value = "300ms")]
    key_gap: String,
    /// Stop after this much simulated call time.
    #[arg(long, default_value = "10m")]
    limit: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Check { dir, prompts }) => check(&cli.serve.config, dir, prompts),
        Some(Command::Simulate(args)) => simulate(&cli.serve.config, args),
        Some(Command::Test {
            dir,
            prompts,
            filter,
        }) => test(&cli.serve.config, dir, prompts, filter),
        Some(Command::Graph {
            flow,
            format,
            dir,
            prompts,
        }) => graph(&cli.serve.config, &flow, format, dir, prompts),
        Some(Command::Import { csv, db }) => import(&cli.serve.config, &csv, db),
        Some(Command::Drain {
            url,
            token,
            deadline,
        }) => drain(&cli.serve.config, url, token, &deadline),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phonetree: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // The stack's own lines are mostly per message: warnings only unless asked. Even when
    // asked (RUST_LOG=debug), they name method, status, Call-ID and CSeq, never headers or
    // bodies (vendor/rsipstack/PATCHES.md §3; INFO bodies carry PIN digits).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rsipstack=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Escape codes only where a person reads them, not in journald or a log file.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
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
    if let Ok(token) = std::env::var("PHONETREE_ADMIN_TOKEN") {
        config.add_admin_token("PHONETREE_ADMIN_TOKEN", &token);
    }
    if let Some(r) = &args.rtp_ports {
        config.rtp_ports = parse_port_range(r).map_err(|e| anyhow::anyhow!("--rtp-ports: {e}"))?;
    }
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args)?;
    let drain_deadline = flow::compile::parse_duration(&args.drain_deadline)
        .map_err(|e| anyhow::anyhow!("--drain-deadline: {e}"))?;
    let watch_dirs = vec![config.flows_dir.clone(), config.prompts_dir.clone()];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("phonetree-rt")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let engine = phonetree::runtime::Engine::start(config).await?;
        // A wildcard address cannot be dialled; show loopback with the real port instead.
        let mut dial = engine.sip_addr();
        if dial.ip().is_unspecified() {
            dial.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        eprintln!(
            "phonetree listening: SIP {} (UDP+TCP), HTTP http://{}  — call sip:ivr@{}",
            engine.sip_addr(),
            engine.http_addr(),
            dial
        );
        if let Some(token) = engine.session_token() {
            // On the terminal only, never in the log: it is a credential.
            eprintln!(
                "dashboard: http://{}/#token={token}  (admin token for this run; set http.tokens or PHONETREE_ADMIN_TOKEN for a lasting one)",
                engine.http_addr()
            );
        }
        // Saving a flow or prompt file reloads (debounced); a broken file is refused.
        let watcher = if args.no_watch {
            None
        } else {
            match phonetree::runtime::filewatch::spawn(engine.shared().clone(), watch_dirs) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the flow files; reload with SIGHUP or POST /api/flows/reload");
                    None
                }
            }
        };
        tokio::select! {
            _ = wait_for_signals(&engine, drain_deadline) => {}
            end = engine.drained() => match end {
                phonetree::runtime::DrainEnd::Idle => tracing::info!("drained: the last call ended"),
                phonetree::runtime::DrainEnd::Deadline => tracing::warn!(
                    active_calls = engine.shared().active_calls(),
                    "drain deadline reached; ending the remaining calls"
                ),
            },
        }
        tracing::info!("shutting down");
        drop(watcher);
        engine.shutdown().await;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// Until the engine should stop at once: Ctrl-C, or a second SIGTERM. The first SIGTERM
/// (what systemd, Kubernetes and `docker stop` send) starts a drain, the same as the admin
/// API's: new INVITEs get 503 with Retry-After, calls in progress finish, and `serve`
/// ends when the last one does or at the deadline. SIGHUP reloads the flows.
async fn wait_for_signals(engine: &phonetree::runtime::Engine, drain_deadline: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {
                if engine.shared().draining() {
                    tracing::warn!(
                        active_calls = engine.shared().active_calls(),
                        "second SIGTERM: ending the remaining calls now"
                    );
                    return;
                }
                tracing::info!("SIGTERM: draining (send it again to end the calls at once)");
                engine.shared().start_drain(std::time::Instant::now(), drain_deadline);
            }
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
    config_path: &Path,
    dir: Option<PathBuf>,
    prompts: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, false)?;
    let flows_dir = dir.unwrap_or(config.flows_dir);
    let prompts_dir = prompts.unwrap_or(config.prompts_dir);
    let queues = configured_queues(config_path)?;
    match load_catalog(&flows_dir, &prompts_dir, queues.as_ref()) {
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

/// Prompts and flows, as the engine loads them; `path` is a flows directory
/// or a single flow file. Queue names are checked against `queues` when known.
fn load_catalog(
    path: &Path,
    prompts_dir: &Path,
    queues: Option<&std::collections::BTreeSet<String>>,
) -> Result<Catalog, CatalogErrors> {
    Catalog::load_with(path, prompts_dir, 1, &flow::CompileOptions { queues })
}

/// The queue names of the configuration file, for checking `queue` and
/// `callback` nodes; `None` (with a note) when there is no such file.
fn configured_queues(
    config_path: &Path,
) -> anyhow::Result<Option<std::collections::BTreeSet<String>>> {
    let names = queue_names_from_config(config_path)?;
    if names.is_none() {
        eprintln!(
            "note: {} not found: queue names are not checked",
            config_path.display()
        );
    }
    Ok(names)
}

/// Flows and prompts for the offline tools; errors printed, `None` to exit 1.
fn load_for_tools(
    config_path: &Path,
    path: Option<PathBuf>,
    prompts: Option<PathBuf>,
) -> anyhow::Result<Option<Catalog>> {
    let config = Config::load(config_path, false)?;
    let path = path.unwrap_or(config.flows_dir);
    let prompts_dir = prompts.unwrap_or(config.prompts_dir);
    let queues = configured_queues(config_path)?;
    match load_catalog(&path, &prompts_dir, queues.as_ref()) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{w}");
            }
            Ok(Some(c))
        }
        Err(e) => {
            println!("{e}");
            Ok(None)
        }
    }
}

/// `--at`: RFC 3339 with an offset or a zone, or a local time in this machine's zone.
fn parse_at(s: &str) -> anyhow::Result<SystemTime> {
    match testcase::parse_at(s) {
        Ok(t) => Ok(t),
        Err(e) => s
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::system()).ok())
            .map(|z| SystemTime::from(z.timestamp()))
            .ok_or_else(|| anyhow::anyhow!("--at: {e}")),
    }
}

fn simulate(config_path: &Path, args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let Some(catalog) = load_for_tools(config_path, args.path.clone(), args.prompts.clone())?
    else {
        return Ok(ExitCode::FAILURE);
    };
    let set = &catalog.flows;
    let flow = match &args.flow {
        Some(name) => set.flow_by_name(name).ok_or_else(|| {
            anyhow::anyhow!(
                "no flow named `{name}` (flows: {})",
                set.flow_names().collect::<Vec<_>>().join(", ")
            )
        })?,
        None => set
            .route(&args.number)
            .ok_or_else(|| anyhow::anyhow!("no route for number `{}`", args.number))?,
    };
    let at = match &args.at {
        Some(s) => parse_at(s)?,
        None => SystemTime::now(),
    };
    let key_gap = flow::compile::parse_duration(&args.key_gap)
        .map_err(|e| anyhow::anyhow!("--key-gap: {e}"))?;
    let limit =
        flow::compile::parse_duration(&args.limit).map_err(|e| anyhow::anyhow!("--limit: {e}"))?;
    let steps = match &args.digits {
        Some(d) => testcase::Step::groups(d).map_err(|e| anyhow::anyhow!("--digits: {e}"))?,
        None => Vec::new(),
    };
    let directory = if args.directory == "configured" {
        let config = Config::load(config_path, false)?;
        let clock: std::sync::Arc<dyn phonetree::directory::Clock> =
            std::sync::Arc::new(phonetree::runtime::clock::SystemClock::default());
        let store = phonetree::directory::open(&config.directory, clock).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the customer directory ({e}); `--directory none` simulates without it"
            )
        })?;
        Some(store)
    } else {
        None
    };
    let at_unix_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let prompts = catalog.prompts.clone();
    let name = move |p: PromptId| testcase::prompt_name(&prompts, p);
    println!(
        "flow `{}`: caller {}, dialled {}, at {}",
        set.flow_name(flow),
        args.caller,
        args.number,
        jiff::Timestamp::try_from(at)
            .map(|t| t.to_string())
            .unwrap_or_default()
    );
    let mut printer = Printer {
        inner: if args.interactive {
            Box::new(Keyboard {
                gap: key_gap,
                node: String::new(),
                eof: false,
            })
        } else {
            Box::new(testcase::Scripted::new(steps, key_gap))
        },
        name: Box::new(name),
        directory,
        at_unix_ms,
    };
    let len = |p: PromptId| {
        catalog
            .prompts
            .get(p)
            .map(|p| p.duration())
            .unwrap_or_default()
    };
    let call = phonetree::flow::CallInfo {
        caller: args.caller.clone(),
        dialled: args.number.clone(),
    };
    let trace = testcase::drive(set.clone(), flow, call, Some(at), limit, &len, &mut printer);
    println!(
        "outcome: {} after {:.1}s",
        trace.outcome_text(),
        trace.duration.as_secs_f64()
    );
    println!("path: {}", trace.path.join(" -> "));
    let set_vars: Vec<String> = trace
        .vars
        .iter()
        .filter(|(n, _)| n != "caller" && n != "dialled")
        .filter_map(|(n, v)| v.as_ref().map(|v| format!("{n}={v:?}")))
        .collect();
    if !set_vars.is_empty() {
        println!("vars: {}", set_vars.join(", "));
    }
    if !trace.surveys.is_empty() {
        let answers: Vec<String> = trace
            .surveys
            .iter()
            .map(|(name, score)| match score {
                Some(n) => format!("{name}={n}"),
                None => format!("{name}=no answer"),
            })
            .collect();
        println!("surveys: {}", answers.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each event as the simulated call goes.
struct Printer {
    inner: Box<dyn testcase::Caller>,
    name: Box<dyn Fn(PromptId) -> String>,
    /// The configured customer directory (`--directory configured`).
    directory: Option<Box<dyn phonetree::directory::Directory>>,
    at_unix_ms: i64,
}

impl testcase::Caller for Printer {
    fn keys(&mut self, now: Duration, listening: bool) -> Vec<(Duration, Digit)> {
        self.inner.keys(now, listening)
    }

    fn observe(&mut self, at: Duration, event: &testcase::TraceEvent) {
        println!(
            "{:>8.3}s  {}",
            at.as_secs_f64(),
            testcase::describe(event, &*self.name)
        );
        self.inner.observe(at, event);
    }

    fn queue(&mut self, queue: &str) -> testcase::QueueScript {
        self.inner.queue(queue)
    }

    fn directory(
        &mut self,
        request: &phonetree::directory::DirectoryRequest,
    ) -> Option<phonetree::directory::DirectoryResponse> {
        let store = self.directory.as_deref()?;
        Some(phonetree::directory::execute(
            store,
            request,
            self.at_unix_ms,
        ))
    }

    fn callback(&mut self, queue: &str, number: &str) -> flow::QueueEvent {
        self.inner.callback(queue, number)
    }

    fn transfer(&mut self, target: &str) -> bool {
        self.inner.transfer(target)
    }
}

/// `simulate --interactive`: asks for keys on stdin whenever the flow listens.
struct Keyboard {
    gap: Duration,
    node: String,
    eof: bool,
}

impl testcase::Caller for Keyboard {
    fn keys(&mut self, now: Duration, listening: bool) -> Vec<(Duration, Digit)> {
        use std::io::Write;
        if !listening || self.eof {
            return Vec::new();
        }
        loop {
            print!(
                "{:>8.3}s  [{}] keys (Enter: stay silent, Ctrl-D: silent to the end)> ",
                now.as_secs_f64(),
                self.node
            );
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => {
                    println!();
                    self.eof = true;
                    return Vec::new();
                }
                Ok(_) => {}
            }
            match parse_digits(&line.replace(',', "")) {
                Ok(groups) => {
                    return groups
                        .into_iter()
                        .flatten()
                        .enumerate()
                        .map(|(i, d)| (now + self.gap * (i as u32 + 1), d))
                        .collect();
                }
                Err(e) => println!("          {e}; keys are 0-9 * # A-D"),
            }
        }
    }

    fn observe(&mut self, _at: Duration, event: &testcase::TraceEvent) {
        if let testcase::TraceEvent::Node(n) = event {
            self.node = n.clone();
        }
    }
}

fn test(
    config_path: &Path,
    dir: Option<PathBuf>,
    prompts: Option<PathBuf>,
    filter: Option<String>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, false)?;
    let dir = dir.unwrap_or(config.flows_dir);
    let prompts_dir = prompts.unwrap_or(config.prompts_dir);
    let queues = configured_queues(config_path)?;
    let suite = testcase::run_dir_with(&dir, &prompts_dir, filter.as_deref(), queues.as_ref());
    print!("{}", suite.render());
    Ok(if suite.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn graph(
    config_path: &Path,
    flow: &str,
    format: GraphFormatArg,
    dir: Option<PathBuf>,
    prompts: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let Some(catalog) = load_for_tools(config_path, dir, prompts)? else {
        return Ok(ExitCode::FAILURE);
    };
    let set = &catalog.flows;
    let id = set.flow_by_name(flow).ok_or_else(|| {
        anyhow::anyhow!(
            "no flow named `{flow}` (flows: {})",
            set.flow_names().collect::<Vec<_>>().join(", ")
        )
    })?;
    let format = match format {
        GraphFormatArg::Mermaid => GraphFormat::Mermaid,
        GraphFormatArg::Dot => GraphFormat::Dot,
    };
    let out = flow::graph::render(set, id, format)
        .ok_or_else(|| anyhow::anyhow!("flow `{flow}` cannot be drawn"))?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn import(
    config_path: &std::path::Path,
    csv: &std::path::Path,
    db: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path, false)?;
    let db = db.unwrap_or(config.directory.path);
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store = phonetree::directory::sqlite::SqliteDirectory::open(&db)
        .with_context(|| format!("opening {}", db.display()))?;
    match store.import_csv(csv) {
        Ok(r) => {
            println!(
                "imported {} customer(s), {} phone number(s), {} account(s), {} order(s), {} appointment(s) into {}",
                r.customers,
                r.phones,
                r.accounts,
                r.orders,
                r.appointments,
                db.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", csv.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `phonetree drain`: POST /api/drain to a running engine. Plain HTTP/1.1 over a TCP
/// socket: the admin API listens on loopback or a private address and speaks only http.
fn drain(
    config_path: &Path,
    url: Option<String>,
    token: Option<String>,
    deadline: &str,
) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Write};
    let deadline =
        flow::compile::parse_duration(deadline).map_err(|e| anyhow::anyhow!("--deadline: {e}"))?;
    let authority = match url {
        Some(u) => {
            let rest = u.strip_prefix("http://").ok_or_else(|| {
                anyhow::anyhow!("--url: only http:// URLs are supported, got `{u}`")
            })?;
            rest.trim_end_matches('/').to_string()
        }
        None => {
            let config = Config::load(config_path, false)?;
            let mut addr = config.http_listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            addr.to_string()
        }
    };
    if authority.contains('/') {
        anyhow::bail!("--url: give the engine's base URL, like http://127.0.0.1:8080");
    }
    let body = format!("{{\"deadline_s\":{}}}", deadline.as_secs());
    let auth = token
        .filter(|t| !t.trim().is_empty())
        .map(|t| format!("Authorization: Bearer {}\r\n", t.trim()))
        .unwrap_or_default();
    let request = format!(
        "POST /api/drain HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(&authority)
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream
        .take(1024 * 1024)
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer of {authority}"))?;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{authority} did not answer HTTP"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    if status == 200 {
        println!("draining: {body}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("phonetree: drain refused ({status}): {body}");
        Ok(ExitCode::FAILURE)
    }
}
