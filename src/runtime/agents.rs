//! The agents task: the one owner of the ACD (queues, agents) and the registrar (agent
//! phones' bindings). Both are sans-IO cores; this task feeds them messages and the clock,
//! and turns their outputs into shard commands and SIP responses.
//!
//! - **Owns:** the `Acd`, the `Registrar`, the map call → shard of calls in queues.
//! - **Takes:** `AgentsMsg` from shards (joins, leaves, offer results), the dispatcher
//!   (REGISTER) and the admin API (agent control), plus its own timers.
//! - **Gives:** `ShardCommand::Acd` to calls, REGISTER responses, a `watch` snapshot of
//!   queues, agents and bindings for the admin side.
//! - **Never:** blocks, touches RTP, or holds call state beyond the call's shard index.

use super::bus::{AgentsMsg, CallbackRequest, FeatureCode, ShardCommand};
use super::shard::ShardHandle;
use crate::acd::{self, Acd, Output};
use crate::call::{AcdIn, AcdOut, Offer};
use crate::flow::QueueRefusal;
use crate::sip::registrar::{Registrar, RegistrarEvent, Transport};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the ACD is reconciled against the calls that still exist.
const RECONCILE_EVERY: Duration = Duration::from_secs(10);

/// An agent action from the admin API.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum AgentCommand {
    Login,
    Logout,
    Pause { reason: Option<String> },
    Unpause,
}

/// What the admin side can see: queues, agents, bindings (a snapshot, never a lock).
#[derive(Debug, Clone, serde::Serialize, Default)]
pub struct AgentsView {
    pub acd: Option<acd::AcdSnapshot>,
    pub bindings: Vec<crate::sip::registrar::BindingSnapshot>,
}

/// Queue → (`callback.dial` template, caller id) for the queues that can dial callbacks.
pub fn callback_dial_of(acd: &crate::acd::AcdConfig) -> HashMap<String, (String, String)> {
    acd.queues
        .iter()
        .filter_map(|(name, q)| {
            let dial = q.callback.dial.clone()?;
            let id = q
                .callback
                .caller_id
                .clone()
                .unwrap_or_else(|| "phonetree".into());
            Some((name.clone(), (dial, id)))
        })
        .collect()
}

/// Lower-cased SIP user name → agent id.
pub fn usernames_of(acd: &crate::acd::AcdConfig) -> HashMap<String, String> {
    acd.agents
        .values()
        .map(|a| (a.username.to_ascii_lowercase(), a.id.clone()))
        .collect()
}

pub struct AgentsTask {
    pub acd: Acd,
    pub registrar: Registrar,
    pub rx: mpsc::UnboundedReceiver<AgentsMsg>,
    pub admin: mpsc::UnboundedReceiver<(String, AgentCommand, oneshot::Sender<Result<(), String>>)>,
    pub shards: Vec<ShardHandle>,
    pub view: watch::Sender<AgentsView>,
    pub calls: HashMap<u64, usize>,
    /// Per queue with `callback.dial`: the URI template and our caller id. Callback
    /// requests for other queues are refused (nothing could dial them).
    pub callback_dial: HashMap<String, (String, String)>,
    /// Where callbacks come from: our SIP address (From, Contact, Via) and media IP.
    pub callback_origin: (SocketAddr, std::net::IpAddr),
    /// Lower-cased SIP user name → agent id (feature codes name the agent by their From).
    pub usernames: HashMap<String, String>,
    /// The flows and prompts new callbacks start with.
    pub catalog: watch::Receiver<std::sync::Arc<crate::catalog::Catalog>>,
    pub metrics: std::sync::Arc<super::metrics::Metrics>,
}

