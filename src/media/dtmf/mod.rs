//! Owns: turning DTMF evidence into key presses: RFC 4733 telephone-events, SIP INFO bodies, in-band tones.
//! Takes in: telephone-event RTP payloads (marker, timestamp, `now`), INFO content type + body, decoded 8 kHz PCM.
//! Gives out: each key press once, as a `Digit`, as early as it is certain (for barge-in); `InfoError` for bad bodies.
//! Never: reads the clock, does I/O, allocates per packet or frame, or panics on any input (network bytes included).
//!
//! All three decoders are sans-IO state machines: the call task feeds them and drains them; time is
//! always passed in. Which source a digit came from is the caller's to record
//! (`crate::media::types::DigitSource`); when a call negotiated telephone-event, the caller should not
//! also run the in-band detector on the same leg, or a phone that sends both reports every key twice.
#![forbid(unsafe_code)]

mod goertzel;
mod info;
mod rfc4733;

pub use goertzel::InbandDetector;
pub use info::{InfoError, parse_info_body};
pub use rfc4733::TelephoneEventReceiver;
