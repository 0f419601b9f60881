//! One call, end to end: joins the SIP dialog, the media session and the flow run.
//!
//! - **Owns:** the state of one inbound call: answer, ACK, re-INVITE, INFO, BYE, CANCEL
//!   handling (RFC 3261 §13–15, RFC 3264), its `MediaSession` and its `flow::Run`.
//! - **Takes:** `handle_sip` (requests and transaction events), `handle_rtp` (datagrams),
//!   `handle_timeout`, always with `now` passed in.
//! - **Gives:** `poll_sip` (responses and requests to send), `poll_transmit` (RTP),
//!   `poll_timeout` (next deadline) and, once, the `CallRecord` when it ends.
//! - **Never:** reads the clock, touches a socket, blocks, or panics on anything a peer sends.

mod bridge;
mod callback;
pub use callback::{NewCallback, dial_uri as callback_dial_uri};
pub mod leg;
pub mod record;

use crate::acd::OfferResult;
use crate::catalog::Catalog;
use crate::directory::{DirectoryRequest, DirectoryResponse};
use crate::flow::{Action, CallInfo, FlowId, QueueEvent, QueueRefusal, Run};
use crate::media::dtmf::parse_info_body;
use crate::media::sdp::{self, Negotiated};
use crate::media::session::{
    InbandDtmf, MediaConfig, MediaEvent, MediaPolicy, MediaSession, RtpVerdict,
};
use crate::media::types::{Codec, Digit, DigitSource, PromptId};
use crate::sip::dialog::{Dialog, NextHop};
use crate::sip::message::{self, Body, InviteInfo};
use crate::sip::{Method, Request, Response, ServerTx};
use leg::{Cancelled, OutLeg, OutState, Purpose};
pub use leg::{LegId, Offer, TxId};
pub use record::{CallRecord, DigitRecord, Outcome, QueueRecord, SurveyRecord};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings that shape every call; from `phonetree.yaml`.
#[derive(Clone, Debug)]
pub struct CallSettings {
    /// Codecs we accept, in our order of preference when the caller gives us a choice.
    pub codecs: Vec<Codec>,
    /// Hang up when the caller sends no RTP for this long (not applied while on hold).
    pub rtp_timeout: Duration,
    /// Ring (180) this long before answering; 0 answers at once.
    pub answer_delay: Duration,
    /// Latch RTP to where the caller's packets come from (NAT).
    pub symmetric_rtp: bool,
    /// Telephone-event payload type we offer when we make the offer (late offer).
    pub telephone_event_pt: u8,
    /// Hard cap on a call's length, so no call can leak forever.
    pub max_call_duration: Duration,
    /// When to listen for DTMF tones in the caller's audio.
    pub inband_dtmf: InbandDtmf,
    /// Send to a leg's SDP address before RTP came from it even when its IP is not the
    /// SIP signalling source's (trusted trunks with separate media gateways).
    pub trust_sdp_address: bool,
    /// How long after the answer RTP from the signalling IP may latch a leg (NAT).
    pub latch_window: Duration,
    /// Our SIP and HTTP ports: never a media destination on our own addresses.
    pub own_ports: Vec<u16>,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            rtp_timeout: Duration::from_secs(30),
            answer_delay: Duration::ZERO,
            symmetric_rtp: true,
            telephone_event_pt: 101,
            max_call_duration: Duration::from_secs(4 * 3600),
            inband_dtmf: InbandDtmf::Auto,
            trust_sdp_address: false,
            latch_window: Duration::from_secs(10),
            own_ports: Vec::new(),
        }
    }
}

/// Everything the runtime hands a new call.
pub struct NewCall {
    pub id: u64,
    pub invite: ServerTx,
    pub local_tag: String,
    /// Our `Contact` for this call, e.g. `<sip:ivr@192.0.2.1:5060;transport=tcp>`.
    pub contact: String,
    /// Address we advertise in SDP, and the port of this call's RTP socket.
    pub media_ip: IpAddr,
    pub media_port: u16,
    pub transport: &'static str,
    pub catalog: Arc<Catalog>,
    pub started_unix_ms: u64,
    /// Per-call random values (SSRC, initial sequence/timestamp, CSeq, SDP session id).
    pub random: u64,
    /// Our SIP address as the caller reached it: Contact and From of outbound legs.
    pub sip_local: SocketAddr,
    /// Instead of a flow: answer, play this prompt, hang up (an agent's feature code).
    pub announce: Option<String>,
}

/// A SIP event for this call, already matched to it by the runtime.
#[derive(Debug)]
pub enum SipIn {
    /// ACK for our 2xx (initial INVITE or re-INVITE), with the answer when we offered.
    Ack { cseq: u32, sdp: Option<Vec<u8>> },
    /// CANCEL of the initial INVITE (the stack already answered the CANCEL itself, §9.2).
    Cancel,
    /// The initial INVITE transaction ended (Timer L/H) — if no ACK came, the call is dead.
    InviteTransactionEnded,
    /// A new request inside one of the call's dialogs: BYE, INFO, re-INVITE, OPTIONS, ...
    Request { leg: LegId, tx: ServerTx },
    /// Our BYE got its final response or timed out; nothing more to do.
    ByeCompleted,
    /// A response to an INVITE we sent (client transaction `tx`).
    Response { tx: TxId, response: Response },
    /// Client transaction `tx` ended (Timer B/M, or transport error) — if no final response
    /// came, the far end is unreachable.
    ClientTxEnded { tx: TxId },
}

/// What the call wants sent.
#[derive(Debug)]
pub enum SipOut {
    Respond {
        tx: ServerTx,
        response: Response,
    },
    /// An in-dialog request (BYE) to send through a new client transaction.
    Request {
        leg: LegId,
        request: Request,
        next_hop: NextHop,
        /// For outbound legs: where the leg's INVITE went (NAT: the binding's source).
        destination: Option<SocketAddr>,
    },
    /// A dialog-creating INVITE (client transaction `tx`); responses come back as
    /// [`SipIn::Response`]. The stack ACKs every final response, 2xx included.
    Invite {
        /// `Outbound` for agent and transfer legs; `Caller` for a callback's customer leg.
        leg: LegId,
        tx: TxId,
        request: Request,
        destination: Option<SocketAddr>,
    },
    /// CANCEL the INVITE of client transaction `tx` (RFC 3261 §9.1).
    Cancel {
        tx: TxId,
    },
}

