//! phonetree: an IVR and call-routing engine.
//!
//! A caller dials in over SIP; phonetree answers, negotiates G.711, plays WAV prompts over
//! RTP, collects DTMF (RFC 4733, SIP INFO, in-band tones) and runs the YAML flow that
//! matches the dialled number.
//!
//! # Layout
//!
//! Pure state machines inside, one async runtime outside. Every core takes time as an input
//! (`handle_*(now, ..)`), returns work to do (`poll_*()`), and never reads the clock, so whole
//! calls run on a fake clock in tests.
//!
//! - [`sip`]: screening raw datagrams, building messages, the UAS dialog (rsipstack behind it).
//! - [`media`]: RTP, G.711, prompts, the paced player, SDP offer/answer, DTMF detectors.
//! - [`flow`]: YAML flows → compiled `FlowSet` → the per-call interpreter `Run`.
//! - [`call`]: one call, joining dialog + media + flow.
//! - [`catalog`]: prompts and flows loaded and checked together, with a version.
//! - [`runtime`]: sockets, tasks, media shard threads, the clock, reload and shutdown.
//! - [`acd`]: queues and agents: who rings whom, as one sans-IO state machine.
//! - [`admin`]: the HTTP API.
//! - [`config`]: `phonetree.yaml` → checked `Config`.
//!
//! See `ARCHITECTURE.md` for the invariants.

pub mod acd;
pub mod admin;
pub mod call;
pub mod catalog;
pub mod config;
pub mod directory;
pub mod flow;
pub mod media;
pub mod runtime;
pub mod sip;
