//! The runtime: the only async code, and the only code that reads the clock.
//!
//! - **Owns:** sockets (SIP UDP/TCP through rsipstack, RTP in the media shards, HTTP), tasks
//!   and threads, the current `Catalog` (published on a `watch`), reload and shutdown.
//! - **Takes:** a checked `Config`.
//! - **Gives:** a running `Engine` with its bound addresses and a stream of call records.
//! - **Never:** holds call, flow or queue state itself — cores own their state; the runtime
//!   moves inputs in and outputs out, passing `Instant::now()` along.

pub mod agents;
pub mod bus;
pub mod clock;
pub mod dispatch;
pub mod filewatch;
pub mod logsample;
pub mod metrics;
pub mod records;
pub mod shard;
pub mod udp;

use crate::call::CallRecord;
use crate::catalog::{Catalog, CatalogErrors};
use crate::config::{Config, HttpToken};
use crate::sip::PRODUCT;
use bus::{AgentsMsg, DispatchMsg};
use dispatch::Dispatcher;
use metrics::Metrics;
use records::RecordSink;
use rsipstack::EndpointBuilder;
use rsipstack::transport::TransportLayer;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use shard::{ShardConfig, ShardHandle};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("flows or prompts are invalid:\n{0}")]
    Catalog(#[from] CatalogErrors),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("customer directory: {0}")]
    Directory(String),
    #[error("SIP stack: {0}")]
    Sip(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Insecure(String),
    #[error(
        "another phonetree is running on the data directory {0} (it holds {0}/phonetree.lock); \
         stop it, or give this one its own data_dir"
    )]
    DataDirInUse(String),
}

/// The last reload attempt, for `/api/flows`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReloadStatus {
    /// False until a reload was attempted, and after a refused one.
    pub ok: bool,
    /// Unix ms of the attempt (None: no reload since start).
    pub at_unix_ms: Option<u64>,
    /// The version serving after the attempt.
    pub version: u64,
    /// Each error with its location; empty when ok.
    pub errors: Vec<String>,
}

/// An agent action from the admin API, with where to send the ACD's answer.
pub type AgentCommandMsg = (
    String,
    agents::AgentCommand,
    tokio::sync::oneshot::Sender<Result<(), String>>,
);
type AgentCommandTx = mpsc::UnboundedSender<AgentCommandMsg>;
pub type AgentCommandRx = mpsc::UnboundedReceiver<AgentCommandMsg>;

/// The other ends of an `EngineShared` built without an engine (`EngineShared::detached`):
/// whoever holds them plays the engine's tasks.
pub struct Detached {
    pub catalog: watch::Sender<Arc<Catalog>>,
    pub reloads: mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<Result<u64, Vec<String>>>>,
    pub agents: watch::Sender<agents::AgentsView>,
    pub agent_commands: AgentCommandRx,
    pub last_reload: watch::Sender<ReloadStatus>,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// The last call ended.
    Idle,
    /// The deadline passed with calls still up (shutdown ends them).
    Deadline,
}

/// Live state the admin API reads. Counters only: no call state lives here.
pub struct EngineShared {
    pub catalog: watch::Receiver<Arc<Catalog>>,
    pub shards: Vec<ShardHandle>,
    pub screen: Arc<udp::ScreenStats>,
    pub reloads: AtomicU64,
    pub reload_tx: mpsc::UnboundedSender<tokio::sync::oneshot::Sender<Result<u64, Vec<String>>>>,
    /// Queues, agents and phone bindings, as the agents task last published them.
    pub agents: watch::Receiver<agents::AgentsView>,
    agent_tx: AgentCommandTx,
    pub metrics: Arc<Metrics>,
    pub last_reload: watch::Receiver<ReloadStatus>,
    /// `call-records.jsonl`, when records go to a file.
    pub records_file: Option<PathBuf>,
    /// Admin API bearer tokens (hashes).
    pub admin_tokens: Vec<HttpToken>,
    /// Read by the dispatcher on every new INVITE.
    draining: Arc<AtomicBool>,
    drain_deadline: watch::Sender<Option<Instant>>,
}

