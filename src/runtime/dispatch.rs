//! The SIP dispatcher: the one task that takes transactions from rsipstack, matches them to
//! calls (by Call-ID and our tag, RFC 3261 §12.2.2) and hands them to the owning shard.
//! It owns the dialog table (both legs of every call) and the client transactions of the
//! INVITEs calls place; shards own the calls. REGISTERs go to the agents task.

use super::bus::{AgentsMsg, DispatchMsg, FeatureCode, NewCallRequest, ShardCommand};
use super::metrics::Metrics;
use super::shard::ShardHandle;
use crate::call::{LegId, SipIn, TxId};
use crate::catalog::Catalog;
use crate::sip::dialog::NextHop;
use crate::sip::message::{self, new_tag, next_random};
use crate::sip::rsip::prelude::{HeadersExt, ToTypedHeader};
use crate::sip::rsip::{self, Header, SipMessage};
use crate::sip::{Method, Request, ServerTx};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::SipAddr;
use rsipstack::transport::connection::SipConnection;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;
use tokio::sync::{mpsc, watch};

/// A command for the task that drives one client transaction.
enum ClientCmd {
    Cancel,
}

pub struct CallEntry {
    shard: usize,
    /// Dialog keys (Call-ID, our tag) of the call's legs.
    keys: Vec<(String, String)>,
    /// Client transactions of the INVITEs this call placed.
    client_txs: HashMap<TxId, mpsc::UnboundedSender<ClientCmd>>,
    /// The flow the INVITE came on, when reliable (TCP): in-dialog requests reuse it.
    connection: Option<SipConnection>,
    /// Where the INVITE came from (Via received/rport): our target for UDP requests.
    source: Option<SipAddr>,
    reliable: bool,
    /// Our address as the caller reached it; goes in the Via of our requests.
    local_ip: IpAddr,
}

pub struct Dispatcher {
    pub endpoint: EndpointInnerRef,
    pub shards: Vec<ShardHandle>,
    pub catalog: watch::Receiver<Arc<Catalog>>,
    pub sip_addr: SocketAddr,
    pub sip_advertise: Option<IpAddr>,
    /// Our IP for the Via of our own INVITEs (callbacks); worked out once in `Engine::start`.
    pub callback_ip: IpAddr,
    pub media_advertise: Option<IpAddr>,
    pub max_calls: usize,
    pub rx: mpsc::UnboundedReceiver<DispatchMsg>,
    pub agents: mpsc::UnboundedSender<AgentsMsg>,
    pub calls: HashMap<u64, CallEntry>,
    pub dialogs: HashMap<(String, String), (u64, LegId)>,
    pub next_id: u64,
    pub metrics: Arc<Metrics>,
    /// Set by drain: new INVITEs are refused (503), calls in progress go on.
    pub draining: Arc<AtomicBool>,
}