/// What a call asks of the ACD (queues and agents).
#[derive(Debug, Clone, PartialEq)]
pub enum AcdOut {
    Enqueue {
        call: u64,
        queue: String,
        priority: i32,
        caller: String,
        resume: bool,
    },
    /// The caller left the queue: hung up (`keep_place` false) or pressed a leave key.
    Leave { call: u64, keep_place: bool },
    Callback {
        call: u64,
        queue: String,
        number: String,
    },
    /// How an `Offer` ended (exactly one per offer the call accepted).
    OfferResult {
        call: u64,
        agent: String,
        result: OfferResult,
    },
    /// The bridge with an agent ended: the agent goes to wrap-up.
    BridgeEnded { call: u64 },
    /// A callback's customer answered (`reached`), or could not be reached.
    CallbackDialed { callback: u64, reached: bool },
}

/// What the ACD tells a call.
#[derive(Debug, Clone)]
pub enum AcdIn {
    Joined {
        position: usize,
        ewt: Option<Duration>,
    },
    Refused(QueueRefusal),
    Announce {
        position: usize,
        ewt: Option<Duration>,
    },
    Overflow,
    /// The queue has no agents any more (leave_when_empty).
    NoAgents,
    Offer(Offer),
    /// Stop ringing this agent (ring-all: another one answered; the ACD's guard fired).
    CancelOffer {
        agent: String,
    },
    CallbackRegistered,
    CallbackDuplicate,
    CallbackFailed,
}

/// The queue part of a call, for its record and its teardown.
#[derive(Debug, Default)]
struct QueueState {
    name: String,
    enqueued: Option<Instant>,
    /// In the ACD's queue now (joined and not left, answered or removed).
    waiting: bool,
    answered: Option<Instant>,
    record: QueueRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A callback: our INVITE to the customer is out, not answered yet.
    Dialing,
    /// INVITE received, ringing before answer.
    Ringing {
        answer_at: Instant,
    },
    /// 2xx sent, waiting for ACK.
    Answered,
    Confirmed,
    Ended,
}

/// An offer/answer exchange in progress inside the dialog.
#[derive(Debug)]
enum PendingOffer {
    /// We offered in a 2xx (INVITE without SDP); the answer comes in the ACK with this CSeq.
    OurOffer { cseq: u32 },
}

pub struct Call {
    id: u64,
    settings: CallSettings,
    catalog: Arc<Catalog>,
    /// The caller's INVITE; `None` for a callback, whose caller leg we placed ourselves.
    invite: Option<ServerTx>,
    info: InviteInfo,
    dialog: Dialog,
    contact: String,
    media_ip: IpAddr,
    media_port: u16,
    transport: &'static str,
    state: State,
    media: Option<MediaSession>,
    /// The caller's offer from the INVITE, answered in our 2xx.
    offer: Option<sdp::SessionDescription>,
    negotiated: Option<Negotiated>,
    pending: Option<PendingOffer>,
    sdp_session_id: u64,
    sdp_version: u64,
    random: u64,
    flow: Option<FlowId>,
    run: Option<Run>,
    sip_out: VecDeque<SipOut>,
    /// Directory requests the flow made, for the runtime to run off the media thread.
    directory_out: VecDeque<(u64, DirectoryRequest)>,
    record: Option<CallRecord>,
    started: Instant,
    answered: Option<Instant>,
    hard_deadline: Instant,
    final_status: u16,
    outcome: Option<Outcome>,
    started_unix_ms: u64,
    digits: Vec<DigitRecord>,
    prompts: Vec<String>,
    sip_local: SocketAddr,
    /// The outbound leg (agent or transfer target), if any.
    out: Option<OutLeg>,
    /// An outbound leg that waits for the runtime to give it an RTP socket.
    pending_out: Option<Purpose>,
    pending_offer: Option<Offer>,
    /// Outbound legs we CANCELled that may still be answered.
    cancelled: Vec<(Cancelled, Instant)>,
    next_tx: u32,
    acd_out: VecDeque<AcdOut>,
    queue: Option<QueueState>,
    /// A callback's INVITE to the customer, until it is answered or fails.
    dial: Option<callback::Dial>,
    /// An announcement call (feature code): the prompt, then BYE.
    announce: Option<PromptId>,
}

/// A call in progress as the admin API lists it (`Call::summary`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CallSummary {
    pub id: u64,
    pub caller: String,
    pub dialled: String,
    pub flow: String,
    /// The flow node the call is at.
    pub node: String,
    /// `ringing`, `answering`, `ivr`, `queued`, `transferring`, `bridged`, `ending`.
    pub state: &'static str,
    /// The queue the call entered, if any.
    pub queue: Option<String>,
    /// The agent ringing or talking.
    pub agent: Option<String>,
    pub started_unix_ms: u64,
    pub duration_ms: u64,
}

/// How long a CANCELled leg is kept for a racing 2xx (Timer B, 64 × T1).
const CANCELLED_LEG_TTL: Duration = Duration::from_secs(32);

/// Bounds on what a record keeps, so a looping caller cannot grow memory.
const MAX_RECORDED_DIGITS: usize = 256;
const MAX_RECORDED_PROMPTS: usize = 256;

/// What differs between the calls we answer and the callbacks we place.
struct Parts {
    id: u64,
    catalog: Arc<Catalog>,
    invite: Option<ServerTx>,
    info: InviteInfo,
    dialog: Dialog,
    contact: String,
    media_ip: IpAddr,
    media_port: u16,
    transport: &'static str,
    state: State,
    random: u64,
    flow: Option<FlowId>,
    started_unix_ms: u64,
    sip_local: SocketAddr,
}

impl Call {
    /// A call with nothing happened yet.
    fn with_parts(now: Instant, settings: CallSettings, p: Parts) -> Call {
        Call {
            id: p.id,
            hard_deadline: now + settings.max_call_duration,
            settings,
            catalog: p.catalog,
            invite: p.invite,
            info: p.info,
            dialog: p.dialog,
            contact: p.contact,
            media_ip: p.media_ip,
            media_port: p.media_port,
            transport: p.transport,
            state: p.state,
            media: None,
            offer: None,
            negotiated: None,
            pending: None,
            sdp_session_id: p.random & 0xffff_ffff,
            sdp_version: 1,
            random: p.random,
            flow: p.flow,
            run: None,
            sip_out: VecDeque::new(),
            directory_out: VecDeque::new(),
            record: None,
            started: now,
            answered: None,
            final_status: 0,
            outcome: None,
            started_unix_ms: p.started_unix_ms,
            digits: Vec::new(),
            prompts: Vec::new(),
            sip_local: p.sip_local,
            out: None,
            pending_out: None,
            pending_offer: None,
            cancelled: Vec::new(),
            next_tx: 0,
            acd_out: VecDeque::new(),
            queue: None,
            dial: None,
            announce: None,
        }
    }