impl EngineShared {
    /// Live state with no engine behind it: for the admin API's tests and tools. The
    /// returned ends answer reloads and agent commands and publish views.
    pub fn detached(
        catalog: Arc<Catalog>,
        admin_tokens: Vec<HttpToken>,
        records_file: Option<PathBuf>,
    ) -> (Arc<EngineShared>, Detached) {
        let (catalog_tx, catalog_rx) = watch::channel(catalog);
        let (reload_tx, reload_rx) = mpsc::unbounded_channel();
        let (view_tx, view_rx) = watch::channel(agents::AgentsView::default());
        let (agent_tx, agent_rx) = mpsc::unbounded_channel();
        let (status_tx, status_rx) = watch::channel(ReloadStatus::default());
        let shared = EngineShared {
            catalog: catalog_rx,
            shards: Vec::new(),
            screen: Arc::new(udp::ScreenStats::default()),
            reloads: AtomicU64::new(0),
            reload_tx,
            agents: view_rx,
            agent_tx,
            metrics: Arc::new(Metrics::default()),
            last_reload: status_rx,
            records_file,
            admin_tokens,
            draining: Arc::new(AtomicBool::new(false)),
            drain_deadline: watch::channel(None).0,
        };
        (
            Arc::new(shared),
            Detached {
                catalog: catalog_tx,
                reloads: reload_rx,
                agents: view_tx,
                agent_commands: agent_rx,
                last_reload: status_tx,
            },
        )
    }

    /// Stops taking new calls (503 + Retry-After); calls in progress go on until they end
    /// or `deadline` after `now`. A second drain may bring the deadline closer, never push
    /// it out. Returns the deadline in force.
    pub fn start_drain(&self, now: Instant, deadline: Duration) -> Instant {
        self.draining.store(true, Ordering::Relaxed);
        let wanted = now + deadline;
        let mut in_force = wanted;
        self.drain_deadline.send_modify(|d| {
            in_force = d.map_or(wanted, |old| old.min(wanted));
            *d = Some(in_force);
        });
        tracing::warn!(
            deadline_s = deadline.as_secs(),
            active_calls = self.active_calls(),
            "draining: new calls refused; exiting when the last call ends"
        );
        in_force
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn drain_deadline(&self) -> Option<Instant> {
        *self.drain_deadline.borrow()
    }

    /// Resolves once a drain was asked for and either no call is left or its deadline
    /// passed; never while no drain was asked for.
    pub async fn drained(&self) -> DrainEnd {
        let mut rx = self.drain_deadline.subscribe();
        loop {
            let deadline = *rx.borrow_and_update();
            match deadline {
                None => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                Some(deadline) => {
                    if self.active_calls() == 0 {
                        return DrainEnd::Idle;
                    }
                    if Instant::now() >= deadline {
                        return DrainEnd::Deadline;
                    }
                    // Calls end on the shards' threads; a short poll of their counters
                    // costs nothing and needs no extra channel from every shard.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = rx.changed() => {}
                    }
                }
            }
        }
    }

    pub fn active_calls(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.stats.active_calls.load(Ordering::Relaxed))
            .sum()
    }

    /// Calls in progress on every shard, as the shards last published them (≤ 1 s old).
    pub fn calls(&self) -> Vec<crate::call::CallSummary> {
        let mut calls: Vec<_> = self
            .shards
            .iter()
            .flat_map(|s| s.calls.borrow().iter().cloned().collect::<Vec<_>>())
            .collect();
        calls.sort_by_key(|c| c.id);
        calls
    }

    /// Logs an agent in or out, pauses or unpauses them (the ACD decides if it can).
    pub async fn agent_command(
        &self,
        agent: &str,
        command: agents::AgentCommand,
    ) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self
            .agent_tx
            .send((agent.to_string(), command, tx))
            .is_err()
        {
            return Err("engine is shutting down".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("engine is shutting down".into()))
    }

    /// Compiles the flows and prompts again; on success new calls take the new version.
    pub async fn reload(&self) -> Result<u64, Vec<String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.reload_tx.send(tx).is_err() {
            return Err(vec!["engine is shutting down".into()]);
        }
        rx.await
            .unwrap_or_else(|_| Err(vec!["engine is shutting down".into()]))
    }
}

pub struct Engine {
    sip_addr: SocketAddr,
    http_addr: SocketAddr,
    records: RecordSink,
    shared: Arc<EngineShared>,
    cancel: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The admin token made for this run when none was configured (loopback only).
    session_token: Option<String>,
    /// Held (locked) while the engine runs, so a second engine cannot append to the same
    /// call records; the OS releases it when the process ends, however it ends.
    _data_lock: Option<std::fs::File>,
}

/// An exclusive lock on `data_dir/phonetree.lock` (created if needed): two engines writing
/// one call-records file would interleave and lose records.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, RuntimeError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("phonetree.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(RuntimeError::DataDirInUse(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(RuntimeError::Io(e)),
    }
}