impl Dispatcher {
    pub async fn run(
        mut self,
        mut incoming: TransactionReceiver,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                tx = incoming.recv() => match tx {
                    Some(tx) => self.on_transaction(tx),
                    None => break,
                },
                msg = self.rx.recv() => match msg {
                    Some(m) => self.on_message(m),
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
    }

    fn on_transaction(&mut self, tx: Transaction) {
        let req = &tx.original;
        self.metrics.sip_request(req.method.to_string().as_str());
        // RFC 3261 §16.3 item 3 / §8.2: a request that has used up its Max-Forwards is in a
        // loop (or an attack bouncing it between elements); it ends here with 483. OPTIONS
        // is the exception the RFC names: with Max-Forwards 0 it is meant for us.
        if message::max_forwards(req) == Some(0) && req.method != Method::Options {
            return self.respond(tx, 483);
        }
        let tag = message::to_tag(req);
        match (&req.method, tag) {
            (Method::Invite, None) => self.new_call(tx),
            (_, Some(tag)) => self.in_dialog(tx, tag),
            (Method::Options, None) => self.respond(tx, 200),
            (Method::Register, None) => {
                let reliable = tx.connection.as_ref().is_some_and(|c| c.is_reliable());
                let source = via_source(&tx.original)
                    .and_then(|a| sip_addr_socket(&a))
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                if let Err(e) = self.agents.send(AgentsMsg::Register {
                    tx,
                    source,
                    reliable,
                }) {
                    let AgentsMsg::Register { tx, .. } = e.0 else {
                        return;
                    };
                    respond_and_drive(&self.metrics, tx, 503);
                }
            }
            // CANCEL and ACK never reach us: the stack matches them to their INVITE.
            (_, None) => self.respond(tx, 405),
        }
    }

    fn new_call(&mut self, tx: Transaction) {
        if self.draining.load(Ordering::Relaxed) {
            // RFC 3261 §21.5.4: 503 with Retry-After sends the caller's proxy to another
            // instance while this one finishes its calls.
            tracing::info!("draining; new call refused with 503");
            return self.respond(tx, 503);
        }
        let active = self.calls.len();
        if active >= self.max_calls {
            tracing::warn!(active, "call limit reached; 503");
            return self.respond(tx, 503);
        }
        let Ok(call_id) = tx.original.call_id_header().map(|c| c.value().to_string()) else {
            return self.respond(tx, 400);
        };
        self.next_id += 1;
        let id = self.next_id;
        let local_tag = new_tag();
        let shard = (id as usize) % self.shards.len();
        let reliable = tx.connection.as_ref().is_some_and(|c| c.is_reliable());
        let source = via_source(&tx.original);
        let packet_source = source.as_ref().and_then(sip_addr_socket);
        let advertise = self.advertise_ip(&tx.original);
        let transport = if reliable { "tcp" } else { "udp" };
        let user = tx
            .original
            .uri
            .user()
            .filter(|u| is_token(u))
            .unwrap_or("phonetree")
            .to_string();
        let contact = if reliable {
            format!(
                "<sip:{user}@{}:{};transport=tcp>",
                fmt_ip(advertise),
                self.sip_addr.port()
            )
        } else {
            format!(
                "<sip:{user}@{}:{}>",
                fmt_ip(advertise),
                self.sip_addr.port()
            )
        };
        let key = (call_id, local_tag.clone());
        self.dialogs.insert(key.clone(), (id, LegId::Caller));
        self.calls.insert(
            id,
            CallEntry {
                shard,
                keys: vec![key],
                client_txs: HashMap::new(),
                connection: if reliable {
                    tx.connection.clone()
                } else {
                    None
                },
                source,
                reliable,
                local_ip: advertise,
            },
        );
        let invite = ServerTx::new(tx.original.clone(), tx.tu_sender.clone());
        let started_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let request = Box::new(NewCallRequest {
            id,
            invite,
            local_tag,
            contact,
            media_ip: self.media_advertise.unwrap_or(advertise),
            transport,
            catalog: self.catalog.borrow().clone(),
            started_unix_ms,
            random: next_random(),
            sip_local: SocketAddr::new(advertise, self.sip_addr.port()),
            announce: None,
        });
        // An agent's feature code goes by the agents task, which checks the phone, acts,
        // and hands the call on to the shard with the prompt to play.
        let feature = tx.original.uri.user().and_then(FeatureCode::from_dialled);
        let sent = match feature {
            Some(code) => self
                .agents
                .send(AgentsMsg::FeatureCode {
                    call: request,
                    shard,
                    code,
                    username: crate::sip::message::from_user(&tx.original).unwrap_or_default(),
                    source: packet_source,
                })
                .is_ok(),
            None => self.shards[shard].send(ShardCommand::NewCall(request)),
        };
        if !sent {
            self.forget(id);
            return self.respond(tx, 503);
        }
        let shard = self.shards[shard].clone();
        tokio::spawn(
            Driver {
                tx,
                shard,
                call: id,
                initial: true,
                forward_ack: true,
            }
            .run(),
        );
    }

    fn in_dialog(&mut self, tx: Transaction, tag: String) {
        let call_id = tx
            .original
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let Some(&(id, leg)) = self.dialogs.get(&(call_id, tag)) else {
            // §12.2.2: a request for a dialog we do not know gets 481.
            return self.respond(tx, 481);
        };
        let Some(entry) = self.calls.get(&id) else {
            return self.respond(tx, 481);
        };
        let shard = self.shards[entry.shard].clone();
        let server_tx = ServerTx::new(tx.original.clone(), tx.tu_sender.clone());
        shard.send(ShardCommand::Sip {
            call: id,
            input: SipIn::Request { leg, tx: server_tx },
        });
        let is_invite = tx.original.method == Method::Invite;
        tokio::spawn(
            Driver {
                tx,
                shard,
                call: id,
                initial: false,
                forward_ack: is_invite,
            }
            .run(),
        );
    }

    fn on_message(&mut self, msg: DispatchMsg) {
        match msg {
            DispatchMsg::CallEnded { call } => self.forget(call),
            DispatchMsg::SendInvite {
                call,
                leg,
                shard,
                tx,
                request,
                destination,
            } => self.send_invite(call, leg, shard, tx, request, destination),
            DispatchMsg::Cancel { call, tx } => {
                if let Some(c) = self.calls.get(&call).and_then(|e| e.client_txs.get(&tx)) {
                    let _ = c.send(ClientCmd::Cancel);
                }
            }
            DispatchMsg::SendRequest {
                call,
                leg,
                request,
                next_hop,
                destination,
            } => {
                let Some(entry) = self.calls.get(&call) else {
                    return;
                };
                let endpoint = self.endpoint.clone();
                // The caller's leg reuses the caller's flow (TCP) or source (UDP); an outbound
                // leg goes where its INVITE went (UDP).
                let (connection, source, reliable) = match leg {
                    LegId::Caller => (
                        entry.connection.clone(),
                        entry.source.clone(),
                        entry.reliable,
                    ),
                    LegId::Outbound => (None, destination.map(socket_sip_addr), false),
                };
                let via_ip = entry.local_ip;
                let port = self.sip_addr.port();
                tokio::spawn(async move {
                    send_in_dialog(
                        endpoint, request, next_hop, connection, source, reliable, via_ip, port,
                    )
                    .await;
                });
            }
        }
    }

    fn forget(&mut self, call: u64) {
        if let Some(entry) = self.calls.remove(&call) {
            for key in &entry.keys {
                self.dialogs.remove(key);
            }
        }
    }

    /// Starts a client INVITE transaction for a call's outbound leg (RFC 3261 §17.1.1) and
    /// registers the new dialog's key, so the far end's BYE finds the call.
    fn send_invite(
        &mut self,
        call: u64,
        leg: LegId,
        shard: usize,
        id: TxId,
        mut request: Request,
        destination: Option<SocketAddr>,
    ) {
        let Some(shard_handle) = self.shards.get(shard).cloned() else {
            return;
        };
        let ended = |shard_handle: &ShardHandle| {
            shard_handle.send(ShardCommand::Sip {
                call,
                input: SipIn::ClientTxEnded { tx: id },
            });
        };
        if leg == LegId::Caller && !self.calls.contains_key(&call) {
            // A callback: the call's first leg is this INVITE of ours. Its in-dialog
            // requests go where the dialog's route set and remote target say (§12.2.1.1).
            let local_ip = self.callback_ip;
            self.calls.insert(
                call,
                CallEntry {
                    shard,
                    keys: Vec::new(),
                    client_txs: HashMap::new(),
                    connection: None,
                    source: None,
                    reliable: false,
                    local_ip,
                },
            );
        }
        let Some(entry) = self.calls.get_mut(&call) else {
            return ended(&shard_handle);
        };
        let call_id = request
            .call_id_header()
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let Some(local_tag) = crate::sip::message::from_tag(&request) else {
            return ended(&shard_handle);
        };
        let local = SipAddr {
            r#type: Some(rsip::Transport::Udp),
            addr: rsip::HostWithPort {
                host: rsip::Host::IpAddr(entry.local_ip),
                port: Some(self.sip_addr.port().into()),
            },
        };
        let via = match self.endpoint.get_via(Some(local), None) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build Via");
                return ended(&shard_handle);
            }
        };
        request.headers.push_front(Header::Via(via.into()));
        let key = match TransactionKey::from_request(&request, TransactionRole::Client) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "cannot key outbound INVITE");
                return ended(&shard_handle);
            }
        };
        let dialog_key = (call_id, local_tag);
        self.dialogs.insert(dialog_key.clone(), (call, leg));
        entry.keys.push(dialog_key);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        entry.client_txs.retain(|_, c| !c.is_closed());
        entry.client_txs.insert(id, cmd_tx);
        let mut tx = Transaction::new_client(key, request, self.endpoint.clone(), None);
        tx.destination = destination.map(socket_sip_addr);
        tokio::spawn(
            ClientDriver {
                tx,
                shard: shard_handle,
                call,
                id,
                commands: cmd_rx,
            }
            .run(),
        );
    }

    fn respond(&self, tx: Transaction, status: u16) {
        respond_and_drive(&self.metrics, tx, status);
    }

    /// The IP to put in Contact/SDP: configured, else the listen IP, else the IP the caller
    /// addressed us by (Request-URI), else loopback.
    fn advertise_ip(&self, req: &Request) -> IpAddr {
        if let Some(ip) = self.sip_advertise {
            return ip;
        }
        if !self.sip_addr.ip().is_unspecified() {
            return self.sip_addr.ip();
        }
        if let rsip::Host::IpAddr(ip) = req.uri.host() {
            if !ip.is_unspecified() {
                return *ip;
            }
        }
        IpAddr::from([127, 0, 0, 1])
    }
}

