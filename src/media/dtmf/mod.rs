//! Owns: DTMF decoding: RFC 4733 telephone-events, SIP INFO bodies, in-band tones (Goertzel).
//! Takes in: telephone-event payloads (marker, timestamp, `now`), INFO bodies, 8 kHz linear PCM.
//! Gives out: each key press once, as a `Digit`, as early as it is certain; `InfoError`s.
//! Never: reads the clock, does I/O, allocates per packet or frame, or panics on any input.
//!
//! All three are sans-IO: the call's media session feeds them and drains them, and passes time
//! in. Which source a digit came from is the caller's to record (`DigitSource`). When a leg has
//! negotiated telephone-event, do not also run the in-band detector on it: a phone that sends
//! both would have every key reported twice.
#![forbid(unsafe_code)]

mod goertzel;
mod info;
mod rfc4733;

pub use goertzel::InbandDetector;
pub use info::{InfoError, parse_info_body};
pub use rfc4733::TelephoneEventReceiver;
