//! The outbound half of [`Call`]: placing the agent (or transfer) leg, reading its
//! responses, CANCEL on ring timeout, the whisper, the bridge, and tearing it down.
//!
//! A B2BUA (RFC 7092 §3.1): the caller's dialog and the agent's dialog stay separate; only
//! media is relayed between them, and a BYE on one side becomes a BYE on the other.

use super::leg::{Cancelled, OutLeg, OutState, Purpose, classify};
use super::{AcdOut, Call, LegId, Offer, Outcome, SipOut, State, TxId, sdp_body};
use crate::acd::OfferResult;
use crate::flow::QueueEvent;
use crate::media::sdp;
use crate::media::session::{MediaConfig, MediaSession};
use crate::sip::message::{self, OutgoingInvite};
use crate::sip::{Method, Response, ServerTx};
use std::time::{Duration, Instant};

/// Headers that carry the flow's knowledge of the caller to the agent's screen.
const CUSTOMER_HEADERS: &[(&str, &str)] = &[
    ("X-Phonetree-Customer", "customer.id"),
    ("X-Phonetree-Customer-Name", "customer.name"),
    ("X-Phonetree-Tier", "customer.tier"),
];

impl Call {
    pub(super) fn note_ewt(&mut self, ewt: Option<Duration>) {
        if let Some(q) = self.queue.as_mut() {
            if q.record.first_ewt_ms.is_none() {
                q.record.first_ewt_ms = ewt.map(|d| d.as_millis() as u64);
            }
        }
    }

    pub(super) fn queue_result(&mut self, result: &str) {
        if let Some(q) = self.queue.as_mut() {
            q.waiting = false;
            q.record.result = result.to_string();
        }
    }

    pub(super) fn on_offer(&mut self, now: Instant, offer: Offer) {
        let waiting = self.queue.as_ref().is_some_and(|q| q.waiting);
        let busy = self.out.is_some() || self.pending_out.is_some();
        if !waiting || busy || self.state != State::Confirmed {
            // The ACD and the call crossed (the caller left, or a leg is still ringing):
            // the offer fails at once so the agent is not left reserved.
            tracing::debug!(call = self.id, agent = %offer.agent, waiting, busy, "offer refused by call");
            self.acd_out.push_back(AcdOut::OfferResult {
                call: self.id,
                agent: offer.agent,
                result: if waiting {
                    OfferResult::Failed
                } else {
                    OfferResult::CallerGone
                },
            });
            let _ = now;
            return;
        }
        self.pending_out = Some(Purpose::Agent {
            agent: offer.agent.clone(),
            queue: offer.queue.clone(),
        });
        self.pending_offer = Some(offer);
    }