fn fmt_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b))
}

/// Where the request really came from: the top Via's `received`/`rport` (RFC 3581), which
/// the transport filled in from the datagram's source.
fn via_source(req: &Request) -> Option<SipAddr> {
    let via = req.top_via_header().ok()?.typed().ok()?;
    let host = match via.received() {
        Some(Ok(ip)) => rsip::Host::IpAddr(ip),
        _ => via.uri.host_with_port.host.clone(),
    };
    let port = via
        .rport()
        .flatten()
        .map(Into::into)
        .or(via.uri.host_with_port.port);
    Some(SipAddr {
        r#type: Some(via.transport),
        addr: rsip::HostWithPort { host, port },
    })
}

fn socket_sip_addr(addr: SocketAddr) -> SipAddr {
    SipAddr {
        r#type: Some(rsip::Transport::Udp),
        addr: rsip::HostWithPort {
            host: rsip::Host::IpAddr(addr.ip()),
            port: Some(addr.port().into()),
        },
    }
}

fn sip_addr_socket(addr: &SipAddr) -> Option<SocketAddr> {
    let rsip::Host::IpAddr(ip) = addr.addr.host else {
        return None;
    };
    let port = addr.addr.port.as_ref().map_or(5060, |p| p.value());
    Some(SocketAddr::new(ip, port))
}