    /// Creates the call for an INVITE; it answers (or refuses) right away unless ringing.
    pub fn new(now: Instant, new: NewCall, settings: CallSettings) -> Call {
        let info_result = InviteInfo::from_request(&new.invite.request);
        let info = info_result
            .as_ref()
            .cloned()
            .unwrap_or_else(|_| InviteInfo {
                call_id: String::new(),
                from: String::new(),
                to: String::new(),
                caller: String::new(),
                dialled: String::new(),
                remote_target: String::new(),
                route_set: Vec::new(),
                cseq: 0,
                sdp: None,
            });
        let dialog = Dialog::uas(
            &info,
            new.local_tag.clone(),
            ((new.random >> 40) & 0xffff) as u32,
        );
        // An announcement plays one prompt instead of the flow of the dialled number.
        let announce = new
            .announce
            .as_deref()
            .and_then(|name| new.catalog.prompts.lookup(&format!("en/{name}")));
        let flow = if new.announce.is_some() {
            None
        } else {
            new.catalog.flows.route(&info.dialled)
        };
        let mut call = Call::with_parts(
            now,
            settings,
            Parts {
                id: new.id,
                catalog: new.catalog,
                invite: Some(new.invite),
                info,
                dialog,
                contact: new.contact,
                media_ip: new.media_ip,
                media_port: new.media_port,
                transport: new.transport,
                state: State::Ringing { answer_at: now },
                random: new.random,
                flow,
                started_unix_ms: new.started_unix_ms,
                sip_local: new.sip_local,
            },
        );
        if let Err(e) = info_result {
            tracing::info!(call = call.id, error = %e, "refusing INVITE");
            let Some(invite) = call.invite.clone() else {
                return call;
            };
            let resp = message::response(
                &invite.request,
                e.status(),
                Some(&call.dialog.local_tag),
                None,
                None,
            );
            let resp = match &e {
                message::InviteError::BadExtension(tag) => message::with_unsupported(resp, tag),
                _ => resp,
            };
            call.final_status = e.status();
            call.sip_out.push_back(SipOut::Respond {
                tx: invite,
                response: resp,
            });
            call.end(now, Outcome::Rejected);
            return call;
        }
        call.announce = announce;
        if call.flow.is_none() && call.announce.is_none() {
            tracing::info!(call = call.id, dialled = %call.info.dialled, "no flow for dialled number");
            call.reject(now, 404);
            return call;
        }
        // Check the offer before ringing, so a call we cannot serve is refused at once
        // (RFC 3261 §13.3.1.3, 488 with a Warning).
        if let Some(body) = call.info.sdp.clone() {
            let checked = sdp::parse(&body).map_err(|e| e.to_string()).and_then(|o| {
                let n = sdp::negotiate(&o, &call.settings.codecs).map_err(|e| e.to_string())?;
                Ok((o, n))
            });
            match checked {
                Ok((o, n)) => {
                    call.offer = Some(o);
                    call.negotiated = Some(n);
                }
                Err(e) => {
                    tracing::info!(call = call.id, error = %e, "no usable media in offer");
                    call.reject(now, 488);
                    return call;
                }
            }
        }
        if call.settings.answer_delay.is_zero() {
            call.answer(now);
        } else {
            call.respond_invite(180, None);
            call.state = State::Ringing {
                answer_at: now + call.settings.answer_delay,
            };
        }
        call
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// What the admin API shows of this call: a copy, cheap enough to take once a second
    /// for every call of a shard. The caller number is in full; the admin side masks it.
    pub fn summary(&self, now: Instant) -> CallSummary {
        let waiting = self.queue.as_ref().is_some_and(|q| q.waiting);
        let state = match self.state {
            State::Dialing => "dialing",
            State::Ringing { .. } => "ringing",
            State::Answered => "answering",
            State::Ended => "ending",
            State::Confirmed if self.is_bridged() => "bridged",
            State::Confirmed if self.out.is_some() => "transferring",
            State::Confirmed if waiting => "queued",
            State::Confirmed => "ivr",
        };
        let agent = self.out.as_ref().and_then(|o| match &o.purpose {
            leg::Purpose::Agent { agent, .. } => Some(agent.clone()),
            leg::Purpose::Transfer { .. } => None,
        });
        CallSummary {
            id: self.id,
            caller: self.info.caller.clone(),
            dialled: self.info.dialled.clone(),
            flow: self
                .flow
                .map(|f| self.catalog.flows.flow_name(f).to_string())
                .unwrap_or_default(),
            node: self
                .run
                .as_ref()
                .map(|r| r.current_node().to_string())
                .unwrap_or_default(),
            state,
            queue: self.queue.as_ref().map(|q| q.name.clone()),
            agent,
            started_unix_ms: self.started_unix_ms,
            duration_ms: now.saturating_duration_since(self.started).as_millis() as u64,
        }
    }

    pub fn sip_call_id(&self) -> &str {
        &self.info.call_id
    }

    pub fn local_tag(&self) -> &str {
        &self.dialog.local_tag
    }

    /// True once the caller's leg ended and no outbound leg waits for a final response:
    /// the runtime may reap the call.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended && self.cancelled.is_empty() && self.out.is_none()
    }

    /// The call needs an RTP socket for its outbound leg: answer with
    /// [`Call::handle_outbound_socket`].
    pub fn awaiting_outbound_socket(&self) -> bool {
        self.pending_out.is_some()
    }

    /// The call has (or is setting up) an outbound leg that uses the second socket.
    pub fn uses_outbound_socket(&self) -> bool {
        self.out.is_some() || self.pending_out.is_some()
    }

    pub fn is_bridged(&self) -> bool {
        self.out
            .as_ref()
            .is_some_and(|o| o.state == OutState::Bridged)
    }

    /// True while the caller should hear our RTP (after the ACK, and not ended).
    pub fn is_media_active(&self) -> bool {
        self.state == State::Confirmed && self.media.is_some()
    }

    // ---- handle_* -------------------------------------------------------------------------

    pub fn handle_sip(&mut self, now: Instant, input: SipIn) {
        match input {
            SipIn::Ack { cseq, sdp } => self.on_ack(now, cseq, sdp),
            SipIn::Cancel => {
                if let State::Ringing { .. } = self.state {
                    // §9.2: the INVITE gets 487 once the CANCEL is accepted.
                    self.final_status = 487;
                    self.respond_invite(487, None);
                    self.end(now, Outcome::Cancelled);
                }
            }
            SipIn::InviteTransactionEnded => {
                if self.state == State::Answered {
                    // §13.3.1.4: 2xx retransmitted for 64*T1 without ACK: end with BYE.
                    tracing::info!(call = self.id, "no ACK for our 200 OK");
                    self.send_bye(now, Outcome::NoAck);
                }
            }
            SipIn::Request {
                leg: LegId::Caller,
                tx,
            } => self.on_request(now, tx),
            SipIn::Request {
                leg: LegId::Outbound,
                tx,
            } => self.on_outbound_request(now, tx),
            SipIn::ByeCompleted => {}
            SipIn::Response { tx, response } if self.is_dial(tx) => {
                self.on_dial_response(now, response)
            }
            SipIn::Response { tx, response } => self.on_response(now, tx, response),
            SipIn::ClientTxEnded { tx } if self.is_dial(tx) => self.on_dial_failed(now, 408),
            SipIn::ClientTxEnded { tx } => self.on_client_tx_ended(now, tx),
        }
        self.drive(now);
    }