    pub(super) fn start_outbound(
        &mut self,
        now: Instant,
        purpose: Purpose,
        offer: Option<Offer>,
        port: u16,
    ) {
        let (request_uri, destination, ring_timeout, mut headers) = match (&purpose, &offer) {
            (Purpose::Agent { queue, .. }, Some(o)) => (
                o.request_uri.clone(),
                Some(o.destination),
                o.ring_timeout,
                vec![
                    ("X-Phonetree-Queue", queue.clone()),
                    ("X-Phonetree-Wait", o.waited.as_secs().to_string()),
                ],
            ),
            (Purpose::Transfer { target }, _) => (
                transfer_uri(target),
                None,
                // A transfer target rings as long as a person would let it.
                Duration::from_secs(60),
                Vec::new(),
            ),
            (Purpose::Agent { .. }, None) => return,
        };
        if let Some(run) = self.run.as_ref() {
            for (name, var) in CUSTOMER_HEADERS {
                if let Some(v) = run.var(var).filter(|v| !v.is_empty()) {
                    headers.push((name, v.to_string()));
                }
            }
        }
        headers.push(("X-Phonetree-Caller", self.info.caller.clone()));
        let random = crate::sip::message::next_random();
        let call_id = format!("{:016x}@phonetree", crate::sip::message::next_random());
        let local_tag = message::new_tag();
        let host = fmt_host(self.sip_local);
        let caller_user = if is_user_token(&self.info.caller) {
            self.info.caller.as_str()
        } else {
            "anonymous"
        };
        let from = format!("<sip:{caller_user}@{host}>");
        let contact = format!("<sip:phonetree@{host}>");
        let to = format!("<{}>", strip_params(&request_uri));
        // Offer the caller's codec first, so the bridge needs no transcoding when the agent
        // can take it (RFC 3264 §5.1: the answerer should keep our order).
        let mut codecs = self.settings.codecs.clone();
        if let Some(c) = self.media.as_ref().map(|m| m.codec()) {
            codecs.retain(|x| *x != c);
            codecs.insert(0, c);
        }
        let session_id = random & 0xffff_ffff;
        let sdp = sdp::offer(
            self.media_ip,
            port,
            session_id,
            1,
            &codecs,
            self.settings.telephone_event_pt,
        );
        let cseq = ((random >> 40) & 0xffff) as u32 + 1;
        let Some(request) = message::invite(&OutgoingInvite {
            request_uri: &request_uri,
            from: &from,
            to: &to,
            call_id: &call_id,
            local_tag: &local_tag,
            cseq,
            contact: &contact,
            extra_headers: &headers,
            sdp,
        }) else {
            tracing::warn!(call = self.id, uri = %request_uri, "cannot build INVITE: bad Request-URI");
            self.outbound_failed(now, &purpose, OfferResult::Failed);
            return;
        };
        self.next_tx += 1;
        let tx = TxId(self.next_tx);
        if let Some(q) = self.queue.as_mut() {
            q.record.ring_attempts += 1;
        }
        tracing::info!(call = self.id, purpose = ?purpose, uri = %request_uri, "placing outbound leg");
        self.sip_out.push_back(SipOut::Invite {
            leg: LegId::Outbound,
            tx,
            request: request.clone(),
            destination,
        });
        self.out = Some(OutLeg {
            purpose,
            state: OutState::Calling,
            tx,
            invite: request,
            invite_cseq: cseq,
            call_id,
            local_tag,
            destination,
            dialog: None,
            media: None,
            port,
            started: now,
            ring_deadline: now + ring_timeout,
            answered: None,
            sdp_session_id: session_id,
            random,
        });
    }

    /// Tells the ACD (or the flow, for a transfer) that the outbound leg failed.
    pub(super) fn outbound_failed(&mut self, now: Instant, purpose: &Purpose, result: OfferResult) {
        match purpose {
            Purpose::Agent { agent, .. } => self.acd_out.push_back(AcdOut::OfferResult {
                call: self.id,
                agent: agent.clone(),
                result,
            }),
            Purpose::Transfer { .. } => self.transfer_failed(now),
        }
    }

    pub(super) fn transfer_failed(&mut self, now: Instant) {
        if let Some(run) = self.run.as_mut() {
            run.handle_queue_event(now, QueueEvent::TransferFailed);
        }
    }

    /// Gives up on a ringing outbound leg: CANCEL it (keeping it for a racing 2xx).
    /// `report`: tell the ACD / flow it was not answered (ring timeout); not when the ACD or
    /// the caller ended the offer themselves.
    pub(super) fn cancel_outbound(&mut self, now: Instant, report: bool) {
        let ringing = self
            .out
            .as_ref()
            .is_some_and(|o| matches!(o.state, OutState::Calling | OutState::Ringing));
        if !ringing {
            return;
        }
        let Some(out) = self.out.take() else { return };
        self.sip_out.push_back(SipOut::Cancel { tx: out.tx });
        self.cancelled.push((
            Cancelled {
                tx: out.tx,
                invite: out.invite,
                destination: out.destination,
                bye_sent: false,
            },
            now + super::CANCELLED_LEG_TTL,
        ));
        if report {
            self.outbound_failed(now, &out.purpose, OfferResult::NoAnswer);
        }
    }

