//! A callback's call: the customer left a number in a queue, their turn came and an agent
//! is reserved for them; the engine dials the customer (our INVITE is this call's first
//! leg, so we are the UAC of it, RFC 3261 §12.1.2) and, once they answer, the call waits in
//! the queue like any caller (greeting, then music) until the ACD's offer rings the agent
//! and the bridge of `bridge.rs` connects them.
//!
//! The ACD knows the call by the callback's id; its place in the queue is the one the
//! caller had when they asked for the callback.

use super::leg::Cancelled;
use super::record::QueueRecord;
use super::{AcdOut, Call, CallSettings, LegId, Outcome, Parts, QueueState, SipOut, State, TxId};
use crate::catalog::Catalog;
use crate::media::sdp;
use crate::sip::dialog::Dialog;
use crate::sip::message::{self, InviteInfo, OutgoingInvite};
use crate::sip::{Request, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the customer's phone may ring before we CANCEL (about eight rings).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(40);

/// What the runtime gives to place a callback.
pub struct NewCallback {
    /// The callback's id from the ACD; also this call's id.
    pub id: u64,
    pub queue: String,
    /// The customer's number as the caller left it (`+` and digits).
    pub number: String,
    /// The queue's `callback.dial` with `{number}` filled in.
    pub request_uri: String,
    /// User part of our From.
    pub caller_id: String,
    pub local_tag: String,
    pub contact: String,
    pub media_ip: IpAddr,
    pub media_port: u16,
    pub catalog: Arc<Catalog>,
    pub started_unix_ms: u64,
    pub random: u64,
    pub sip_local: SocketAddr,
}

/// Our INVITE to the customer while it is unanswered.
#[derive(Debug)]
pub(super) struct Dial {
    pub tx: TxId,
    pub invite: Request,
    pub deadline: Instant,
}

/// `callback.dial` with the number in: `sip:{number}@trunk` → `sip:+15551234567@trunk`.
pub fn dial_uri(template: &str, number: &str) -> String {
    template.replace("{number}", number)
}

impl Call {
    /// A call that starts by dialling the customer of callback `new.id`.
    pub fn new_callback(now: Instant, new: NewCallback, settings: CallSettings) -> Call {
        let host = super::bridge::fmt_host(new.sip_local);
        let call_id = format!("{:016x}@phonetree", message::next_random());
        let from = format!("<sip:{}@{host}>", new.caller_id);
        let to = format!("<{}>", new.request_uri);
        let cseq = ((new.random >> 40) & 0xffff) as u32 + 1;
        let session_id = new.random & 0xffff_ffff;
        let offer = sdp::offer(
            new.media_ip,
            new.media_port,
            session_id,
            1,
            &settings.codecs,
            settings.telephone_event_pt,
        );
        let request = message::invite(&OutgoingInvite {
            request_uri: &new.request_uri,
            from: &from,
            to: &to,
            call_id: &call_id,
            local_tag: &new.local_tag,
            cseq,
            contact: &new.contact,
            extra_headers: &[("X-Phonetree-Callback", new.queue.clone())],
            sdp: offer,
        });
        // What the record and the logs say of this call: the customer's number is the
        // "caller", the dialled side is the callback of the queue.
        let info = InviteInfo {
            call_id: call_id.clone(),
            from: to.clone(),
            to: from.clone(),
            caller: new.number.clone(),
            dialled: format!("callback:{}", new.queue),
            remote_target: new.request_uri.clone(),
            route_set: Vec::new(),
            cseq,
            sdp: None,
        };
        let dialog = Dialog::uas(&info, new.local_tag.clone(), cseq);
        let mut call = Call::with_parts(
            now,
            settings,
            Parts {
                id: new.id,
                catalog: new.catalog,
                invite: None,
                info,
                dialog,
                contact: new.contact,
                media_ip: new.media_ip,
                media_port: new.media_port,
                transport: "udp",
                state: State::Dialing,
                random: new.random,
                flow: None,
                started_unix_ms: new.started_unix_ms,
                sip_local: new.sip_local,
            },
        );
        // TxId(1) is the INVITE to the customer; the agent leg's come after it.
        call.next_tx = 1;
        call.queue = Some(QueueState {
            name: new.queue.clone(),
            enqueued: None,
            waiting: false,
            answered: None,
            record: QueueRecord {
                queue: new.queue,
                callback: true,
                ..QueueRecord::default()
            },
        });
        let Some(request) = request else {
            tracing::warn!(call = call.id, uri = %new.request_uri, "callback: cannot build INVITE");
            call.on_dial_failed(now, 400);
            return call;
        };
        tracing::info!(call = call.id, uri = %new.request_uri, "dialling callback");
        let tx = TxId(1);
        call.sip_out.push_back(SipOut::Invite {
            leg: LegId::Caller,
            tx,
            request: request.clone(),
            destination: None,
        });
        call.dial = Some(Dial {
            tx,
            invite: request,
            deadline: now + DIAL_TIMEOUT,
        });
        call
    }

    pub(super) fn is_dial(&self, tx: TxId) -> bool {
        self.dial.as_ref().is_some_and(|d| d.tx == tx)
    }

    /// A response to our INVITE to the customer.
    pub(super) fn on_dial_response(&mut self, now: Instant, response: Response) {
        let status = response.status_code.code();
        if status < 200 {
            return;
        }
        let Some(dial) = self.dial.take() else { return };
        if status >= 300 {
            tracing::info!(call = self.id, status, "callback not answered");
            return self.on_dial_failed(now, status);
        }
        // 2xx: the stack ACKs it (§13.2.2.4); the dialog is ours as UAC.
        let negotiated = sdp::parse(&response.body)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                sdp::negotiate_answer(&a, &self.settings.codecs).map_err(|e| e.to_string())
            });
        let Some(dialog) = Dialog::uac(&dial.invite, &response) else {
            tracing::info!(call = self.id, "callback: unusable 2xx");
            return self.on_dial_failed(now, 502);
        };
        self.dialog = dialog;
        self.final_status = 200;
        self.answered = Some(now);
        self.state = State::Confirmed;
        let neg = match negotiated {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(call = self.id, error = %e, "callback: no usable media in the answer");
                self.acd_out.push_back(AcdOut::CallbackDialed {
                    callback: self.id,
                    reached: false,
                });
                self.send_bye(now, Outcome::MediaFailed);
                return;
            }
        };
        self.apply_negotiated(now, neg);
        let enqueued_at_ms = now.saturating_duration_since(self.started).as_millis() as u64;
        if let Some(q) = self.queue.as_mut() {
            q.enqueued = Some(now);
            q.waiting = true;
            q.record.enqueued_at_ms = enqueued_at_ms;
        }
        tracing::info!(call = self.id, "callback answered by the customer");
        let greeting = self.catalog.prompts.lookup("en/callback-greeting");
        match (greeting, self.media.as_mut()) {
            (Some(g), Some(m)) => {
                self.prompts.push("en/callback-greeting".into());
                m.play(&[g]);
            }
            _ => self.callback_music(),
        }
        self.acd_out.push_back(AcdOut::CallbackDialed {
            callback: self.id,
            reached: true,
        });
    }

    /// The customer could not be reached: the ACD retries later or gives up.
    pub(super) fn on_dial_failed(&mut self, now: Instant, status: u16) {
        self.dial = None;
        self.final_status = status;
        if let Some(q) = self.queue.as_mut() {
            q.record.result = "callback_unreached".into();
        }
        self.acd_out.push_back(AcdOut::CallbackDialed {
            callback: self.id,
            reached: false,
        });
        self.end(now, Outcome::CallbackUnreached);
    }

    /// Gives up dialling: CANCEL (§9.1), keeping the INVITE for a 2xx that races it.
    pub(super) fn cancel_dial(&mut self, now: Instant) {
        if let Some(d) = self.dial.take() {
            self.sip_out.push_back(SipOut::Cancel { tx: d.tx });
            self.cancelled.push((
                Cancelled {
                    tx: d.tx,
                    invite: d.invite,
                    destination: None,
                    bye_sent: false,
                },
                now + super::CANCELLED_LEG_TTL,
            ));
        }
    }

    /// The ring timeout of the customer's phone.
    pub(super) fn check_dial_timeout(&mut self, now: Instant) {
        if self.state == State::Dialing && self.dial.as_ref().is_some_and(|d| now >= d.deadline) {
            tracing::info!(call = self.id, "callback: no answer in time; CANCEL");
            self.cancel_dial(now);
            self.on_dial_failed(now, 408);
        }
    }

    pub(super) fn dial_deadline(&self) -> Option<Instant> {
        self.dial.as_ref().map(|d| d.deadline)
    }

    /// Hold music for a callback's customer (no flow plays it for them).
    pub(super) fn callback_music(&mut self) {
        if self.invite.is_some() || self.state != State::Confirmed || self.is_bridged() {
            return;
        }
        if let (Some(music), Some(m)) = (
            self.catalog.prompts.lookup("en/hold-music"),
            self.media.as_mut(),
        ) {
            m.play_looped(&[music]);
        }
    }
}