    /// One datagram received on `leg`'s socket. In a bridged call an accepted packet is
    /// rewritten in place for the other leg; the returned address is where to send `data`
    /// from the other leg's socket, in the same sweep.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        leg: LegId,
        from: SocketAddr,
        data: &mut [u8],
    ) -> Option<SocketAddr> {
        if self.state == State::Ended {
            return None;
        }
        let bridged = self.is_bridged();
        let forward = match leg {
            LegId::Caller => {
                let media = self.media.as_mut()?;
                let accepted = media.handle_rtp(now, from, data) == RtpVerdict::Accepted;
                match (
                    bridged && accepted,
                    self.out.as_mut().and_then(|o| o.media.as_mut()),
                ) {
                    (true, Some(agent)) => {
                        let source = media.relay_source();
                        agent.relay_in_place(now, data, source)
                    }
                    _ => None,
                }
            }
            LegId::Outbound => {
                let out = self.out.as_mut()?;
                let agent = out.media.as_mut()?;
                let accepted = agent.handle_rtp(now, from, data) == RtpVerdict::Accepted;
                match (bridged && accepted, self.media.as_mut()) {
                    (true, Some(caller)) => {
                        let source = agent.relay_source();
                        caller.relay_in_place(now, data, source)
                    }
                    _ => None,
                }
            }
        };
        if !bridged {
            self.drive(now);
        } else if self.media.as_ref().is_some_and(|m| m.has_events())
            || self
                .out
                .as_ref()
                .and_then(|o| o.media.as_ref())
                .is_some_and(|m| m.has_events())
        {
            self.drive(now);
        }
        forward
    }

    /// What the ACD says about this call (queue position, offers, outcomes).
    pub fn handle_acd(&mut self, now: Instant, input: AcdIn) {
        if self.state == State::Ended {
            if let AcdIn::Offer(offer) = input {
                self.acd_out.push_back(AcdOut::OfferResult {
                    call: self.id,
                    agent: offer.agent,
                    result: OfferResult::CallerGone,
                });
            }
            return;
        }
        let event = match input {
            AcdIn::Joined { position, ewt } => {
                if let Some(q) = self.queue.as_mut() {
                    q.waiting = true;
                }
                self.note_ewt(ewt);
                QueueEvent::Joined { position, ewt }
            }
            AcdIn::Refused(r) => {
                self.queue_result(match r {
                    QueueRefusal::Full => "full",
                    QueueRefusal::NoAgents => "no_agents",
                    _ => "refused",
                });
                QueueEvent::Refused(r)
            }
            AcdIn::Announce { position, ewt } => {
                self.note_ewt(ewt);
                QueueEvent::Announce { position, ewt }
            }
            AcdIn::Overflow => {
                self.queue_result("overflow");
                self.cancel_outbound(now, false);
                QueueEvent::Overflow
            }
            AcdIn::NoAgents => {
                self.queue_result("no_agents");
                self.cancel_outbound(now, false);
                QueueEvent::NoAgents
            }
            AcdIn::Offer(offer) => {
                self.on_offer(now, offer);
                return self.drive(now);
            }
            AcdIn::CancelOffer { agent } => {
                let ringing_this_agent = self.out.as_ref().is_some_and(|o| {
                    matches!(o.state, OutState::Calling | OutState::Ringing)
                        && matches!(&o.purpose, Purpose::Agent { agent: a, .. } if *a == agent)
                });
                if ringing_this_agent {
                    self.cancel_outbound(now, false);
                }
                if self
                    .pending_offer
                    .as_ref()
                    .is_some_and(|o| o.agent == agent)
                {
                    self.pending_offer = None;
                    self.pending_out = None;
                }
                return self.drive(now);
            }
            AcdIn::CallbackRegistered => {
                if let Some(q) = self.queue.as_mut() {
                    q.record.callback = true;
                }
                self.queue_result("callback");
                QueueEvent::CallbackRegistered
            }
            AcdIn::CallbackDuplicate => {
                if let Some(q) = self.queue.as_mut() {
                    q.record.callback = true;
                }
                QueueEvent::CallbackDuplicate
            }
            AcdIn::CallbackFailed => QueueEvent::CallbackFailed,
        };
        if let Some(run) = self.run.as_mut() {
            run.handle_queue_event(now, event);
        }
        self.drive(now);
    }

    /// The runtime's answer to [`Call::awaiting_outbound_socket`]: the port of the call's
    /// second RTP socket, or `None` when no port was free.
    pub fn handle_outbound_socket(&mut self, now: Instant, port: Option<u16>) {
        let Some(purpose) = self.pending_out.take() else {
            return;
        };
        let offer = self.pending_offer.take();
        match port {
            Some(port) if self.state != State::Ended => {
                self.start_outbound(now, purpose, offer, port)
            }
            _ => {
                tracing::warn!(call = self.id, "no RTP port for the outbound leg");
                self.outbound_failed(now, &purpose, OfferResult::Failed);
            }
        }
        self.drive(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        // A CANCELled leg that never got its final response is given up (Timer B).
        self.cancelled.retain(|(_, until)| *until > now);
        if self.state == State::Ended {
            return;
        }
        self.check_dial_timeout(now);
        let ring_expired = self.out.as_ref().is_some_and(|o| {
            matches!(o.state, OutState::Calling | OutState::Ringing) && now >= o.ring_deadline
        });
        if ring_expired {
            tracing::info!(call = self.id, "outbound leg not answered in time; CANCEL");
            self.cancel_outbound(now, true);
        }
        if let Some(m) = self.out.as_mut().and_then(|o| o.media.as_mut()) {
            m.handle_timeout(now);
        }
        if let State::Ringing { answer_at } = self.state {
            if now >= answer_at {
                self.answer(now);
            }
        }
        if now >= self.hard_deadline && self.state == State::Confirmed {
            tracing::warn!(call = self.id, "maximum call duration reached");
            self.send_bye(now, Outcome::EngineHangup);
            return;
        }
        if let Some(media) = self.media.as_mut() {
            media.handle_timeout(now);
        }
        if let Some(run) = self.run.as_mut() {
            if run.poll_timeout().is_some_and(|t| t <= now) {
                run.handle_timeout(now);
            }
        }
        self.drive(now);
    }

    /// The engine is stopping: answered calls get BYE, ringing ones 503 (RFC 3261 §21.5.4).
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.pending_out = None;
        match self.state {
            State::Ended => {}
            State::Dialing => {
                self.cancel_dial(now);
                self.end(now, Outcome::Shutdown);
            }
            State::Ringing { .. } => {
                self.final_status = 503;
                self.respond_invite(503, None);
                self.end(now, Outcome::Shutdown);
            }
            State::Answered | State::Confirmed => self.send_bye(now, Outcome::Shutdown),
        }
    }

    /// The answer to a directory request this call made (`id` from `poll_directory`).
    /// Late answers (after the flow's timeout) are ignored by the flow.
    pub fn handle_directory_response(
        &mut self,
        now: Instant,
        id: u64,
        response: DirectoryResponse,
    ) {
        if self.state == State::Ended {
            return;
        }
        if let Some(run) = self.run.as_mut() {
            run.handle_directory_response(now, id, response);
        }
        self.drive(now);
    }

    // ---- poll_* ---------------------------------------------------------------------------

    pub fn poll_sip(&mut self) -> Option<SipOut> {
        self.sip_out.pop_front()
    }

    /// A request for the ACD task (join, leave, offer results, bridge ended).
    pub fn poll_acd(&mut self) -> Option<AcdOut> {
        self.acd_out.pop_front()
    }

    /// A directory request to run (on a worker, never the media thread); answer it with
    /// `handle_directory_response`.
    pub fn poll_directory(&mut self) -> Option<(u64, DirectoryRequest)> {
        self.directory_out.pop_front()
    }

    /// Writes the next due RTP packet into `out`; returns the leg whose socket sends it and
    /// where to. Prompts to the caller, and the whisper to an agent before the bridge.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<(LegId, SocketAddr)> {
        if self.state != State::Confirmed {
            return None;
        }
        if let Some(media) = self.media.as_mut() {
            if let Some(dst) = media.poll_transmit(now, &self.catalog.prompts, out) {
                return Some((LegId::Caller, dst));
            }
        }
        let leg = self.out.as_mut()?;
        let media = leg.media.as_mut()?;
        media
            .poll_transmit(now, &self.catalog.prompts, out)
            .map(|d| (LegId::Outbound, d))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let cancelled = self.cancelled.iter().map(|(_, t)| *t).min();
        let mut next = match self.state {
            State::Ended => return cancelled,
            State::Ringing { answer_at } => Some(answer_at),
            _ => Some(self.hard_deadline),
        };
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.state == State::Confirmed {
            consider(self.media.as_ref().and_then(|m| m.poll_timeout()));
            consider(self.run.as_ref().and_then(|r| r.poll_timeout()));
        }
        consider(cancelled);
        consider(self.dial_deadline());
        if let Some(o) = self.out.as_ref() {
            if matches!(o.state, OutState::Calling | OutState::Ringing) {
                consider(Some(o.ring_deadline));
            }
            consider(o.media.as_ref().and_then(|m| m.poll_timeout()));
        }
        next
    }

    /// The record, once, after the call ended.
    pub fn poll_record(&mut self) -> Option<CallRecord> {
        self.record.take()
    }

    // ---- internals ------------------------------------------------------------------------

    fn on_ack(&mut self, now: Instant, cseq: u32, sdp_body: Option<Vec<u8>>) {
        if let Some(PendingOffer::OurOffer { cseq: offer_cseq }) = self.pending {
            if offer_cseq == cseq {
                self.pending = None;
                // RFC 3264 §5: our offer in the 2xx, their answer in the ACK. An ACK without
                // the answer, or with one we cannot use, ends the session with BYE.
                let neg = sdp_body
                    .as_deref()
                    .ok_or_else(|| "ACK carries no SDP answer".to_string())
                    .and_then(|b| sdp::parse(b).map_err(|e| e.to_string()))
                    .and_then(|a| {
                        sdp::negotiate_answer(&a, &self.settings.codecs).map_err(|e| e.to_string())
                    });
                match neg {
                    Ok(n) => self.apply_negotiated(now, n),
                    Err(e) => {
                        tracing::info!(call = self.id, error = %e, "unusable answer in ACK");
                        if self.state == State::Answered {
                            self.state = State::Confirmed;
                        }
                        self.send_bye(now, Outcome::MediaFailed);
                        return;
                    }
                }
            }
        }
        if self.state == State::Answered && cseq == self.info.cseq {
            self.state = State::Confirmed;
            self.start_flow(now);
        }
    }

    fn on_request(&mut self, now: Instant, tx: ServerTx) {
        let method = tx.method().clone();
        if self.state == State::Ended {
            self.respond(&tx, 481, None);
            return;
        }
        if method == Method::Invite && self.dial.is_some() && self.names_our_dialog(&tx.request) {
            // §14.2: the customer re-INVITEs while our INVITE to them is still in progress
            // (an early dialog): glare, 491, so they retry after our INVITE completes.
            self.respond(&tx, 491, None);
            return;
        }
        // §12.2.2: Call-ID, our tag (To) and the caller's tag (From) must all match, or a
        // third party who learnt the Call-ID could end or change the call. The dispatcher
        // routed on Call-ID and our tag; checked again here, where the dialog lives.
        if !self.dialog.matches_request(&tx.request) {
            self.respond(&tx, 481, None);
            return;
        }
        // §12.2.2: CSeq must grow inside the dialog.
        if let Some(cseq) = tx.cseq() {
            if !self.dialog.accept_remote_cseq(cseq) {
                self.respond(&tx, 500, None);
                return;
            }
        }
        match method {
            Method::Bye => {
                self.respond(&tx, 200, None);
                let outcome = if self.is_bridged() {
                    Outcome::CallerHangupBridged
                } else if self.queue.as_ref().is_some_and(|q| q.waiting) {
                    // Still `waiting`: `end` tells the ACD the caller left (and frees an
                    // agent ringing for this call).
                    if let Some(q) = self.queue.as_mut() {
                        q.record.abandoned_at_ms =
                            Some(now.saturating_duration_since(self.started).as_millis() as u64);
                        q.record.result = "abandoned".into();
                    }
                    Outcome::Abandoned
                } else {
                    Outcome::CallerHangup
                };
                self.end(now, outcome);
            }
            Method::Info => self.on_info(now, &tx),
            Method::Invite => self.on_reinvite(now, &tx),
            Method::Options => self.respond(&tx, 200, None),
            // PRACK/UPDATE/REFER etc. are not offered in Allow.
            _ => self.respond(&tx, 405, None),
        }
    }

    fn on_info(&mut self, now: Instant, tx: &ServerTx) {
        let ct = message::content_type(&tx.request).unwrap_or_default();
        if ct.is_empty() && tx.request.body.is_empty() {
            // An empty INFO is a keep-alive some phones send (RFC 6086 §4.2.1 legacy use).
            self.respond(tx, 200, None);
            return;
        }
        match parse_info_body(&ct, &tx.request.body) {
            Ok(digit) => {
                self.respond(tx, 200, None);
                self.on_digit(now, digit, DigitSource::SipInfo);
            }
            Err(e) => {
                // RFC 6086 §4.2.2: 415 for a body type we do not take; 400 for a DTMF body
                // we cannot read.
                let status = match e {
                    crate::media::dtmf::InfoError::UnsupportedContentType(_) => 415,
                    _ => 400,
                };
                tracing::info!(call = self.id, content_type = %ct, error = %e, "INFO not understood");
                self.respond(tx, status, None);
            }
        }
    }

    fn on_reinvite(&mut self, now: Instant, tx: &ServerTx) {
        if self.state != State::Confirmed || self.pending.is_some() {
            // §14.2: an INVITE while our offer is outstanding (a 200 with our offer waiting
            // for the ACK with the answer) is glare: 491. One that arrives before the
            // previous INVITE is complete (the initial 200 not yet ACKed) gets 500 with a
            // Retry-After between 0 and 10 s.
            if self.state == State::Answered {
                let mut response =
                    message::response(&tx.request, 500, Some(&self.dialog.local_tag), None, None);
                response
                    .headers
                    .push(crate::sip::rsip::headers::make_header(
                        "Retry-After",
                        (self.random % 11).to_string(),
                    ));
                self.sip_out.push_back(SipOut::Respond {
                    tx: tx.clone(),
                    response,
                });
            } else {
                self.respond(tx, 491, None);
            }
            return;
        }
        // Target refresh (§12.2.2): a re-INVITE may move the remote target.
        if let Some(contact) = contact_uri(&tx.request) {
            self.dialog.refresh_target(contact);
        }
        let sdp = message::sdp_body(&tx.request);
        if sdp.is_none() && !tx.request.body.iter().all(|b| b.is_ascii_whitespace()) {
            self.respond(tx, 415, None);
            return;
        }
        match sdp {
            Some(body) => {
                let parsed = sdp::parse(&body).map_err(|e| e.to_string()).and_then(|o| {
                    let n = sdp::negotiate(&o, &self.settings.codecs).map_err(|e| e.to_string())?;
                    Ok((o, n))
                });
                match parsed {
                    Ok((offer, neg)) => {
                        self.sdp_version += 1;
                        let answer = sdp::answer(
                            &neg,
                            &offer,
                            self.media_ip,
                            self.media_port,
                            self.sdp_session_id,
                            self.sdp_version,
                        );
                        self.apply_negotiated(now, neg);
                        self.offer = Some(offer);
                        self.respond(tx, 200, Some(sdp_body(answer)));
                    }
                    Err(e) => {
                        // §14.2: a rejected re-offer leaves the session as it was.
                        tracing::info!(call = self.id, error = %e, "re-INVITE offer refused");
                        self.respond(tx, 488, None);
                    }
                }
            }
            None => {
                // Re-INVITE without SDP: we offer again, the answer comes in the ACK.
                self.sdp_version += 1;
                let offer = self.our_offer();
                self.pending = Some(PendingOffer::OurOffer {
                    cseq: tx.cseq().unwrap_or(0),
                });
                self.respond(tx, 200, Some(sdp_body(offer)));
            }
        }
    }

    fn answer(&mut self, now: Instant) {
        let body = match (&self.offer, &self.negotiated) {
            (Some(offer), Some(neg)) => {
                let answer = sdp::answer(
                    neg,
                    offer,
                    self.media_ip,
                    self.media_port,
                    self.sdp_session_id,
                    self.sdp_version,
                );
                let neg = neg.clone();
                self.apply_negotiated(now, neg);
                answer
            }
            _ => {
                // Late offer (§13.2.1): INVITE without SDP; we offer in the 200.
                self.pending = Some(PendingOffer::OurOffer {
                    cseq: self.info.cseq,
                });
                self.our_offer()
            }
        };
        self.final_status = 200;
        self.answered = Some(now);
        self.state = State::Answered;
        self.respond_invite(200, Some(sdp_body(body)));
    }

    fn our_offer(&self) -> String {
        sdp::offer(
            self.media_ip,
            self.media_port,
            self.sdp_session_id,
            self.sdp_version,
            &self.settings.codecs,
            self.settings.telephone_event_pt,
        )
    }

    fn apply_negotiated(&mut self, now: Instant, neg: Negotiated) {
        match self.media.as_mut() {
            Some(media) => media.update(now, &neg),
            None => {
                let r = self.random;
                self.media = Some(MediaSession::new(
                    now,
                    MediaConfig {
                        codec: neg.codec,
                        telephone_event: neg.telephone_event,
                        remote: neg.remote,
                        rtp_timeout: self.settings.rtp_timeout,
                        ssrc: (r >> 32) as u32,
                        initial_sequence: (r >> 16) as u16,
                        initial_timestamp: r as u32,
                        symmetric_rtp: self.settings.symmetric_rtp,
                        inband_dtmf: self.settings.inband_dtmf,
                        policy: self.media_policy(self.caller_signalling_ip()),
                    },
                ));
                // The first offer may already be on hold (sendonly, inactive, c=0.0.0.0):
                // `update` applies the negotiated direction, which `new` does not know.
                if let Some(media) = self.media.as_mut() {
                    media.update(now, &neg);
                }
            }
        }
        self.negotiated = Some(neg);
    }

    fn start_flow(&mut self, now: Instant) {
        if let (Some(p), Some(m)) = (self.announce, self.media.as_mut()) {
            if let Some(prompt) = self.catalog.prompts.get(p) {
                self.prompts.push(prompt.name().to_string());
            }
            m.play(&[p]);
            return;
        }
        let Some(flow) = self.flow else { return };
        // Wall time for `hours` nodes, derived from when the runtime stamped the INVITE plus
        // the (fake-clock-friendly) time since, so the core never reads the clock.
        let wall = std::time::UNIX_EPOCH
            + Duration::from_millis(self.started_unix_ms)
            + now.saturating_duration_since(self.started);
        let run = Run::new_at(
            self.catalog.flows.clone(),
            flow,
            CallInfo {
                caller: self.info.caller.clone(),
                dialled: self.info.dialled.clone(),
            },
            now,
            wall,
        );
        self.run = Some(run);
        tracing::debug!(call = self.id, flow = %self.catalog.flows.flow_name(flow), "flow started");
    }

    fn on_digit(&mut self, now: Instant, digit: Digit, source: DigitSource) {
        // Keys may be PINs or customer numbers, typed into a `collect` or typed ahead of it:
        // records and logs keep that a key came and how, and which key only for menu choices.
        let masked = !self.run.as_ref().is_some_and(|r| r.is_at_menu());
        if self.digits.len() < MAX_RECORDED_DIGITS {
            let at = self
                .answered
                .map_or(Duration::ZERO, |a| now.saturating_duration_since(a));
            let mut rec = DigitRecord::new(digit, source, at);
            if masked {
                rec.digit = 'x';
            }
            self.digits.push(rec);
        }
        if masked {
            tracing::debug!(call = self.id, %source, "digit (collected, masked)");
        } else {
            tracing::debug!(call = self.id, %digit, %source, "digit");
        }
        if let Some(run) = self.run.as_mut() {
            run.handle_digit(now, digit);
        }
    }

    /// Moves events between media and flow until both are quiet.
    fn drive(&mut self, now: Instant) {
        // Bounded: every round consumes queued events; the bound guards against a flow that
        // would ping-pong forever (a broken invariant, logged rather than spun on).
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(ev) = self.media.as_mut().and_then(|m| m.poll_event()) {
                progressed = true;
                match ev {
                    MediaEvent::Digit(d, src) => self.on_digit(now, d, src),
                    MediaEvent::PlaybackFinished => {
                        if let Some(run) = self.run.as_mut() {
                            run.handle_playback_finished(now);
                        } else if self.announce.is_some() {
                            self.send_bye(now, Outcome::EngineHangup);
                            return;
                        } else {
                            // A callback: the greeting is over, music until the agent.
                            self.callback_music();
                        }
                    }
                    MediaEvent::RtpTimeout => {
                        if self.state == State::Confirmed {
                            tracing::info!(call = self.id, "no RTP from caller");
                            self.send_bye(now, Outcome::RtpTimeout);
                            return;
                        }
                    }
                }
            }
            while let Some(ev) = self
                .out
                .as_mut()
                .and_then(|o| o.media.as_mut())
                .and_then(|m| m.poll_event())
            {
                progressed = true;
                match ev {
                    MediaEvent::PlaybackFinished => {
                        if self
                            .out
                            .as_ref()
                            .is_some_and(|o| o.state == OutState::Whisper)
                        {
                            self.start_bridge(now);
                        }
                    }
                    MediaEvent::RtpTimeout => {
                        tracing::info!(call = self.id, "no RTP from the outbound leg");
                        self.send_bye(now, Outcome::AgentHangup);
                        return;
                    }
                    // Keys from the agent's phone are passed through in the bridge.
                    MediaEvent::Digit(..) => {}
                }
            }
            while let Some(action) = self.run.as_mut().and_then(|r| r.poll_action()) {
                progressed = true;
                match action {
                    Action::Play { prompts, .. } => {
                        for id in &prompts {
                            if self.prompts.len() < MAX_RECORDED_PROMPTS {
                                if let Some(p) = self.catalog.prompts.get(*id) {
                                    self.prompts.push(p.name().to_string());
                                }
                            }
                        }
                        if let Some(m) = self.media.as_mut() {
                            m.play(&prompts);
                        }
                    }
                    Action::StopPlayback => {
                        if let Some(m) = self.media.as_mut() {
                            m.stop_playback();
                        }
                    }
                    Action::Hangup => {
                        self.send_bye(now, Outcome::EngineHangup);
                        return;
                    }
                    Action::Directory { id, mut request } => {
                        // PIN checks are throttled per source too: the flow cannot know it.
                        if let DirectoryRequest::VerifyPin { origin, .. } = &mut request {
                            origin.source =
                                self.invite.as_ref().and_then(|i| via_source_ip(&i.request));
                        }
                        tracing::debug!(call = self.id, id, ?request, "directory request");
                        self.directory_out.push_back((id, request));
                    }
                    Action::Transfer { target } => {
                        // A blind transfer done as a B2BUA: we INVITE the target and bridge,
                        // so the caller's phone needs no REFER support (RFC 3515).
                        tracing::info!(call = self.id, %target, "transfer");
                        if self.out.is_some() || self.pending_out.is_some() {
                            self.transfer_failed(now);
                        } else {
                            self.pending_out = Some(Purpose::Transfer { target });
                        }
                    }
                    Action::Enqueue {
                        queue,
                        priority,
                        resume,
                    } => {
                        let enqueued_at_ms =
                            now.saturating_duration_since(self.started).as_millis() as u64;
                        let q = self.queue.get_or_insert_with(QueueState::default);
                        if q.name != queue || q.enqueued.is_none() {
                            q.name = queue.clone();
                            q.enqueued = Some(now);
                            q.record.queue = queue.clone();
                            q.record.enqueued_at_ms = enqueued_at_ms;
                        }
                        q.waiting = false;
                        self.acd_out.push_back(AcdOut::Enqueue {
                            call: self.id,
                            queue,
                            priority,
                            caller: self.info.caller.clone(),
                            resume,
                        });
                    }
                    Action::LeaveQueue { keep_place } => {
                        self.cancel_outbound(now, false);
                        if let Some(q) = self.queue.as_mut() {
                            q.waiting = false;
                        }
                        self.queue_result("left");
                        self.acd_out.push_back(AcdOut::Leave {
                            call: self.id,
                            keep_place,
                        });
                    }
                    Action::RequestCallback { queue, number } => {
                        self.acd_out.push_back(AcdOut::Callback {
                            call: self.id,
                            queue,
                            number,
                        });
                    }
                }
            }
            if !progressed {
                return;
            }
        }
        tracing::error!(
            call = self.id,
            "flow and media kept exchanging events; ending call"
        );
        self.send_bye(now, Outcome::EngineHangup);
    }

    fn send_bye(&mut self, now: Instant, outcome: Outcome) {
        if self.state == State::Ended {
            return;
        }
        if let Some(request) = self.dialog.request(Method::Bye) {
            let next_hop = self.dialog.next_hop();
            self.sip_out.push_back(SipOut::Request {
                leg: LegId::Caller,
                request,
                next_hop,
                destination: None,
            });
        } else {
            tracing::warn!(call = self.id, target = %self.dialog_target(), "cannot build BYE: bad remote target");
        }
        self.end(now, outcome);
    }

    fn dialog_target(&self) -> &str {
        &self.info.remote_target
    }

    fn reject(&mut self, now: Instant, status: u16) {
        self.final_status = status;
        self.respond_invite(status, None);
        self.end(now, Outcome::Rejected);
    }

    fn respond_invite(&mut self, status: u16, body: Option<Body>) {
        // A callback's caller leg is our own INVITE: nothing to answer.
        let Some(invite) = self.invite.clone() else {
            return;
        };
        let contact = (101..300)
            .contains(&status)
            .then_some(self.contact.as_str());
        let response = message::response(
            &invite.request,
            status,
            Some(&self.dialog.local_tag),
            contact,
            body,
        );
        self.sip_out.push_back(SipOut::Respond {
            tx: invite,
            response,
        });
    }

    /// Whether a request carries this call's Call-ID and our tag in `To` (its From tag
    /// unchecked: an early dialog of ours may not have the peer's tag yet).
    fn names_our_dialog(&self, req: &Request) -> bool {
        message::call_id(req).as_deref() == Some(self.dialog.call_id.as_str())
            && message::to_tag(req).as_deref() == Some(self.dialog.local_tag.as_str())
    }

    fn respond(&mut self, tx: &ServerTx, status: u16, body: Option<Body>) {
        let contact = (tx.request.method == Method::Invite && (200..300).contains(&status))
            .then_some(self.contact.as_str());
        let response = message::response(
            &tx.request,
            status,
            Some(&self.dialog.local_tag),
            contact,
            body,
        );
        self.sip_out.push_back(SipOut::Respond {
            tx: tx.clone(),
            response,
        });
    }

    fn end(&mut self, now: Instant, outcome: Outcome) {
        if self.state == State::Ended {
            return;
        }
        self.state = State::Ended;
        self.outcome = Some(outcome);
        self.pending_out = None;
        if let Some(offer) = self.pending_offer.take() {
            self.acd_out.push_back(AcdOut::OfferResult {
                call: self.id,
                agent: offer.agent,
                result: OfferResult::CallerGone,
            });
        }
        self.end_outbound(now);
        if self.queue.as_ref().is_some_and(|q| q.waiting) {
            if let Some(q) = self.queue.as_mut() {
                q.waiting = false;
                if q.record.result.is_empty() {
                    q.record.result = "abandoned".into();
                    q.record.abandoned_at_ms =
                        Some(now.saturating_duration_since(self.started).as_millis() as u64);
                }
            }
            self.acd_out.push_back(AcdOut::Leave {
                call: self.id,
                keep_place: false,
            });
        }
        let queue_record = self.queue.take().map(|q| {
            let mut r = q.record;
            if let Some(t) = q.enqueued {
                let until = q.answered.unwrap_or(now);
                r.wait_ms = until.saturating_duration_since(t).as_millis() as u64;
            }
            r
        });
        let stats = self.media.as_ref().map(|m| m.stats());
        let record = CallRecord {
            id: self.id,
            call_id: self.info.call_id.clone(),
            caller: self.info.caller.clone(),
            dialled: self.info.dialled.clone(),
            transport: self.transport.to_string(),
            flow: self
                .flow
                .map(|f| self.catalog.flows.flow_name(f).to_string())
                .unwrap_or_default(),
            flow_version: self.catalog.version,
            outcome,
            status: self.final_status,
            started_unix_ms: self.started_unix_ms,
            duration_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            talk_ms: self
                .answered
                .map_or(0, |a| now.saturating_duration_since(a).as_millis() as u64),
            path: self
                .run
                .as_ref()
                .map(|r| r.path().to_vec())
                .unwrap_or_default(),
            digits: std::mem::take(&mut self.digits),
            prompts: std::mem::take(&mut self.prompts),
            rtp_packets_sent: stats.as_ref().map_or(0, |s| s.packets_sent),
            rtp_packets_received: stats.as_ref().map_or(0, |s| s.packets_received),
            rtp_foreign_dropped: stats.as_ref().map_or(0, |s| s.foreign_dropped),
            queue: queue_record,
            surveys: self.survey_records(),
        };
        self.record = Some(record);
        // Free the heavy parts now; the slot may linger until the runtime reaps it.
        self.media = None;
        self.run = None;
    }
}