impl AgentsTask {
    pub async fn run(mut self, shutdown: tokio_util::sync::CancellationToken) {
        let mut next_reconcile = Instant::now() + RECONCILE_EVERY;
        let mut next_view = Instant::now();
        loop {
            let now = Instant::now();
            let deadline = [
                self.acd.poll_timeout(),
                self.registrar.poll_timeout(),
                Some(next_reconcile),
                Some(next_view),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(m) => self.on_message(Instant::now(), m),
                    None => break,
                },
                cmd = self.admin.recv() => if let Some((agent, cmd, reply)) = cmd {
                    let _ = reply.send(self.on_admin(Instant::now(), &agent, cmd));
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    self.acd.handle_timeout(now);
                    self.registrar.handle_timeout(now);
                    if now >= next_reconcile {
                        next_reconcile = now + RECONCILE_EVERY;
                        let live: HashSet<u64> = self.calls.keys().copied().collect();
                        self.acd.reconcile(now, &live);
                    }
                    if now >= next_view {
                        // The dashboard's clocks (time in state, waited) tick once a second.
                        next_view = now + Duration::from_secs(1);
                        self.publish(now);
                    }
                }
                _ = shutdown.cancelled() => break,
            }
            self.drain(Instant::now());
        }
    }

    fn on_admin(&mut self, now: Instant, agent: &str, cmd: AgentCommand) -> Result<(), String> {
        let r = match cmd {
            AgentCommand::Login => self.acd.handle_login(now, agent),
            AgentCommand::Logout => self.acd.handle_logout(now, agent),
            AgentCommand::Pause { reason } => {
                self.acd
                    .handle_pause(now, agent, reason.as_deref().unwrap_or("admin"))
            }
            AgentCommand::Unpause => self.acd.handle_unpause(now, agent),
        };
        r.map_err(|e| e.to_string())
    }

    fn on_message(&mut self, now: Instant, msg: AgentsMsg) {
        match msg {
            AgentsMsg::Register {
                mut tx,
                source,
                reliable,
            } => {
                let transport = if reliable {
                    Transport::Tcp
                } else {
                    Transport::Udp
                };
                let response = self
                    .registrar
                    .handle_register(now, &tx.original, source, transport);
                self.metrics.sip_response(response.status_code.code());
                tokio::spawn(async move {
                    if let Err(e) = tx.respond(response).await {
                        tracing::debug!(error = %e, "could not answer REGISTER");
                    }
                    while tx.receive().await.is_some() {}
                });
            }
            AgentsMsg::CallGone { call } => {
                if self.calls.remove(&call).is_some() {
                    // Normally the call said Leave/BridgeEnded already; this is the safety
                    // net that keeps an agent from staying reserved for a dead call.
                    let live: HashSet<u64> = self.calls.keys().copied().collect();
                    self.acd.reconcile(now, &live);
                }
            }
            AgentsMsg::FromCall { shard, out } => self.on_call(now, shard, out),
            AgentsMsg::FeatureCode {
                mut call,
                shard,
                code,
                username,
                source,
            } => {
                let prompt = self.on_feature_code(now, code, &username, source);
                call.announce = Some(prompt.to_string());
                if let Some(s) = self.shards.get(shard) {
                    s.send(ShardCommand::NewCall(call));
                }
            }
            AgentsMsg::Reconfigure { acd, registrar } => {
                self.callback_dial = callback_dial_of(&acd);
                self.usernames = usernames_of(&acd);
                self.acd.reconfigure(now, acd);
                self.registrar.reconfigure(registrar);
                tracing::info!("queues and agents reloaded; agents and waiting callers kept");
            }
        }
    }

    fn on_call(&mut self, now: Instant, shard: usize, out: AcdOut) {
        match out {
            AcdOut::Enqueue {
                call,
                queue,
                priority,
                caller,
                resume,
            } => {
                self.calls.insert(call, shard);
                let answer = match self.acd.handle_enqueue(
                    now,
                    acd::Enqueue {
                        call,
                        queue,
                        priority,
                        caller,
                        resume: resume.then_some(call),
                    },
                ) {
                    Ok(j) => AcdIn::Joined {
                        position: j.position,
                        ewt: j.ewt,
                    },
                    Err(r) => AcdIn::Refused(match r {
                        acd::Refused::UnknownQueue => QueueRefusal::UnknownQueue,
                        acd::Refused::Full => QueueRefusal::Full,
                        acd::Refused::NoAgents => QueueRefusal::NoAgents,
                        acd::Refused::Draining => QueueRefusal::Draining,
                    }),
                };
                self.to_call(call, answer);
            }
            AcdOut::Leave { call, keep_place } => self.acd.handle_leave(now, call, keep_place),
            AcdOut::Callback {
                call,
                queue,
                number,
            } => {
                // Nothing can dial a customer back yet (no outbound trunk for callbacks):
                // refuse at once, so the caller hears the flow's `failed` branch instead of
                // a promise nobody keeps.
                if !self.callback_dial.contains_key(&queue) {
                    tracing::info!(call, %queue, "callback refused: the queue has no callback.dial");
                    self.to_call(call, AcdIn::CallbackFailed);
                    return;
                }
                let answer = match self.acd.handle_callback_request(now, call, &queue, &number) {
                    Ok(_) => AcdIn::CallbackRegistered,
                    Err(acd::CallbackError::Duplicate) => AcdIn::CallbackDuplicate,
                    Err(_) => AcdIn::CallbackFailed,
                };
                self.to_call(call, answer);
            }
            AcdOut::OfferResult {
                call,
                agent,
                result,
            } => self.acd.handle_offer_result(now, call, &agent, result),
            AcdOut::BridgeEnded { call } => self.acd.handle_call_ended(now, call),
            AcdOut::CallbackDialed { callback, reached } => {
                self.acd.handle_callback_result(now, callback, reached)
            }
        }
    }

    fn to_call(&self, call: u64, input: AcdIn) -> bool {
        match self.calls.get(&call).and_then(|s| self.shards.get(*s)) {
            Some(shard) => shard.send(ShardCommand::Acd { call, input }),
            None => false,
        }
    }

    /// Moves registrar events into the ACD and ACD outputs to calls, until both are quiet.
    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(ev) = self.registrar.poll_event() {
                progressed = true;
                match ev {
                    RegistrarEvent::Registered { agent } => {
                        tracing::info!(%agent, "agent phone registered");
                        self.acd.handle_agent_registered(now, &agent, true);
                    }
                    RegistrarEvent::Unregistered { agent } => {
                        tracing::info!(%agent, "agent phone unregistered");
                        self.acd.handle_agent_registered(now, &agent, false);
                    }
                    RegistrarEvent::SecurityEvent {
                        source,
                        username,
                        kind,
                    } => {
                        tracing::warn!(target: "security", %source, username = username.as_deref().unwrap_or(""), kind = ?kind, "registrar security event");
                    }
                }
            }
            while let Some(out) = self.acd.poll_output() {
                progressed = true;
                self.on_output(now, out);
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_output(&mut self, now: Instant, out: Output) {
        match out {
            Output::Offer {
                call,
                agent,
                queue,
                ring_timeout,
                waited,
            } => {
                let binding = self
                    .registrar
                    .bindings(&agent)
                    .first()
                    .map(|b| (b.contact.clone(), b.destination()));
                let Some((request_uri, destination)) = binding else {
                    tracing::info!(%agent, call, "agent has no registered phone; offer fails");
                    self.acd
                        .handle_offer_result(now, call, &agent, acd::OfferResult::Failed);
                    return;
                };
                let offer = Offer {
                    agent: agent.to_string(),
                    queue,
                    ring_timeout,
                    request_uri,
                    destination,
                    waited,
                };
                if !self.to_call(call, AcdIn::Offer(offer)) {
                    self.acd
                        .handle_offer_result(now, call, &agent, acd::OfferResult::CallerGone);
                }
            }
            Output::CancelOffer { call, agent } => {
                self.to_call(
                    call,
                    AcdIn::CancelOffer {
                        agent: agent.to_string(),
                    },
                );
            }
            Output::Announce {
                call,
                position,
                ewt,
            } => {
                self.to_call(call, AcdIn::Announce { position, ewt });
            }
            Output::Overflow { call, .. } => {
                self.to_call(call, AcdIn::Overflow);
            }
            Output::Exit { call, .. } => {
                self.to_call(call, AcdIn::NoAgents);
            }
            Output::DialCallback {
                callback,
                queue,
                number,
            } => {
                self.dial_callback(now, callback, queue, number);
            }
            Output::CallbackFailed { callback, number } => {
                tracing::warn!(callback, number = %crate::directory::mask(&number), "callback gave up");
            }
            Output::AgentState {
                agent,
                state,
                cause,
            } => {
                tracing::info!(%agent, state = ?state, cause = ?cause, "agent state");
            }
            Output::Prediction {
                call,
                queue,
                predicted,
            } => {
                tracing::debug!(call, %queue, predicted_ms = ?predicted.map(|d| d.as_millis()), "wait estimate");
            }
        }
    }

    /// An agent dialled a feature code: only their registered phone may (the INVITE must
    /// come from the address a binding of theirs registered from, so a caller who knows an
    /// agent's user name cannot log them out). Returns the prompt that says how it went.
    fn on_feature_code(
        &mut self,
        now: Instant,
        code: FeatureCode,
        username: &str,
        source: Option<SocketAddr>,
    ) -> &'static str {
        let agent = self.usernames.get(&username.to_ascii_lowercase()).cloned();
        let from_their_phone = agent.as_deref().is_some_and(|a| {
            source.is_some_and(|src| {
                self.registrar
                    .bindings(a)
                    .iter()
                    .any(|b| b.source.ip() == src.ip())
            })
        });
        let (Some(agent), true) = (agent, from_their_phone) else {
            tracing::warn!(target: "security", username, source = ?source, ?code, "feature code refused: not from a registered agent phone");
            return "agent-refused";
        };
        let result = match code {
            FeatureCode::Login => self.acd.handle_login(now, &agent),
            FeatureCode::Logout => self.acd.handle_logout(now, &agent),
            FeatureCode::Pause => self.acd.handle_pause(now, &agent, "phone"),
            FeatureCode::Unpause => self.acd.handle_unpause(now, &agent),
        };
        tracing::info!(%agent, ?code, result = ?result.as_ref().err(), "agent feature code");
        // Already in the state asked for counts as done: the agent hears where they stand.
        match (code, result) {
            (FeatureCode::Login, Ok(()) | Err(acd::AgentError::AlreadyLoggedIn)) => {
                "agent-logged-in"
            }
            (FeatureCode::Logout, Ok(()) | Err(acd::AgentError::NotLoggedIn)) => "agent-logged-out",
            (FeatureCode::Pause, Ok(())) => "agent-paused",
            (FeatureCode::Unpause, Ok(()) | Err(acd::AgentError::NotPaused)) => "agent-unpaused",
            _ => "agent-refused",
        }
    }

    /// A callback's turn: a shard places the call to the customer; its answer (or not)
    /// comes back as `AcdOut::CallbackDialed`.
    fn dial_callback(&mut self, now: Instant, callback: u64, queue: String, number: String) {
        let Some((template, caller_id)) = self.callback_dial.get(&queue).cloned() else {
            tracing::warn!(callback, %queue, "callback due but the queue has no callback.dial");
            self.acd.handle_callback_result(now, callback, false);
            return;
        };
        if self.shards.is_empty() {
            self.acd.handle_callback_result(now, callback, false);
            return;
        }
        let shard = (callback % self.shards.len() as u64) as usize;
        let (sip_local, media_ip) = self.callback_origin;
        let host = match sip_local {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        tracing::info!(callback, %queue, number = %crate::directory::mask(&number), "callback due; dialling the customer");
        let request = CallbackRequest {
            id: callback,
            request_uri: crate::call::callback_dial_uri(&template, &number),
            queue,
            number,
            caller_id,
            local_tag: crate::sip::message::new_tag(),
            contact: format!("<sip:phonetree@{host}>"),
            media_ip,
            catalog: self.catalog.borrow().clone(),
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            random: crate::sip::message::next_random(),
            sip_local,
        };
        self.calls.insert(callback, shard);
        if !self.shards[shard].send(ShardCommand::DialCallback(Box::new(request))) {
            self.calls.remove(&callback);
            self.acd.handle_callback_result(now, callback, false);
        }
    }

    fn publish(&self, now: Instant) {
        let view = AgentsView {
            acd: Some(self.acd.snapshot(now)),
            bindings: self.registrar.snapshot(now),
        };
        self.view.send_replace(view);
    }
}
