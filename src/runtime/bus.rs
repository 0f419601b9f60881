//! The messages the runtime's tasks and threads exchange, in one place so no task module
//! imports another: the dispatcher (SIP), the media shards (calls), the agents task (ACD and
//! registrar) each depend only on this file.

use crate::call::{AcdIn, AcdOut, LegId, SipIn, TxId};
use crate::catalog::Catalog;
use crate::directory::DirectoryResponse;
use crate::sip::dialog::NextHop;
use crate::sip::{Request, ServerTx};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What the rest of the runtime asks of a shard.
pub enum ShardCommand {
    NewCall(Box<NewCallRequest>),
    Sip {
        call: u64,
        input: SipIn,
    },
    /// The answer to a directory request a call made.
    Directory {
        call: u64,
        id: u64,
        response: DirectoryResponse,
    },
    /// Dial a callback's customer: a new call that starts with our INVITE.
    DialCallback(Box<CallbackRequest>),
    /// Something the ACD tells a call (position, offer, ...).
    Acd {
        call: u64,
        input: AcdIn,
    },
    /// End every call (BYE / 503) and stop the thread.
    Shutdown,
}

/// A new call, before the shard has given it an RTP port.
pub struct NewCallRequest {
    pub id: u64,
    pub invite: ServerTx,
    pub local_tag: String,
    pub contact: String,
    pub media_ip: IpAddr,
    pub transport: &'static str,
    pub catalog: Arc<Catalog>,
    pub started_unix_ms: u64,
    pub random: u64,
    pub sip_local: SocketAddr,
    /// An agent's feature code call: the prompt that says how it went (no flow).
    pub announce: Option<String>,
}

/// A callback to place, before the shard has given it an RTP port.
pub struct CallbackRequest {
    pub id: u64,
    pub queue: String,
    pub number: String,
    pub request_uri: String,
    pub caller_id: String,
    pub local_tag: String,
    pub contact: String,
    pub media_ip: IpAddr,
    pub catalog: Arc<Catalog>,
    pub started_unix_ms: u64,
    pub random: u64,
    pub sip_local: SocketAddr,
}

/// What shards ask of the dispatcher.
pub enum DispatchMsg {
    /// An in-dialog request (BYE) on one of the call's legs.
    SendRequest {
        call: u64,
        leg: LegId,
        request: Request,
        next_hop: NextHop,
        destination: Option<SocketAddr>,
    },
    /// A dialog-creating INVITE from a call (agent or transfer leg, or a callback's
    /// customer leg).
    SendInvite {
        call: u64,
        leg: LegId,
        shard: usize,
        tx: TxId,
        request: Request,
        destination: Option<SocketAddr>,
    },
    /// CANCEL a call's outbound INVITE.
    Cancel {
        call: u64,
        tx: TxId,
    },
    CallEnded {
        call: u64,
    },
}

/// What an agent can do from their phone by dialling a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureCode {
    Login,
    Logout,
    Pause,
    Unpause,
}

impl FeatureCode {
    /// `*45` log in, `*46` log out, `*47` pause, `*48` unpause (the digits are the same on
    /// every keypad; `%2A` is `*` escaped in a Request-URI, RFC 3261 §19.1.2).
    pub fn from_dialled(user: &str) -> Option<FeatureCode> {
        let digits = user
            .strip_prefix('*')
            .or_else(|| user.strip_prefix("%2A"))?;
        match digits {
            "45" => Some(FeatureCode::Login),
            "46" => Some(FeatureCode::Logout),
            "47" => Some(FeatureCode::Pause),
            "48" => Some(FeatureCode::Unpause),
            _ => None,
        }
    }
}

/// What the agents task (ACD + registrar) is told.
pub enum AgentsMsg {
    /// A call's request to the ACD; `shard` is where the call lives.
    FromCall { shard: usize, out: AcdOut },
    /// A call was reaped: whatever the ACD still holds for it is stale.
    CallGone { call: u64 },
    /// Reloaded queues, agents and accounts (a reload of `phonetree.yaml`): applied
    /// without logging agents out, dropping bindings or reordering waiting callers.
    Reconfigure {
        acd: crate::acd::AcdConfig,
        registrar: crate::sip::registrar::RegistrarConfig,
    },
    /// An INVITE to a feature code (`*45` log in, ...) from `username` at `source`: the
    /// agents task checks it comes from that agent's registered phone, acts, and passes the
    /// call on to its shard with the prompt that says how it went.
    FeatureCode {
        call: Box<NewCallRequest>,
        shard: usize,
        code: FeatureCode,
        username: String,
        source: Option<SocketAddr>,
    },
    /// A REGISTER transaction (RFC 3261 §10) from an agent's phone.
    Register {
        tx: rsipstack::transaction::transaction::Transaction,
        source: SocketAddr,
        reliable: bool,
    },
}
