//! A media shard: one OS thread that owns a share of the calls, their RTP sockets and ports.
//!
//! Why threads and a sweep rather than a task per call: a call is mostly 50 packets/s out,
//! 50 in. Waking a task per packet per call costs ~2× the CPU of one thread that sweeps all
//! its sockets and sends every call's due frames on one 20 ms tick
//! (measured in `docs/performance.md`). Calls never move between shards, so each call has
//! exactly one owner and no locks are needed. Both legs of a bridged call live in the same
//! slot (the agent leg is placed on its caller's shard), so relaying a packet is a read,
//! an in-place header rewrite and a send: no lock, no copy, no cross-thread hop.
//!
//! The sweep is the only place media moves: on each nominal 20 ms tick it runs due timers and
//! sends due frames, judged against the *nominal* tick time, then drains every call's socket
//! (non-blocking; sockets are not registered with epoll, so caller packets never wake the
//! thread). Every call's frames therefore leave on the same grid, 20 ms apart, whatever the
//! wake-up jitter; commands (SIP) wake the thread through a `Waker` and are handled at once.

use super::bus::{AgentsMsg, CallbackRequest, DispatchMsg};
pub use super::bus::{NewCallRequest, ShardCommand};
use super::records::RecordSink;
use crate::call::{Call, CallSettings, CallSummary, LegId, NewCall, SipIn, SipOut};
use crate::directory::Directory;
use crate::media::types::PTIME_MS;
use mio::net::UdpSocket;
use mio::{Events, Poll, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

const WAKER: Token = Token(usize::MAX);
const TICK: Duration = Duration::from_millis(PTIME_MS);
/// A caller sends one packet per 20 ms; this leaves room for bursts after a stall.
const MAX_PACKETS_PER_SWEEP: usize = 32;
/// How often the shard publishes its call list: the dashboard polls once a second.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

#[derive(Default, Debug)]
pub struct ShardStats {
    pub active_calls: AtomicUsize,
    pub rtp_sent: AtomicU64,
    pub rtp_received: AtomicU64,
    pub rtp_send_errors: AtomicU64,
    /// Sweeps that started more than 5 ms after their tick (the host was too busy).
    pub late_ticks: AtomicU64,
    pub no_port: AtomicU64,
}

#[derive(Clone)]
pub struct ShardHandle {
    tx: mpsc::Sender<ShardCommand>,
    waker: Arc<Waker>,
    pub stats: Arc<ShardStats>,
    /// The shard's calls, republished at most once a second (for the admin API).
    pub calls: tokio::sync::watch::Receiver<Arc<Vec<CallSummary>>>,
}

impl ShardHandle {
    /// Queues a command and wakes the shard. False if the shard has stopped.
    pub fn send(&self, cmd: ShardCommand) -> bool {
        if self.tx.send(cmd).is_err() {
            return false;
        }
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "cannot wake media shard");
        }
        true
    }
}

/// Even ports of the range that belong to this shard (RFC 3550 §11: RTP on even ports).
///
/// A new call gets a port chosen at random (CSPRNG) from the older half of the free list,
/// so an outsider cannot predict the next call's port from the last one and spray RTP at
/// it. Released ports go to the back and only become eligible once the allocations after
/// them have moved them into the older half: a late packet of an ended call does not reach
/// the next call at once. Taking one is O(1) (`swap_remove_front`).
struct PortPool {
    free: VecDeque<u16>,
}

impl PortPool {
    fn new(range: (u16, u16), shard: usize, shards: usize) -> PortPool {
        let first = range.0 + (range.0 % 2);
        let free = (first..=range.1)
            .step_by(2)
            .enumerate()
            .filter(|(i, _)| i % shards == shard)
            .map(|(_, p)| p)
            .collect();
        PortPool { free }
    }

    /// A free port, picked at random among the older half of the free list.
    fn take(&mut self) -> Option<u16> {
        let eligible = self.free.len().div_ceil(2);
        if eligible == 0 {
            return None;
        }
        let i = (crate::sip::message::next_random() % eligible as u64) as usize;
        self.free.swap_remove_front(i)
    }

    /// A port back into the pool, behind every other free port.
    fn release(&mut self, port: u16) {
        self.free.push_back(port);
    }
}

struct Slot {
    call: Call,
    socket: UdpSocket,
    port: u16,
    /// The socket of the call's outbound (agent / transfer) leg, while it has one.
    out_socket: Option<(UdpSocket, u16)>,
    span: tracing::Span,
}