/// Drives one client INVITE transaction: sends it, passes every response to the call's
/// shard (the stack ACKs final responses, 2xx retransmissions included), sends CANCEL when
/// asked, and reports the transaction's end.
struct ClientDriver {
    tx: Transaction,
    shard: ShardHandle,
    call: u64,
    id: TxId,
    commands: mpsc::UnboundedReceiver<ClientCmd>,
}

impl ClientDriver {
    async fn run(mut self) {
        if let Err(e) = self.tx.send().await {
            tracing::info!(call = self.call, error = %e, "could not send INVITE");
        } else {
            let mut commands_open = true;
            loop {
                tokio::select! {
                    msg = self.tx.receive() => match msg {
                        Some(SipMessage::Response(response)) => {
                            self.shard.send(ShardCommand::Sip {
                                call: self.call,
                                input: SipIn::Response { tx: self.id, response },
                            });
                        }
                        Some(_) => {}
                        None => break,
                    },
                    cmd = self.commands.recv(), if commands_open => match cmd {
                        Some(ClientCmd::Cancel) => {
                            let cancel = crate::sip::message::cancel(&self.tx.original);
                            if let Err(e) = self.tx.send_cancel(cancel).await {
                                tracing::debug!(call = self.call, error = %e, "CANCEL not sent");
                            }
                        }
                        None => commands_open = false,
                    },
                }
            }
        }
        self.shard.send(ShardCommand::Sip {
            call: self.call,
            input: SipIn::ClientTxEnded { tx: self.id },
        });
    }
}