impl Engine {
    /// Loads flows and prompts, binds every socket, and starts serving.
    pub async fn start(mut config: Config) -> Result<Engine, RuntimeError> {
        crate::admin::auth::check_bind_safety(config.http_listen, &config.http_tokens)
            .map_err(RuntimeError::Insecure)?;
        let data_lock = if config.call_records_file {
            Some(lock_data_dir(&config.data_dir)?)
        } else {
            None
        };
        // No token configured (only allowed on loopback): make one for this run, so the
        // dashboard of a fresh `cargo run` is usable without opening the API to anyone who
        // can reach the port. `serve` prints the dashboard link with it.
        let session_token = if config.http_tokens.is_empty() {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| RuntimeError::Sip(e.to_string()))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            config.add_admin_token("session", &token);
            Some(token)
        } else {
            None
        };
        let metrics = Arc::new(Metrics::default());
        let draining = Arc::new(AtomicBool::new(false));
        // Flows are checked against the configured queues; with no `queues:` at all (a bare
        // default configuration) names are not checked and a `queue` node takes its
        // `failed` branch at run time, so the demo flows still start.
        let queue_names = config.queue_names();
        let queue_check = (!queue_names.is_empty()).then(|| queue_names.clone());
        let catalog = Arc::new(Catalog::load_with(
            &config.flows_dir,
            &config.prompts_dir,
            1,
            &crate::flow::CompileOptions {
                queues: queue_check.as_ref(),
            },
        )?);
        for w in &catalog.warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(
            version = catalog.version,
            flows = catalog.flows.flow_names().count(),
            prompts = catalog.prompts.len(),
            "flows and prompts loaded"
        );
        let (catalog_tx, catalog_rx) = watch::channel(catalog);
        let cancel = CancellationToken::new();

