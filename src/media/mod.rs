//! Media: RTP in and out for every call leg, G.711, prompts, DTMF, SDP offer/answer.
//!
//! - Owns: per-call media state ([`session::MediaSession`]: player, DTMF detectors, latch,
//!   hold, RTP timeout, the relay of a bridged call) and the shared, encoded-once
//!   [`prompt::PromptSet`].
//! - Takes: datagrams with their source address, `now`, SDP bodies, play/stop commands.
//! - Gives: RTP packets with their destination, digits (with their source), playback and
//!   timeout events, deadlines, SDP answers/offers, per-call counters.
//! - Never: reads the clock, touches sockets, spawns tasks, allocates per packet in steady
//!   state, copies prompt audio per call, or panics on network input. All of it is sans-IO:
//!   the runtime's media shard owns the sockets and sweeps every call each 20 ms.
//!
//! Sweep order per call: `handle_rtp` for each datagram received, `handle_timeout(now)`,
//! then `poll_transmit` until `None` (sending each packet), then `poll_event` until `None`.
//! In a bridged call each datagram accepted by one leg's `handle_rtp` is rewritten in place
//! by the other leg's `relay_in_place` and sent on the other leg's socket in the same sweep
//! (see [`relay`]).

pub mod types;

pub mod codec;
pub mod dtmf;
pub mod player;
pub mod prompt;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod session;

pub use types::*;
