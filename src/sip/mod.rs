//! SIP facade: everything phonetree knows about SIP messages, kept apart from the stack.
//!
//! - **Owns:** the rules for screening raw datagrams (RFC 3261 §8.2, §18.3), building our
//!   responses and in-dialog requests, and the UAS dialog model (§12).
//! - **Takes:** raw bytes and parsed `rsip` messages (from rsipstack, which owns transactions
//!   and transports; RFC 3261 §17 timers live there).
//! - **Gives:** `Screened` verdicts, ready-to-send `Response`s/`Request`s, and `Dialog` (UAS and UAC sides).
//! - **Never:** opens sockets, spawns tasks, reads the clock, or panics on network input.
//!   Only this module and `runtime` name rsipstack types, so swapping the stack stays local.

pub mod admission;
pub mod dialog;
pub mod digest;
pub mod message;
pub mod registrar;
pub mod screen;

pub use rsipstack::sip as rsip;
pub use rsipstack::sip::{Method, Request, Response, StatusCode};

/// Methods we implement as a UAS; sent in `Allow` (RFC 3261 §20.5).
pub const ALLOWED_METHODS: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO";

/// Option tags we support (RFC 3261 §20.37), sent in `Supported` on 2xx to INVITE and on
/// OPTIONS answers: none beyond the base specification, said explicitly (an empty
/// `Supported` is allowed by the grammar) so a peer does not guess and try `100rel`.
pub const SUPPORTED_OPTIONS: &str = "";

/// What we put in `User-Agent` / `Server`.
pub const PRODUCT: &str = concat!("phonetree/", env!("CARGO_PKG_VERSION"));

/// A server transaction phonetree can answer: the request, and the channel into the
/// rsipstack transaction that sends (and retransmits) our response.
#[derive(Clone)]
pub struct ServerTx {
    pub request: Request,
    sender: rsipstack::transaction::transaction::TransactionEventSender,
}

impl ServerTx {
    pub fn new(
        request: Request,
        sender: rsipstack::transaction::transaction::TransactionEventSender,
    ) -> ServerTx {
        ServerTx { request, sender }
    }

    /// A transaction whose responses land in the returned receiver (tests, simulation).
    pub fn detached(
        request: Request,
    ) -> (
        ServerTx,
        tokio::sync::mpsc::UnboundedReceiver<rsipstack::transaction::transaction::TransactionEvent>,
    ) {
        let (sender, rx) = tokio::sync::mpsc::unbounded_channel();
        (ServerTx { request, sender }, rx)
    }

    /// Hands the response to the transaction, which owns sending and retransmitting it.
    /// Returns false when the transaction is already gone (the peer gave up).
    pub fn send(&self, response: Response) -> bool {
        self.sender
            .send(rsipstack::transaction::transaction::TransactionEvent::Respond(response))
            .is_ok()
    }

    pub fn method(&self) -> &Method {
        &self.request.method
    }

    pub fn cseq(&self) -> Option<u32> {
        use rsip::prelude::HeadersExt;
        self.request.cseq_header().ok()?.seq().ok()
    }
}

impl std::fmt::Debug for ServerTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTx({})", self.request.method)
    }
}