impl Call {
    /// The flow's survey results, timed from the INVITE like the rest of the record.
    fn survey_records(&self) -> Vec<SurveyRecord> {
        let since = |t: Instant| t.saturating_duration_since(self.started).as_millis() as u64;
        self.run
            .as_ref()
            .map(|r| r.surveys())
            .unwrap_or_default()
            .iter()
            .map(|s| SurveyRecord {
                survey: s.name.clone(),
                scale: s.scale,
                score: s.score,
                offered_at_ms: since(s.offered_at),
                answered_at_ms: s.answered_at.map(since),
            })
            .collect()
    }
}

fn sdp_body(text: String) -> Body {
    Body {
        content_type: "application/sdp",
        bytes: text.into_bytes(),
    }
}

impl Call {
    /// Who may own a leg's media: the settings, our own addresses, and the IP the leg's
    /// signalling comes from.
    pub(super) fn media_policy(&self, signalling_ip: Option<IpAddr>) -> MediaPolicy {
        let mut own_ips = vec![self.sip_local.ip(), self.media_ip];
        own_ips.dedup();
        MediaPolicy {
            signalling_ip,
            trust_sdp_address: self.settings.trust_sdp_address,
            latch_window: self.settings.latch_window,
            own_ports: self.settings.own_ports.clone(),
            own_ips,
        }
    }