    /// The caller's leg ended: end the outbound leg too (CANCEL or BYE).
    pub(super) fn end_outbound(&mut self, now: Instant) {
        let Some(state) = self.out.as_ref().map(|o| o.state) else {
            return;
        };
        match state {
            OutState::Calling | OutState::Ringing => {
                // The ACD hears of it through the caller's Leave; no offer result needed.
                self.cancel_outbound(now, false);
            }
            OutState::Whisper | OutState::Bridged => {
                let Some(mut out) = self.out.take() else {
                    return;
                };
                if let Some(q) = self.queue.as_mut() {
                    if let Some(a) = out.answered {
                        q.record.agent_talk_ms =
                            now.saturating_duration_since(a).as_millis() as u64;
                    }
                }
                if let Some(dialog) = out.dialog.as_mut() {
                    if let Some(request) = dialog.request(Method::Bye) {
                        self.sip_out.push_back(SipOut::Request {
                            leg: LegId::Outbound,
                            next_hop: dialog.next_hop(),
                            request,
                            destination: out.destination,
                        });
                    }
                }
                if matches!(out.purpose, Purpose::Agent { .. }) {
                    self.acd_out
                        .push_back(AcdOut::BridgeEnded { call: self.id });
                }
            }
        }
    }

    pub(super) fn start_bridge(&mut self, now: Instant) {
        let Some(out) = self.out.as_mut() else { return };
        out.state = OutState::Bridged;
        if let Some(m) = out.media.as_mut() {
            m.set_bridged(now, true);
        }
        if let Some(m) = self.media.as_mut() {
            m.set_bridged(now, true);
        }
        tracing::info!(call = self.id, "bridged");
        if let Some(run) = self.run.as_mut() {
            run.handle_queue_event(now, QueueEvent::Bridged);
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, tx: TxId, response: Response) {
        let status = response.status_code.code();
        if let Some(i) = self.cancelled.iter().position(|(c, _)| c.tx == tx) {
            if (200..300).contains(&status) && !self.cancelled[i].0.bye_sent {
                // §9.1/§15: the far end answered before our CANCEL reached it; the stack
                // ACKed the 2xx, and we end that dialog with BYE at once.
                let (c, _) = &mut self.cancelled[i];
                c.bye_sent = true;
                if let Some(mut d) = crate::sip::dialog::Dialog::uac(&c.invite, &response) {
                    if let Some(request) = d.request(Method::Bye) {
                        self.sip_out.push_back(SipOut::Request {
                            leg: LegId::Outbound,
                            next_hop: d.next_hop(),
                            request,
                            destination: c.destination,
                        });
                    }
                }
            }
            if status >= 200 {
                self.cancelled.remove(i);
            }
            return;
        }
        let Some(out) = self.out.as_mut().filter(|o| o.tx == tx) else {
            return;
        };
        match status {
            100..=199 => {
                if status != 100 && out.state == OutState::Calling {
                    out.state = OutState::Ringing;
                }
            }
            200..=299 => {
                if !matches!(out.state, OutState::Calling | OutState::Ringing) {
                    // A retransmitted 2xx: the stack ACKs it again.
                    return;
                }
                self.on_outbound_answered(now, response);
            }
            _ => {
                let Some(out) = self.out.take() else { return };
                tracing::info!(call = self.id, status, "outbound leg refused");
                self.outbound_failed(now, &out.purpose, classify(status));
            }
        }
    }

    fn on_outbound_answered(&mut self, now: Instant, response: Response) {
        let Some(out) = self.out.as_mut() else { return };
        let dialog = crate::sip::dialog::Dialog::uac(&out.invite, &response);
        let negotiated = sdp::parse(&response.body)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                sdp::negotiate_answer(&a, &self.settings.codecs).map_err(|e| e.to_string())
            });
        let (Some(mut dialog), Ok(neg)) = (dialog, negotiated) else {
            tracing::info!(call = self.id, "unusable 2xx from the outbound leg; BYE");
            // Without a dialog there is nobody to BYE: the stack's ACK ends it on their side
            // at worst by their session timer.
            let purpose = out.purpose.clone();
            let destination = out.destination;
            if let Some(mut d) = crate::sip::dialog::Dialog::uac(&out.invite, &response) {
                if let Some(request) = d.request(Method::Bye) {
                    self.sip_out.push_back(SipOut::Request {
                        leg: LegId::Outbound,
                        next_hop: d.next_hop(),
                        request,
                        destination,
                    });
                }
            }
            self.out = None;
            self.outbound_failed(now, &purpose, OfferResult::Failed);
            return;
        };
        let r = out.random;
        let signalling_ip = out
            .destination
            .map(|d| d.ip())
            .or_else(|| super::uri_ip(&out.invite.uri));
        let policy = self.media_policy(signalling_ip);
        let Some(out) = self.out.as_mut() else { return };
        let mut media = MediaSession::new(
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
                inband_dtmf: crate::media::session::InbandDtmf::Never,
                // The far end signals from where its INVITE went (the agent's binding).
                policy,
            },
        );
        media.update(now, &neg);
        let _ = dialog.accept_remote_cseq(0);
        out.dialog = Some(dialog);
        out.answered = Some(now);
        let purpose = out.purpose.clone();
        let whisper = match &purpose {
            Purpose::Agent { queue, .. } => {
                let lang = self.run.as_ref().map_or("en", |r| r.language());
                let prompts = &self.catalog.prompts;
                prompts
                    .lookup(&format!("{lang}/whisper-{queue}"))
                    .or_else(|| prompts.lookup(&format!("en/whisper-{queue}")))
            }
            Purpose::Transfer { .. } => None,
        };
        out.media = Some(media);
        if let Purpose::Agent { agent, .. } = &purpose {
            if let Some(q) = self.queue.as_mut() {
                q.waiting = false;
                q.answered = Some(now);
                q.record.answered_by = Some(agent.clone());
                q.record.result = "answered".into();
            }
            self.acd_out.push_back(AcdOut::OfferResult {
                call: self.id,
                agent: agent.clone(),
                result: OfferResult::Answered,
            });
        }
        tracing::info!(call = self.id, "outbound leg answered");
        match whisper {
            Some(prompt) => {
                // The agent hears who is calling while the caller still hears the music.
                if let Some(out) = self.out.as_mut() {
                    out.state = OutState::Whisper;
                    if let Some(m) = out.media.as_mut() {
                        m.play(&[prompt]);
                    }
                }
            }
            None => self.start_bridge(now),
        }
    }

    pub(super) fn on_client_tx_ended(&mut self, now: Instant, tx: TxId) {
        self.cancelled.retain(|(c, _)| c.tx != tx);
        let unanswered = self.out.as_ref().is_some_and(|o| {
            o.tx == tx && matches!(o.state, OutState::Calling | OutState::Ringing)
        });
        if unanswered {
            // Timer B fired or the transport failed: as good as 408 (RFC 3261 §8.1.3.1).
            if let Some(out) = self.out.take() {
                tracing::info!(call = self.id, "outbound leg unreachable");
                self.outbound_failed(now, &out.purpose, OfferResult::NoAnswer);
            }
        }
    }

    /// A request inside the outbound leg's dialog (the agent's BYE, hold re-INVITE, ...).
    pub(super) fn on_outbound_request(&mut self, now: Instant, tx: ServerTx) {
        let glare = tx.request.method == Method::Invite
            && self.out.as_ref().is_some_and(|o| {
                matches!(o.state, OutState::Calling | OutState::Ringing)
                    && message::call_id(&tx.request).as_deref() == Some(o.call_id.as_str())
                    && message::to_tag(&tx.request).as_deref() == Some(o.local_tag.as_str())
            });
        if glare {
            // §14.2: the far end re-INVITEs while our INVITE to it is still in progress
            // (an early dialog): 491, it retries once our INVITE has completed.
            let local_tag = self.out.as_ref().map(|o| o.local_tag.clone());
            let resp = message::response(&tx.request, 491, local_tag.as_deref(), None, None);
            self.sip_out
                .push_back(SipOut::Respond { tx, response: resp });
            return;
        }
        let matched = self
            .out
            .as_ref()
            .and_then(|o| o.dialog.as_ref())
            .is_some_and(|d| d.matches_request(&tx.request));
        if !matched {
            // §12.2.2: not this dialog (or it already ended).
            let resp = message::response(&tx.request, 481, None, None, None);
            self.sip_out
                .push_back(SipOut::Respond { tx, response: resp });
            return;
        }
        let local_tag = self
            .out
            .as_ref()
            .map(|o| o.local_tag.clone())
            .unwrap_or_default();
        let respond = |call: &mut Call, tx: &ServerTx, status: u16, body: Option<message::Body>| {
            let contact = (tx.request.method == Method::Invite && status == 200)
                .then(|| format!("<sip:phonetree@{}>", fmt_host(call.sip_local)));
            let response = message::response(
                &tx.request,
                status,
                Some(&local_tag),
                contact.as_deref(),
                body,
            );
            call.sip_out.push_back(SipOut::Respond {
                tx: tx.clone(),
                response,
            });
        };
        if let Some(cseq) = tx.cseq() {
            let in_order = self
                .out
                .as_mut()
                .and_then(|o| o.dialog.as_mut())
                .is_some_and(|d| d.accept_remote_cseq(cseq));
            if !in_order {
                respond(self, &tx, 500, None);
                return;
            }
        }
        match tx.request.method {
            Method::Bye => {
                respond(self, &tx, 200, None);
                // The agent (or transfer target) hung up: the caller's leg ends too.
                if let Some(q) = self.queue.as_mut() {
                    if let Some(a) = self.out.as_ref().and_then(|o| o.answered) {
                        q.record.agent_talk_ms =
                            now.saturating_duration_since(a).as_millis() as u64;
                    }
                }
                if let Some(out) = self.out.take() {
                    if matches!(out.purpose, Purpose::Agent { .. }) {
                        self.acd_out
                            .push_back(AcdOut::BridgeEnded { call: self.id });
                    }
                }
                self.send_bye(now, Outcome::AgentHangup);
            }
            Method::Invite => {
                // Hold / resume / new address from the agent's phone (RFC 3264 §8).
                let Some(body) = message::sdp_body(&tx.request) else {
                    respond(self, &tx, 488, None);
                    return;
                };
                let parsed = sdp::parse(&body).map_err(|e| e.to_string()).and_then(|o| {
                    let n = sdp::negotiate(&o, &self.settings.codecs).map_err(|e| e.to_string())?;
                    Ok((o, n))
                });
                let Ok((offer, neg)) = parsed else {
                    respond(self, &tx, 488, None);
                    return;
                };
                let Some(out) = self.out.as_mut() else { return };
                let answer = sdp::answer(
                    &neg,
                    &offer,
                    self.media_ip,
                    out.port,
                    out.sdp_session_id,
                    2 + u64::from(tx.cseq().unwrap_or(0)),
                );
                if let Some(m) = out.media.as_mut() {
                    m.update(now, &neg);
                }
                respond(self, &tx, 200, Some(sdp_body(answer)));
            }
            Method::Info | Method::Options => respond(self, &tx, 200, None),
            _ => respond(self, &tx, 405, None),
        }
    }
}

/// A transfer target as a Request-URI: `tel:` numbers are sent as `sip:` users of the
/// target host is not known here, so a `tel:` URI is kept (a trunk proxy resolves it).
fn transfer_uri(target: &str) -> String {
    target.trim().to_string()
}

fn strip_params(uri: &str) -> &str {
    let uri = uri.trim();
    // Keep the user@host:port part; URI parameters do not belong in To's display.
    match uri.find(';') {
        Some(i) => &uri[..i],
        None => uri,
    }
}

pub(super) fn fmt_host(addr: std::net::SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{}", addr.port()),
        std::net::IpAddr::V4(v4) => format!("{v4}:{}", addr.port()),
    }
}

fn is_user_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()+".contains(&b))
}