        // SIP: UDP through the screening socket, TCP on the same port. With port 0 the OS
        // picks a UDP port whose TCP twin may be taken by someone else: pick again.
        let mut attempts = if config.sip_listen.port() == 0 { 20 } else { 1 };
        let (udp, sip_addr) = loop {
            let udp = tokio::net::UdpSocket::bind(config.sip_listen)
                .await
                .map_err(|source| RuntimeError::Bind {
                    what: "SIP UDP",
                    addr: config.sip_listen,
                    source,
                })?;
            let sip_addr = udp.local_addr()?;
            attempts -= 1;
            match std::net::TcpListener::bind(sip_addr) {
                Ok(_) => break (udp, sip_addr),
                Err(_) if attempts > 0 => continue,
                Err(source) => {
                    return Err(RuntimeError::Bind {
                        what: "SIP TCP",
                        addr: sip_addr,
                        source,
                    });
                }
            }
        };
        let screen = Arc::new(udp::ScreenStats::default());
        let udp_conn = UdpConnection::from_socket(
            Arc::new(udp::ScreeningSocket::new(udp, screen.clone())),
            None,
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| RuntimeError::Sip(e.to_string()))?;
        let tcp = TcpListenerConnection::new(sip_addr, None)
            .await
            .map_err(|e| RuntimeError::Sip(e.to_string()))?;
        let transport_layer = TransportLayer::new(cancel.child_token());
        transport_layer.add_transport(udp_conn.into());
        transport_layer.add_transport(tcp.into());
        let endpoint = EndpointBuilder::new()
            .with_user_agent(PRODUCT)
            .with_transport_layer(transport_layer)
            .with_cancel_token(cancel.child_token())
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| RuntimeError::Sip(e.to_string()))?;
        let endpoint_inner = endpoint.inner.clone();
        tokio::spawn(async move {
            endpoint.serve().await;
        });

        // The customer directory: opened (and, when new, loaded from its CSV) off the runtime.
        let dir_config = config.directory.clone();
        let directory: Arc<dyn crate::directory::Directory> =
            tokio::task::spawn_blocking(move || {
                crate::directory::open(&dir_config, Arc::new(clock::SystemClock::default()))
            })
            .await
            .map_err(|e| RuntimeError::Directory(e.to_string()))?
            .map_err(|e| RuntimeError::Directory(e.to_string()))?
            .into();

        // Media shards.
        let records_file = config
            .call_records_file
            .then(|| config.data_dir.join("call-records.jsonl"));
        let records = RecordSink::new(records_file.clone(), metrics.clone())?;
        let (dispatch_tx, dispatch_rx) = mpsc::unbounded_channel::<DispatchMsg>();
        let (agents_tx, agents_rx) = mpsc::unbounded_channel::<AgentsMsg>();
        let n = config.media_shards();
        let mut shards = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        // RTP is never sent to our own SIP and HTTP ports (a reflection into our own
        // signalling); the SIP port as bound, the HTTP one as configured.
        let mut call_settings = config.call.clone();
        call_settings.own_ports = [sip_addr.port(), config.http_listen.port()]
            .into_iter()
            .filter(|p| *p != 0)
            .collect();
        for index in 0..n {
            let (handle, thread) = shard::spawn(
                ShardConfig {
                    index,
                    shards: n,
                    rtp_ports: config.rtp_ports,
                    rtp_bind: config.rtp_bind,
                    settings: call_settings.clone(),
                    directory: directory.clone(),
                    runtime: tokio::runtime::Handle::current(),
                    metrics: metrics.clone(),
                },
                dispatch_tx.clone(),
                agents_tx.clone(),
                records.clone(),
            )?;
            shards.push(handle);
            threads.push(thread);
        }

        // Where our own INVITEs (callbacks) come from: the advertised or listen address (a
        // wildcard listen without `sip.advertise` falls back to loopback, which only reaches
        // a local trunk), and the media address their SDP names. Worked out once, here.
        let callback_origin = {
            let ip = config
                .sip_advertise
                .or_else(|| (!sip_addr.ip().is_unspecified()).then_some(sip_addr.ip()))
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
            let media = config
                .media_advertise
                .or_else(|| (!config.rtp_bind.is_unspecified()).then_some(config.rtp_bind))
                .unwrap_or(ip);
            (SocketAddr::new(ip, sip_addr.port()), media)
        };
        let dispatcher = Dispatcher {
            endpoint: endpoint_inner,
            shards: shards.clone(),
            catalog: catalog_rx.clone(),
            sip_addr,
            sip_advertise: config.sip_advertise,
            callback_ip: callback_origin.0.ip(),
            media_advertise: config
                .media_advertise
                .or_else(|| (!config.rtp_bind.is_unspecified()).then_some(config.rtp_bind)),
            max_calls: config.max_calls,
            rx: dispatch_rx,
            agents: agents_tx.clone(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            next_id: 0,
            metrics: metrics.clone(),
            draining: draining.clone(),
        };
        tokio::spawn(dispatcher.run(incoming, cancel.child_token()));

        // Queues, agents and the registrar: one task owns them all.
        let demo = config.demo_password_agents();
        if !demo.is_empty() && !sip_addr.ip().is_loopback() {
            tracing::warn!(
                agents = ?demo,
                sip = %sip_addr,
                "agents use the demo passwords on a SIP address other hosts can reach: change them in phonetree.yaml"
            );
        }
        let (view_tx, view_rx) = watch::channel(agents::AgentsView::default());
        let (agent_tx, agent_rx) = mpsc::unbounded_channel();
        {
            let now = std::time::Instant::now();
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| RuntimeError::Sip(e.to_string()))?;
            let task = agents::AgentsTask {
                acd: crate::acd::Acd::new(
                    now,
                    config.acd.clone(),
                    u64::from_le_bytes(secret[..8].try_into().unwrap_or([0; 8])),
                ),
                registrar: crate::sip::registrar::Registrar::new(
                    now,
                    config.registrar_config(),
                    secret,
                ),
                rx: agents_rx,
                admin: agent_rx,
                shards: shards.clone(),
                view: view_tx,
                calls: HashMap::new(),
                callback_dial: agents::callback_dial_of(&config.acd),
                usernames: agents::usernames_of(&config.acd),
                callback_origin,
                catalog: catalog_rx.clone(),
                metrics: metrics.clone(),
            };
            tokio::spawn(task.run(cancel.child_token()));
        }

        // Reload requests are served by one task, so two reloads never race.
        let (status_tx, status_rx) = watch::channel(ReloadStatus {
            ok: true,
            at_unix_ms: None,
            version: 1,
            errors: Vec::new(),
        });
        let (reload_tx, mut reload_rx) =
            mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<Result<u64, Vec<String>>>>();
        let shared = Arc::new(EngineShared {
            catalog: catalog_rx,
            shards,
            screen,
            reloads: AtomicU64::new(0),
            reload_tx,
            agents: view_rx,
            agent_tx,
            metrics: metrics.clone(),
            last_reload: status_rx,
            records_file,
            admin_tokens: config.http_tokens.clone(),
            draining,
            drain_deadline: watch::channel(None).0,
        });
        {
            let flows_dir = config.flows_dir.clone();
            let prompts_dir = config.prompts_dir.clone();
            let cancel = cancel.child_token();
            let metrics = metrics.clone();
            let config_source = config.source.clone();
            let agents_tx = agents_tx.clone();
            tokio::spawn(async move {
                loop {
                    let reply = tokio::select! {
                        r = reload_rx.recv() => match r { Some(r) => r, None => break },
                        _ = cancel.cancelled() => break,
                    };
                    let version = catalog_tx.borrow().version + 1;
                    let (f, p, q) = (flows_dir.clone(), prompts_dir.clone(), queue_check.clone());
                    let source = config_source.clone();
                    // The configuration file is re-read for its queues and agents; the flows
                    // are checked against the queues it now names. Both apply, or neither.
                    let result = tokio::task::spawn_blocking(move || {
                        let fresh = match source {
                            Some(path) => {
                                Some(Config::load(&path, true).map_err(|e| vec![e.to_string()])?)
                            }
                            None => None,
                        };
                        let names = fresh.as_ref().map(|c| c.queue_names());
                        let q = match &names {
                            Some(n) if !n.is_empty() => Some(n.clone()),
                            Some(_) => None,
                            None => q,
                        };
                        let catalog = Catalog::load_with(
                            &f,
                            &p,
                            version,
                            &crate::flow::CompileOptions { queues: q.as_ref() },
                        )
                        .map_err(|e| e.0)?;
                        Ok::<_, Vec<String>>((catalog, fresh))
                    })
                    .await
                    .map_err(|e| vec![e.to_string()])
                    .and_then(|r| r);
                    let at_unix_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    metrics.flow_reload(result.is_ok());
                    let answer = match result {
                        Ok((c, fresh)) => {
                            if let Some(fresh) = fresh {
                                let _ = agents_tx.send(AgentsMsg::Reconfigure {
                                    registrar: fresh.registrar_config(),
                                    acd: fresh.acd,
                                });
                            }
                            status_tx.send_replace(ReloadStatus {
                                ok: true,
                                at_unix_ms: Some(at_unix_ms),
                                version,
                                errors: Vec::new(),
                            });
                            tracing::info!(
                                version,
                                "flows reloaded; new calls use the new version"
                            );
                            catalog_tx.send_replace(Arc::new(c));
                            Ok(version)
                        }
                        Err(errors) => {
                            tracing::warn!(
                                count = errors.len(),
                                "reload refused; old flows keep serving"
                            );
                            for e in &errors {
                                tracing::warn!("{e}");
                            }
                            status_tx.send_replace(ReloadStatus {
                                ok: false,
                                at_unix_ms: Some(at_unix_ms),
                                version: version - 1,
                                errors: errors.clone(),
                            });
                            Err(errors)
                        }
                    };
                    let _ = reply.send(answer);
                }
            });
        }

        // HTTP admin.
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| RuntimeError::Bind {
                what: "HTTP",
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener.local_addr()?;
        let app = crate::admin::router(shared.clone());
        let http_cancel = cancel.child_token();
        tokio::spawn(async move {
            // The peer address feeds the failed-token limiter.
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { http_cancel.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });

        tracing::info!(%sip_addr, %http_addr, shards = n, rtp_ports = ?config.rtp_ports, "phonetree ready");
        Ok(Engine {
            sip_addr,
            http_addr,
            records,
            shared,
            cancel,
            threads,
            session_token,
            _data_lock: data_lock,
        })
    }

    /// SIP address, UDP and TCP.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The admin token made for this run when the configuration has none.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// Every call that ends from now on.
    pub fn call_records(&self) -> broadcast::Receiver<CallRecord> {
        self.records.subscribe()
    }

    /// Resolves when a drain (`POST /api/drain`) is over: the caller then shuts down.
    pub async fn drained(&self) -> DrainEnd {
        self.shared.drained().await
    }

    pub fn shared(&self) -> &Arc<EngineShared> {
        &self.shared
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared.catalog.borrow().clone()
    }

    pub async fn reload(&self) -> Result<u64, Vec<String>> {
        self.shared.reload().await
    }

    /// Ends every call (BYE), then stops all tasks and threads.
    pub async fn shutdown(self) {
        for s in &self.shared.shards {
            s.send(bus::ShardCommand::Shutdown);
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // Give the BYEs a moment to leave before the transports close.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.cancel.cancel();
    }
}
