//! The outbound leg of a call: the INVITE we send to an agent (or a transfer target), its
//! client transaction, the UAC dialog once answered (RFC 3261 §12.1.2) and its media.
//!
//! - **Owns:** one outbound dialog's state (calling, ringing, whisper, bridged, ended), its
//!   ring deadline, its `MediaSession`.
//! - **Takes:** responses to its INVITE, in-dialog requests from the far end, `now`.
//! - **Gives:** what the owning [`super::Call`] should do next (answered, failed with a
//!   cause, hung up), never sending anything itself.
//! - **Never:** reads the clock, touches a socket, or decides queue policy (the ACD does).

use crate::media::session::MediaSession;
use crate::sip::Request;
use crate::sip::dialog::Dialog;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Which leg of a call a message or packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegId {
    /// The caller's leg: the INVITE we answered.
    Caller,
    /// The leg we placed: to an agent, or a transfer target.
    Outbound,
}

/// A client transaction of this call, as the runtime knows it (the runtime keeps the
/// rsipstack transaction; the core only holds this id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxId(pub u32);

/// Why we placed the outbound leg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The ACD offered the caller to this agent from this queue.
    Agent { agent: String, queue: String },
    /// The flow's `transfer` node.
    Transfer { target: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    /// INVITE sent, no provisional answer yet.
    Calling,
    /// 180/183 received.
    Ringing,
    /// Answered; the agent hears the whisper before the caller is put through.
    Whisper,
    /// Caller and far end talk.
    Bridged,
}

/// An offer from the ACD: ring this agent for this call.
#[derive(Clone, Debug)]
pub struct Offer {
    pub agent: String,
    pub queue: String,
    pub ring_timeout: Duration,
    /// The agent's registered Contact URI (the Request-URI), verbatim.
    pub request_uri: String,
    /// Where to send the INVITE (the binding's source address when behind NAT).
    pub destination: SocketAddr,
    /// How long the caller has waited so far.
    pub waited: Duration,
}

pub struct OutLeg {
    pub purpose: Purpose,
    pub state: OutState,
    pub tx: TxId,
    /// The INVITE as we built it (no Via), for the UAC dialog and CANCEL.
    pub invite: Request,
    pub invite_cseq: u32,
    pub call_id: String,
    pub local_tag: String,
    pub destination: Option<SocketAddr>,
    pub dialog: Option<Dialog>,
    pub media: Option<MediaSession>,
    pub port: u16,
    pub started: Instant,
    pub ring_deadline: Instant,
    pub answered: Option<Instant>,
    pub sdp_session_id: u64,
    pub random: u64,
}

/// A leg we gave up on (CANCEL sent) that may still be answered: a 2xx racing our CANCEL
/// must be ACKed (the stack does that) and then ended with BYE (RFC 3261 §9.1, §15).
pub struct Cancelled {
    pub tx: TxId,
    pub invite: Request,
    pub destination: Option<SocketAddr>,
    /// A BYE was sent for a 2xx that raced the CANCEL.
    pub bye_sent: bool,
}

/// How an outbound INVITE's final response reads for the ACD and the flow.
pub fn classify(status: u16) -> crate::acd::OfferResult {
    use crate::acd::OfferResult;
    match status {
        200..=299 => OfferResult::Answered,
        // Busy Here, Busy Everywhere.
        486 | 600 => OfferResult::Busy,
        // Decline, Forbidden: the agent pressed "reject".
        403 | 603 => OfferResult::Rejected,
        // Request Timeout, Temporarily Unavailable, Request Terminated (our CANCEL).
        408 | 480 | 487 => OfferResult::NoAnswer,
        _ => OfferResult::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acd::OfferResult;

    #[test]
    fn final_responses_map_to_offer_results() {
        assert_eq!(classify(200), OfferResult::Answered);
        assert_eq!(classify(486), OfferResult::Busy);
        assert_eq!(classify(603), OfferResult::Rejected);
        assert_eq!(classify(408), OfferResult::NoAnswer);
        assert_eq!(classify(487), OfferResult::NoAnswer);
        assert_eq!(classify(500), OfferResult::Failed);
        assert_eq!(classify(404), OfferResult::Failed);
    }
}