    /// The caller leg's signalling IP: where the INVITE came from (top Via `received`), or
    /// for a callback the host we dialled.
    fn caller_signalling_ip(&self) -> Option<IpAddr> {
        match self.invite.as_ref() {
            Some(i) => via_source_ip(&i.request),
            None => crate::sip::rsip::Uri::try_from(self.info.remote_target.as_str())
                .ok()
                .and_then(|u| uri_ip(&u)),
        }
    }
}

/// The host of a SIP URI when it is an IP literal.
pub(super) fn uri_ip(uri: &crate::sip::rsip::Uri) -> Option<IpAddr> {
    match uri.host_with_port.host {
        crate::sip::rsip::Host::IpAddr(ip) => Some(ip),
        _ => None,
    }
}

/// The address the INVITE came from: the top Via's `received` (which the transport
/// adds when the datagram's source differs from `sent-by`, RFC 3261 §18.2.1), else
/// `sent-by` when it is an address.
fn via_source_ip(req: &Request) -> Option<IpAddr> {
    use crate::sip::rsip::prelude::{HeadersExt, ToTypedHeader};
    let via = req.top_via_header().ok()?.typed().ok()?;
    match via.received() {
        Some(Ok(ip)) => Some(ip),
        _ => match via.uri.host_with_port.host {
            crate::sip::rsip::Host::IpAddr(ip) => Some(ip),
            _ => None,
        },
    }
}

fn contact_uri(req: &Request) -> Option<String> {
    use crate::sip::rsip::prelude::HeadersExt;
    let c = req.contact_header().ok()?;
    message::raw_uri(c.value()).map(str::to_string)
}
#[cfg(test)]
mod tests;