/// Answers a transaction that does not belong to a call, then keeps it alive so the stack
/// can absorb retransmissions (Timer J).
fn respond_and_drive(metrics: &Metrics, mut tx: Transaction, status: u16) {
    metrics.sip_response(status);
    let tag = new_tag();
    let mut resp = message::response(&tx.original, status, Some(&tag), None, None);
    if status == 503 {
        resp.headers
            .push(rsip::headers::make_header("Retry-After", "5".into()));
    }
    tokio::spawn(async move {
        if let Err(e) = tx.respond(resp).await {
            tracing::debug!(error = %e, "could not send response");
        }
        while tx.receive().await.is_some() {}
    });
}

/// Keeps an INVITE (or other) server transaction polled, so the stack can retransmit our
/// responses (Timer G) and deliver ACK and CANCEL, which go to the shard.
struct Driver {
    tx: Transaction,
    shard: ShardHandle,
    call: u64,
    initial: bool,
    forward_ack: bool,
}

impl Driver {
    async fn run(mut self) {
        if self.initial {
            // §8.2.6.1 / §17.2.1: 100 Trying at once stops the caller's INVITE retransmits.
            if let Err(e) = self.tx.send_trying().await {
                tracing::debug!(error = %e, "could not send 100 Trying");
            }
        }
        while let Some(msg) = self.tx.receive().await {
            let SipMessage::Request(req) = msg else {
                continue;
            };
            let input = match req.method {
                Method::Ack if self.forward_ack => SipIn::Ack {
                    cseq: req.cseq_header().and_then(|c| c.seq()).unwrap_or(0),
                    sdp: message::sdp_body(&req),
                },
                Method::Cancel if self.initial => SipIn::Cancel,
                _ => continue,
            };
            self.shard.send(ShardCommand::Sip {
                call: self.call,
                input,
            });
        }
        if self.initial {
            self.shard.send(ShardCommand::Sip {
                call: self.call,
                input: SipIn::InviteTransactionEnded,
            });
        }
    }
}

/// Sends an in-dialog request (BYE) through a new client transaction (§12.2.1.1).
#[allow(clippy::too_many_arguments)]
async fn send_in_dialog(
    endpoint: EndpointInnerRef,
    mut request: Request,
    next_hop: NextHop,
    connection: Option<SipConnection>,
    source: Option<SipAddr>,
    reliable: bool,
    via_ip: IpAddr,
    port: u16,
) {
    let transport = if reliable {
        rsip::Transport::Tcp
    } else {
        rsip::Transport::Udp
    };
    let local = SipAddr {
        r#type: Some(transport),
        addr: rsip::HostWithPort {
            host: rsip::Host::IpAddr(via_ip),
            port: Some(port.into()),
        },
    };
    let via = match endpoint.get_via(Some(local), None) {
        Ok(v) => v,
        Err(e) => return tracing::warn!(error = %e, "cannot build Via"),
    };
    request.headers.push_front(Header::Via(via.into()));
    let method = request.method.clone();
    let key = match TransactionKey::from_request(&request, TransactionRole::Client) {
        Ok(k) => k,
        Err(e) => return tracing::warn!(error = %e, "cannot key in-dialog request"),
    };
    let destination = match &next_hop {
        NextHop::Route(uri) => rsip::Uri::try_from(uri.as_str())
            .ok()
            .and_then(|u| SipAddr::try_from(&u).ok()),
        // No proxy in the path: over UDP answer where the caller's packets come from (NAT,
        // RFC 3581 spirit); over TCP reuse the caller's connection.
        NextHop::RemoteTarget(uri) => {
            if reliable {
                rsip::Uri::try_from(uri.as_str())
                    .ok()
                    .and_then(|u| SipAddr::try_from(&u).ok())
            } else {
                source.or_else(|| {
                    rsip::Uri::try_from(uri.as_str())
                        .ok()
                        .and_then(|u| SipAddr::try_from(&u).ok())
                })
            }
        }
    };
    let mut tx = Transaction::new_client(
        key,
        request,
        endpoint,
        if reliable { connection } else { None },
    );
    tx.destination = destination;
    if let Err(e) = tx.send().await {
        tracing::info!(%method, error = %e, "could not send in-dialog request");
        return;
    }
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(r) = msg {
            if r.status_code.code() >= 200 {
                tracing::debug!(%method, status = r.status_code.code(), "in-dialog request answered");
                break;
            }
        }
    }
}
