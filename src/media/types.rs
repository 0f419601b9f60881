//! Small value types shared by media, flow and call. Kept in one file so the
//! pure cores (dtmf, player, flow interpreter) agree without depending on each other.

use std::fmt;

/// One DTMF key (RFC 4733 §3.2 events 0–15).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Digit {
    D0,
    D1,
    D2,
    D3,
    D4,
    D5,
    D6,
    D7,
    D8,
    D9,
    Star,
    Pound,
    A,
    B,
    C,
    D,
}

impl Digit {
    pub const ALL: [Digit; 16] = [
        Digit::D0,
        Digit::D1,
        Digit::D2,
        Digit::D3,
        Digit::D4,
        Digit::D5,
        Digit::D6,
        Digit::D7,
        Digit::D8,
        Digit::D9,
        Digit::Star,
        Digit::Pound,
        Digit::A,
        Digit::B,
        Digit::C,
        Digit::D,
    ];

    /// RFC 4733 §3.2 event code (0–9, `*`=10, `#`=11, A–D=12–15).
    pub fn from_event(code: u8) -> Option<Digit> {
        Digit::ALL.get(code as usize).copied()
    }

    pub fn event_code(self) -> u8 {
        self as u8
    }

    /// Accepts `0-9 * # A-D` (lower case a-d too).
    pub fn from_char(c: char) -> Option<Digit> {
        Some(match c {
            '0'..='9' => Digit::ALL[(c as u8 - b'0') as usize],
            '*' => Digit::Star,
            '#' => Digit::Pound,
            'A' | 'a' => Digit::A,
            'B' | 'b' => Digit::B,
            'C' | 'c' => Digit::C,
            'D' | 'd' => Digit::D,
            _ => return None,
        })
    }

    pub fn as_char(self) -> char {
        b"0123456789*#ABCD"[self as usize] as char
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// How a digit reached us; logged with every digit of a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DigitSource {
    /// RTP telephone-event (RFC 4733).
    Rfc4733,
    /// SIP INFO with `application/dtmf-relay` or `application/dtmf`.
    SipInfo,
    /// Tones in the audio, found by the Goertzel detector.
    Inband,
}

impl fmt::Display for DigitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::SipInfo => "info",
            DigitSource::Inband => "inband",
        })
    }
}

/// Index of a loaded prompt in a `PromptSet`. Only meaningful with the set that issued it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PromptId(pub u32);

/// The G.711 law negotiated for a call leg (RFC 3551 §4.5.14: PCMU = PT 0, PCMA = PT 8).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// Encoding name as in SDP `a=rtpmap` (RFC 3551 table 4).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// Samples per 20 ms packet at 8 kHz, which is also the RTP timestamp step.
pub const SAMPLES_PER_FRAME: usize = 160;
/// Packet time in milliseconds (we always offer and send ptime 20).
pub const PTIME_MS: u64 = 20;