pub struct ShardConfig {
    pub index: usize,
    pub shards: usize,
    pub rtp_ports: (u16, u16),
    pub rtp_bind: IpAddr,
    pub settings: CallSettings,
    /// The customer directory; requests run on tokio's blocking pool, never on the shard.
    pub directory: Arc<dyn Directory>,
    pub runtime: tokio::runtime::Handle,
    pub metrics: Arc<super::metrics::Metrics>,
}

pub fn spawn(
    config: ShardConfig,
    to_dispatch: UnboundedSender<DispatchMsg>,
    to_agents: UnboundedSender<AgentsMsg>,
    records: RecordSink,
) -> std::io::Result<(ShardHandle, std::thread::JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(ShardStats::default());
    let (calls_tx, calls_rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    let handle = ShardHandle {
        tx: tx.clone(),
        waker: waker.clone(),
        stats: stats.clone(),
        calls: calls_rx,
    };
    let shard = Shard {
        own: handle.clone(),
        directory: config.directory,
        runtime: config.runtime,
        ports: PortPool::new(config.rtp_ports, config.index, config.shards),
        poll,
        rx,
        to_dispatch,
        to_agents,
        index: config.index,
        records,
        slots: Vec::new(),
        free_slots: Vec::new(),
        by_id: HashMap::new(),
        rtp_bind: config.rtp_bind,
        settings: config.settings,
        buf_in: vec![0u8; 2048],
        buf_out: Vec::with_capacity(256),
        stats: stats.clone(),
        clock: Instant::now(),
        metrics: config.metrics,
        calls_tx,
        next_summary: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("media-{}", config.index))
        .spawn(move || shard.run())?;
    Ok((handle, thread))
}

struct Shard {
    /// This shard's own handle, for answers that come back from other threads.
    own: ShardHandle,
    directory: Arc<dyn Directory>,
    runtime: tokio::runtime::Handle,
    poll: Poll,
    rx: mpsc::Receiver<ShardCommand>,
    to_dispatch: UnboundedSender<DispatchMsg>,
    to_agents: UnboundedSender<AgentsMsg>,
    index: usize,
    records: RecordSink,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<usize>,
    by_id: HashMap<u64, usize>,
    ports: PortPool,
    rtp_bind: IpAddr,
    settings: CallSettings,
    buf_in: Vec<u8>,
    buf_out: Vec<u8>,
    stats: Arc<ShardStats>,
    clock: Instant,
    metrics: Arc<super::metrics::Metrics>,
    calls_tx: tokio::sync::watch::Sender<Arc<Vec<CallSummary>>>,
    next_summary: Instant,
}

impl Shard {
    fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media shard poll failed");
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
            // Never past the next nominal tick: the sweep below must judge what is due at
            // exactly the tick, and the shard's clock cannot go back once it moved.
            let now = self.advance(Instant::now().min(next_tick));
            let due = Instant::now() >= next_tick;
            // Commands are drained on every wake-up, not only on the waker's event, since
            // wakes coalesce.
            loop {
                match self.rx.try_recv() {
                    Ok(ShardCommand::Shutdown) => {
                        self.shutdown(now);
                        return;
                    }
                    Ok(cmd) => self.command(cmd, now),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.shutdown(now);
                        return;
                    }
                }
            }
            if due {
                let late = Instant::now().saturating_duration_since(next_tick);
                if late > Duration::from_millis(5) {
                    self.stats.late_ticks.fetch_add(1, Ordering::Relaxed);
                }
                // Judge what is due against the nominal tick, not the wake-up time, so wake
                // jitter does not move a frame from one tick to the next.
                let tick = self.advance(next_tick);
                self.sweep(tick);
                if tick >= self.next_summary {
                    self.next_summary = tick + SUMMARY_EVERY;
                    self.publish_calls(tick);
                }
                next_tick += TICK;
                let real = Instant::now();
                if next_tick <= real {
                    // Far behind (host stalled): restart the grid rather than spin.
                    next_tick = real + TICK;
                }
            }
        }
    }

    /// The shard's clock never goes backwards, whichever of wake-up time and nominal tick
    /// time it is given.
    fn advance(&mut self, t: Instant) -> Instant {
        if t > self.clock {
            self.clock = t;
        }
        self.clock
    }

    fn command(&mut self, cmd: ShardCommand, now: Instant) {
        match cmd {
            ShardCommand::NewCall(req) => self.new_call(*req, now),
            ShardCommand::Sip { call, input } => {
                let Some(&i) = self.by_id.get(&call) else {
                    // The call ended while the message was in flight; answer requests so the
                    // peer is not left retransmitting.
                    if let SipIn::Request { tx, .. } = input {
                        let resp =
                            crate::sip::message::response(&tx.request, 481, None, None, None);
                        tx.send(resp);
                    }
                    return;
                };
                if let Some(slot) = self.slots[i].as_mut() {
                    let _g = slot.span.enter();
                    slot.call.handle_sip(now, input);
                }
                self.flush(i, now, false);
            }
            ShardCommand::Directory { call, id, response } => {
                let Some(&i) = self.by_id.get(&call) else {
                    return;
                };
                if let Some(slot) = self.slots[i].as_mut() {
                    let _g = slot.span.enter();
                    slot.call.handle_directory_response(now, id, response);
                }
                self.flush(i, now, false);
            }
            ShardCommand::Acd { call, input } => {
                let Some(&i) = self.by_id.get(&call) else {
                    // The call is gone: an offer must still be answered, or the agent would
                    // stay reserved until the ACD's guard fires.
                    if let crate::call::AcdIn::Offer(offer) = input {
                        let _ = self.to_agents.send(AgentsMsg::FromCall {
                            shard: self.index,
                            out: crate::call::AcdOut::OfferResult {
                                call,
                                agent: offer.agent,
                                result: crate::acd::OfferResult::CallerGone,
                            },
                        });
                    }
                    return;
                };
                if let Some(slot) = self.slots[i].as_mut() {
                    let _g = slot.span.enter();
                    slot.call.handle_acd(now, input);
                }
                self.flush(i, now, false);
            }
            ShardCommand::DialCallback(req) => self.dial_callback(*req, now),
            ShardCommand::Shutdown => {}
        }
    }

    fn dial_callback(&mut self, req: CallbackRequest, now: Instant) {
        let Some((socket, port)) = self.bind_rtp() else {
            self.stats.no_port.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call = req.id, "no free RTP port for a callback");
            let _ = self.to_agents.send(AgentsMsg::FromCall {
                shard: self.index,
                out: crate::call::AcdOut::CallbackDialed {
                    callback: req.id,
                    reached: false,
                },
            });
            return;
        };
        let span = tracing::info_span!("call", id = req.id);
        let call = {
            let _g = span.enter();
            Call::new_callback(
                now,
                crate::call::NewCallback {
                    id: req.id,
                    queue: req.queue,
                    number: req.number,
                    request_uri: req.request_uri,
                    caller_id: req.caller_id,
                    local_tag: req.local_tag,
                    contact: req.contact,
                    media_ip: req.media_ip,
                    media_port: port,
                    catalog: req.catalog,
                    started_unix_ms: req.started_unix_ms,
                    random: req.random,
                    sip_local: req.sip_local,
                },
                self.settings.clone(),
            )
        };
        self.insert(call, socket, port, span, now);
    }

    fn new_call(&mut self, req: NewCallRequest, now: Instant) {
        let Some((socket, port)) = self.bind_rtp() else {
            self.stats.no_port.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call = req.id, "no free RTP port; refusing call with 503");
            let resp = crate::sip::message::response(
                &req.invite.request,
                503,
                Some(&req.local_tag),
                None,
                None,
            );
            self.metrics.sip_response(503);
            req.invite.send(resp);
            let _ = self
                .to_dispatch
                .send(DispatchMsg::CallEnded { call: req.id });
            return;
        };
        let span = tracing::info_span!("call", id = req.id);
        let call = {
            let _g = span.enter();
            Call::new(
                now,
                NewCall {
                    id: req.id,
                    invite: req.invite,
                    local_tag: req.local_tag,
                    contact: req.contact,
                    media_ip: req.media_ip,
                    media_port: port,
                    transport: req.transport,
                    catalog: req.catalog,
                    started_unix_ms: req.started_unix_ms,
                    random: req.random,
                    sip_local: req.sip_local,
                    announce: req.announce,
                },
                self.settings.clone(),
            )
        };
        self.insert(call, socket, port, span, now);
    }

    fn insert(
        &mut self,
        call: Call,
        socket: UdpSocket,
        port: u16,
        span: tracing::Span,
        now: Instant,
    ) {
        let i = match self.free_slots.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.by_id.insert(call.id(), i);
        self.slots[i] = Some(Slot {
            call,
            socket,
            port,
            out_socket: None,
            span,
        });
        self.stats.active_calls.fetch_add(1, Ordering::Relaxed);
        self.flush(i, now, false);
    }

    fn bind_rtp(&mut self) -> Option<(UdpSocket, u16)> {
        Self::bind_port(&mut self.ports, self.rtp_bind)
    }

    fn bind_port(ports: &mut PortPool, bind: IpAddr) -> Option<(UdpSocket, u16)> {
        // A port someone else holds is skipped and put at the back; give up after one round.
        for _ in 0..ports.free.len() {
            let port = ports.take()?;
            match std::net::UdpSocket::bind(SocketAddr::new(bind, port)) {
                Ok(s) => {
                    if s.set_nonblocking(true).is_ok() {
                        return Some((UdpSocket::from_std(s), port));
                    }
                    ports.release(port);
                }
                Err(_) => ports.release(port),
            }
        }
        None
    }

    /// Hands every datagram waiting on slot `i`'s socket to its call. Bounded per sweep so
    /// one flooded port cannot starve the others (the rest waits for the next tick; the
    /// kernel drops what overflows its buffer).
    fn read_rtp(&mut self, i: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(i).and_then(|s| s.as_mut()) else {
            return;
        };
        for leg in [LegId::Caller, LegId::Outbound] {
            for _ in 0..MAX_PACKETS_PER_SWEEP {
                let (socket, other) = match (leg, slot.out_socket.as_ref()) {
                    (LegId::Caller, o) => (&slot.socket, o.map(|(s, _)| s)),
                    (LegId::Outbound, Some((s, _))) => (s, Some(&slot.socket)),
                    (LegId::Outbound, None) => break,
                };
                match socket.recv_from(&mut self.buf_in) {
                    Ok((n, from)) => {
                        self.stats.rtp_received.fetch_add(1, Ordering::Relaxed);
                        let forward = slot.call.handle_rtp(now, leg, from, &mut self.buf_in[..n]);
                        // Bridged: the packet was rewritten in place for the other leg and
                        // leaves in this same sweep.
                        if let (Some(dst), Some(other)) = (forward, other) {
                            match other.send_to(&self.buf_in[..n], dst) {
                                Ok(_) => self.stats.rtp_sent.fetch_add(1, Ordering::Relaxed),
                                Err(_) => {
                                    self.stats.rtp_send_errors.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    // WouldBlock: drained. Other errors (ICMP port unreachable from an earlier
                    // send shows up here on Linux) end this round too.
                    Err(_) => break,
                }
            }
        }
    }

    /// Two passes. First every call's timers and due frames, so send times depend only on
    /// the cheap send path and stay evenly spaced tick after tick; then every call's received
    /// packets (decoding, DTMF), whose effects — a barge-in, the next prompt — go out with
    /// the next tick's frame, still within one packet time.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            if slot.call.poll_timeout().is_some_and(|t| t <= now) {
                slot.call.handle_timeout(now);
            }
            self.flush(i, now, true);
        }
        for i in 0..self.slots.len() {
            self.read_rtp(i, now);
            self.flush(i, now, false);
        }
    }

    /// Sends what slot `i` has queued (RTP only from the sweep), and reaps it if it ended.
    fn flush(&mut self, i: usize, now: Instant, transmit: bool) {
        let Some(slot) = self.slots.get_mut(i).and_then(|s| s.as_mut()) else {
            return;
        };
        if slot.call.awaiting_outbound_socket() {
            if slot.out_socket.is_none() {
                slot.out_socket = Self::bind_port(&mut self.ports, self.rtp_bind);
            }
            let port = slot.out_socket.as_ref().map(|(_, p)| *p);
            let _g = slot.span.enter();
            slot.call.handle_outbound_socket(now, port);
        }
        while let Some(out) = slot.call.poll_sip() {
            match out {
                SipOut::Respond { tx, response } => {
                    self.metrics.sip_response(response.status_code.code());
                    if !tx.send(response) {
                        tracing::debug!(
                            call = slot.call.id(),
                            "transaction gone before our response"
                        );
                    }
                }
                SipOut::Request {
                    leg,
                    request,
                    next_hop,
                    destination,
                } => {
                    let _ = self.to_dispatch.send(DispatchMsg::SendRequest {
                        call: slot.call.id(),
                        leg,
                        request,
                        next_hop,
                        destination,
                    });
                }
                SipOut::Invite {
                    leg,
                    tx,
                    request,
                    destination,
                } => {
                    let _ = self.to_dispatch.send(DispatchMsg::SendInvite {
                        call: slot.call.id(),
                        leg,
                        shard: self.index,
                        tx,
                        request,
                        destination,
                    });
                }
                SipOut::Cancel { tx } => {
                    let _ = self.to_dispatch.send(DispatchMsg::Cancel {
                        call: slot.call.id(),
                        tx,
                    });
                }
            }
        }
        while let Some(out) = slot.call.poll_acd() {
            let _ = self.to_agents.send(AgentsMsg::FromCall {
                shard: self.index,
                out,
            });
        }
        while let Some((id, request)) = slot.call.poll_directory() {
            let (directory, own, call) = (self.directory.clone(), self.own.clone(), slot.call.id());
            let metrics = self.metrics.clone();
            // SQLite and HTTP stores block; the flow keeps playing and times the request out
            // on its own if the answer is slow.
            self.runtime.spawn_blocking(move || {
                let now_unix_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let started = Instant::now();
                let response = crate::directory::execute(directory.as_ref(), &request, now_unix_ms);
                metrics.directory_request(started.elapsed());
                own.send(ShardCommand::Directory { call, id, response });
            });
        }
        while let Some((leg, dest)) = transmit
            .then(|| slot.call.poll_transmit(now, &mut self.buf_out))
            .flatten()
        {
            let socket = match (leg, slot.out_socket.as_ref()) {
                (LegId::Outbound, Some((s, _))) => s,
                _ => &slot.socket,
            };
            match socket.send_to(&self.buf_out, dest) {
                Ok(_) => {
                    self.stats.rtp_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats.rtp_send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(record) = slot.call.poll_record() {
            self.records.publish(record);
        }
        if !slot.call.uses_outbound_socket() {
            if let Some((_, port)) = slot.out_socket.take() {
                self.ports.release(port);
            }
        }
        if slot.call.is_ended() {
            self.reap(i);
        }
    }

    fn reap(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i).and_then(|s| s.take()) else {
            return;
        };
        // Released ports go to the back, so a late packet of this call cannot reach the next
        // call that would otherwise get the same port at once.
        self.ports.release(slot.port);
        if let Some((_, port)) = slot.out_socket {
            self.ports.release(port);
        }
        self.by_id.remove(&slot.call.id());
        let _ = self.to_agents.send(AgentsMsg::CallGone {
            call: slot.call.id(),
        });
        self.free_slots.push(i);
        self.stats.active_calls.fetch_sub(1, Ordering::Relaxed);
        let _ = self.to_dispatch.send(DispatchMsg::CallEnded {
            call: slot.call.id(),
        });
    }

    /// Publishes the call list, unless nobody looks and it was already empty.
    fn publish_calls(&mut self, now: Instant) {
        let calls: Vec<CallSummary> = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.call.summary(now))
            .collect();
        if calls.is_empty() && self.calls_tx.borrow().is_empty() {
            return;
        }
        self.calls_tx.send_replace(Arc::new(calls));
    }

    fn shutdown(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            if let Some(slot) = self.slots[i].as_mut() {
                slot.call.handle_shutdown(now);
            }
            self.flush(i, now, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PortPool;
    use std::collections::HashSet;

    #[test]
    fn rtp_ports_are_picked_at_random_not_in_order() {
        let mut pool = PortPool::new((10000, 10998), 0, 1);
        let picked: Vec<u16> = (0..20).filter_map(|_| pool.take()).collect();
        assert_eq!(picked.len(), 20);
        let ascending = picked.windows(2).all(|w| w[1] == w[0] + 2);
        assert!(!ascending, "ports handed out in order: {picked:?}");
        // Two fresh pools do not hand out the same sequence.
        let mut other = PortPool::new((10000, 10998), 0, 1);
        let again: Vec<u16> = (0..20).filter_map(|_| other.take()).collect();
        assert_ne!(picked, again);
        assert!(
            picked
                .iter()
                .all(|p| p % 2 == 0 && (10000..=10998).contains(p))
        );
    }

    #[test]
    fn every_rtp_port_is_handed_out_once_until_released() {
        let mut pool = PortPool::new((20000, 20099), 1, 2);
        let mut seen = HashSet::new();
        while let Some(p) = pool.take() {
            assert!(seen.insert(p), "port {p} handed out twice");
        }
        // Even ports 20000..=20098 are 50; shard 1 of 2 owns every second one.
        assert_eq!(seen.len(), 25);
        let p = *seen.iter().next().unwrap();
        pool.release(p);
        assert_eq!(pool.take(), Some(p));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn a_released_port_waits_behind_the_older_free_ports() {
        let mut pool = PortPool::new((30000, 30199), 0, 1);
        let p = pool.take().unwrap();
        pool.release(p);
        // 99 older free ports: the released one is in the younger half, not eligible for
        // the next allocations.
        for _ in 0..40 {
            assert_ne!(pool.take(), Some(p));
        }
    }
}
