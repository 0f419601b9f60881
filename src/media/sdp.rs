//! SDP (RFC 4566) for one G.711 audio stream: tolerant parsing, offer/answer (RFC 3264).
//!
//! - Owns: a small typed model of a session description ([`SessionDescription`]) and the
//!   rules for choosing codec, telephone-event payload type, remote address and direction.
//! - Takes: SDP bodies from SIP messages (untrusted bytes), our codec preferences and
//!   local address.
//! - Gives: the parsed model, a [`Negotiated`] result (or an [`SdpError`], which the SIP
//!   layer answers with 488 Not Acceptable Here), and answer/offer bodies as text.
//! - Never: panics on input, resolves host names, or rejects a body for lines it does not
//!   know (they are ignored; only a missing `v=` or a malformed `m=` line is an error).
//!
//! Parsing is lenient where phones are sloppy: `\r\n` or bare `\n`, trailing spaces,
//! unknown or out-of-order lines, non-UTF-8 bytes (replaced), unknown payload formats.
//! PCMU and PCMA are only recognised at their static payload types 0 and 8 (with or without
//! an `a=rtpmap`), so `Codec::payload_type()` is always the number on the wire.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

use crate::media::types::{Codec, PTIME_MS};

/// Media direction attribute (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attr(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// True if the side using this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True if the side using this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The direction the other side takes for a stream this side described with `self`
    /// (RFC 3264 §6.1: sendonly → recvonly, recvonly → sendonly, inactive → inactive).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The same direction without the sending half.
    pub fn without_send(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::RecvOnly => Direction::RecvOnly,
            Direction::SendOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed session description; only what an audio IVR needs is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin_username: String,
    /// `o=` sess-id, kept as text (numeric in RFC 4566, but phones differ and it can
    /// exceed 64 bits).
    pub origin_session_id: String,
    /// `o=` sess-version; an unchanged version in a re-offer means "no change".
    pub origin_session_version: String,
    pub session_name: String,
    /// Session-level `c=` address (`None` when absent or not an IP literal).
    pub connection: Option<IpAddr>,
    /// Session-level direction attribute, if one was given.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

/// One `m=` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    pub port: u16,
    /// `RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, ...
    pub protocol: String,
    /// Payload types that are numbers 0–127, in offer order.
    pub formats: Vec<u8>,
    /// The `m=` line's format list as written (echoed when rejecting the stream).
    pub raw_formats: String,
    /// Media-level `c=` address.
    pub connection: Option<IpAddr>,
    /// `a=rtpmap:<pt> <name>/<rate>[/<channels>]` as (pt, name, rate).
    pub rtpmaps: Vec<(u8, String, u32)>,
    /// `a=fmtp:<pt> <parameters>`.
    pub fmtp: Vec<(u8, String)>,
    /// Effective direction: media-level attribute, else session-level, else sendrecv.
    pub direction: Direction,
    pub ptime: Option<u32>,
}

impl MediaDescription {
    /// The `a=rtpmap` entry for `pt`, as (name, rate).
    pub fn rtpmap(&self, pt: u8) -> Option<(&str, u32)> {
        self.rtpmaps
            .iter()
            .find(|(p, ..)| *p == pt)
            .map(|(_, n, r)| (n.as_str(), *r))
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtp
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
    }

    /// `audio` over RTP/AVP or RTP/AVPF (case-insensitive).
    pub fn is_audio_rtp(&self) -> bool {
        self.kind.eq_ignore_ascii_case("audio")
            && (self.protocol.eq_ignore_ascii_case("RTP/AVP")
                || self.protocol.eq_ignore_ascii_case("RTP/AVPF"))
    }

    /// The G.711 law payload type `pt` stands for here, if any (static PT 0/8 only; an
    /// `a=rtpmap` that maps 0/8 to something else wins).
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
        let codec = Codec::from_payload_type(pt)?;
        match self.rtpmap(pt) {
            None => Some(codec),
            Some((name, rate)) if name.eq_ignore_ascii_case(codec.name()) && rate == 8000 => {
                Some(codec)
            }
            Some(_) => None,
        }
    }

    /// The payload type of `telephone-event/8000`, if offered.
    pub fn telephone_event(&self) -> Option<u8> {
        self.formats.iter().copied().find(|&pt| {
            self.rtpmap(pt)
                .is_some_and(|(n, r)| n.eq_ignore_ascii_case("telephone-event") && r == 8000)
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpError {
    /// The body does not start with `v=`.
    NotSdp,
    /// A line that decides the structure (`m=`) cannot be read.
    Malformed { line: usize, reason: &'static str },
    /// No `m=audio` line over RTP/AVP or RTP/AVPF.
    NoAudio,
    /// Audio offered, but none of the payload types is one we accept.
    NoCommonCodec { offered: String },
    /// The answer rejected our audio stream (port 0).
    AudioRejected,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpError::NotSdp => f.write_str("body is not SDP (no v= line first)"),
            SdpError::Malformed { line, reason } => write!(f, "SDP line {line}: {reason}"),
            SdpError::NoAudio => f.write_str("no RTP/AVP audio stream offered"),
            SdpError::NoCommonCodec { offered } => {
                write!(
                    f,
                    "no common codec (offered: {offered}; we accept PCMU, PCMA)"
                )
            }
            SdpError::AudioRejected => f.write_str("the audio stream was rejected (port 0)"),
        }
    }
}

impl std::error::Error for SdpError {}

/// What was agreed for our audio stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// `telephone-event/8000` payload type as the peer offered it (echoed in our answer).
    pub telephone_event: Option<u8>,
    /// Where to send RTP; `None` when the port is 0 or the address is 0.0.0.0 / `::`
    /// (RFC 2543 hold), or when `c=` is missing or not an IP literal.
    pub remote: Option<SocketAddr>,
    /// OUR direction (what we put in the answer).
    pub direction: Direction,
    /// Index of the chosen `m=` line in the offer (answers keep the line order).
    pub media_index: usize,
    /// The peer's `a=ptime`, if any (informational: we always send 20 ms).
    pub remote_ptime: Option<u32>,
}

impl Negotiated {
    /// True when we must not send RTP (hold, inactive, or no address).
    pub fn is_on_hold(&self) -> bool {
        !self.direction.sends() || self.remote.is_none()
    }
}

// ---------------------------------------------------------------- parsing

/// Parses an SDP body. Lenient: see the module docs.
pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
    let mut sd = SessionDescription::default();
    let mut seen_version = false;
    // Per-media direction attributes as written, resolved against the session level at the end.
    let mut media_dirs: Vec<Option<Direction>> = Vec::new();

    for (idx, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = idx + 1;
        let text = String::from_utf8_lossy(raw);
        let line = text.trim();
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            if !seen_version {
                return Err(SdpError::NotSdp);
            }
            continue;
        };
        let kind = kind.trim();
        let value = value.trim();
        if !seen_version {
            if kind != "v" {
                return Err(SdpError::NotSdp);
            }
            seen_version = true;
            continue;
        }
        match kind {
            "o" => {
                let mut t = value.split_whitespace();
                sd.origin_username = t.next().unwrap_or("").to_owned();
                sd.origin_session_id = t.next().unwrap_or("").to_owned();
                sd.origin_session_version = t.next().unwrap_or("").to_owned();
            }
            "s" => sd.session_name = value.to_owned(),
            "c" => {
                let addr = parse_connection(value);
                match sd.media.last_mut() {
                    Some(m) => {
                        if m.connection.is_none() {
                            m.connection = addr;
                        }
                    }
                    None => {
                        if sd.connection.is_none() {
                            sd.connection = addr;
                        }
                    }
                }
            }
            "m" => {
                sd.media.push(parse_media_line(value, line_no)?);
                media_dirs.push(None);
            }
            "a" => {
                let (name, arg) = match value.split_once(':') {
                    Some((n, a)) => (n.trim(), a.trim()),
                    None => (value, ""),
                };
                if let Some(d) = Direction::from_attr(name) {
                    match media_dirs.last_mut() {
                        Some(slot) => *slot = Some(d),
                        None => sd.direction = Some(d),
                    }
                    continue;
                }
                let Some(m) = sd.media.last_mut() else {
                    continue; // other session-level attributes are not needed
                };
                match name {
                    "rtpmap" => {
                        if let Some(map) = parse_rtpmap(arg) {
                            m.rtpmaps.push(map);
                        }
                    }
                    "fmtp" => {
                        let parsed = arg
                            .split_once(char::is_whitespace)
                            .and_then(|(pt, params)| Some((pt.parse::<u8>().ok()?, params)));
                        if let Some((pt, params)) = parsed {
                            m.fmtp.push((pt, params.trim().to_owned()));
                        }
                    }
                    "ptime" => {
                        // Some phones write "20.0".
                        let int = arg.split('.').next().unwrap_or("");
                        if let Ok(p) = int.parse::<u32>() {
                            m.ptime = Some(p);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_version {
        return Err(SdpError::NotSdp);
    }
    let session_dir = sd.direction.unwrap_or_default();
    for (m, d) in sd.media.iter_mut().zip(media_dirs) {
        m.direction = d.unwrap_or(session_dir);
    }
    Ok(sd)
}

/// `IN IP4 192.0.2.1[/ttl[/n]]` → the address, if it is an IP literal.
fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut t = value.split_whitespace();
    let _net = t.next()?;
    let _addrtype = t.next()?;
    let addr = t.next()?;
    let host = addr.split('/').next()?;
    // Tolerate `[::1]`.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse().ok()
}

fn parse_media_line(value: &str, line: usize) -> Result<MediaDescription, SdpError> {
    let mut t = value.split_whitespace();
    let kind = t.next().ok_or(SdpError::Malformed {
        line,
        reason: "m= line has no media type",
    })?;
    let port_field = t.next().ok_or(SdpError::Malformed {
        line,
        reason: "m= line has no port",
    })?;
    let port = port_field
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or(SdpError::Malformed {
            line,
            reason: "m= port is not a number 0-65535",
        })?;
    let protocol = t.next().ok_or(SdpError::Malformed {
        line,
        reason: "m= line has no protocol",
    })?;
    let tokens: Vec<&str> = t.collect();
    let formats = tokens
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|&pt| pt <= 127)
        .collect();
    Ok(MediaDescription {
        kind: kind.to_owned(),
        port,
        protocol: protocol.to_owned(),
        formats,
        raw_formats: tokens.join(" "),
        ..MediaDescription::default()
    })
}

/// `101 telephone-event/8000` or `0 PCMU/8000/1`.
fn parse_rtpmap(arg: &str) -> Option<(u8, String, u32)> {
    let (pt, enc) = arg.split_once(char::is_whitespace)?;
    let pt = pt.parse::<u8>().ok()?;
    let mut parts = enc.trim().split('/');
    let name = parts.next()?.trim();
    let rate = parts.next()?.trim().parse::<u32>().ok()?;
    if name.is_empty() {
        return None;
    }
    Some((pt, name.to_owned(), rate))
}

// ---------------------------------------------------------------- negotiation

/// Chooses our audio stream from an offer (RFC 3264 §6): the first `m=audio` over RTP/AVP
/// or RTP/AVPF that carries a codec in `prefs`, taking the *caller's* first such codec.
/// A stream with a non-zero port wins over a disabled one (port 0). `telephone-event/8000`
/// is taken at whatever payload type was offered.
pub fn negotiate(offer: &SessionDescription, prefs: &[Codec]) -> Result<Negotiated, SdpError> {
    choose(offer, prefs, Side::Offer)
}

/// Reads the peer's answer to our [`offer`] (late offer: the answer comes in the ACK).
pub fn negotiate_answer(
    answer: &SessionDescription,
    prefs: &[Codec],
) -> Result<Negotiated, SdpError> {
    choose(answer, prefs, Side::Answer)
}

#[derive(PartialEq)]
enum Side {
    Offer,
    Answer,
}

fn choose(sd: &SessionDescription, prefs: &[Codec], side: Side) -> Result<Negotiated, SdpError> {
    let mut any_audio = false;
    let mut offered = Vec::new();
    let mut disabled: Option<(usize, Codec)> = None;
    for (i, m) in sd.media.iter().enumerate() {
        if !m.is_audio_rtp() {
            continue;
        }
        any_audio = true;
        let codec = m
            .formats
            .iter()
            .filter_map(|&pt| m.codec_of(pt))
            .find(|c| prefs.contains(c));
        let Some(codec) = codec else {
            offered.extend(m.formats.iter().map(|&pt| match m.rtpmap(pt) {
                Some((name, rate)) => format!("{pt} {name}/{rate}"),
                None => pt.to_string(),
            }));
            continue;
        };
        if m.port == 0 {
            if side == Side::Answer {
                return Err(SdpError::AudioRejected);
            }
            disabled.get_or_insert((i, codec));
            continue;
        }
        return Ok(build(sd, i, codec));
    }
    if let Some((i, codec)) = disabled {
        return Ok(build(sd, i, codec));
    }
    if !any_audio {
        return Err(SdpError::NoAudio);
    }
    Err(SdpError::NoCommonCodec {
        offered: if offered.is_empty() {
            "nothing".into()
        } else {
            offered.join(", ")
        },
    })
}

fn build(sd: &SessionDescription, i: usize, codec: Codec) -> Negotiated {
    let m = &sd.media[i];
    let addr = m.connection.or(sd.connection);
    let remote = match addr {
        Some(ip) if m.port != 0 && !ip.is_unspecified() => Some(SocketAddr::new(ip, m.port)),
        _ => None,
    };
    let held_by_address = addr.is_some_and(|ip| ip.is_unspecified());
    let mut direction = m.direction.reverse();
    if m.port == 0 {
        direction = Direction::Inactive;
    } else if held_by_address {
        // RFC 2543 hold (c=0.0.0.0): the peer receives nothing, so we send nothing.
        direction = direction.without_send();
    }
    Negotiated {
        codec,
        telephone_event: m.telephone_event(),
        remote,
        direction,
        media_index: i,
        remote_ptime: m.ptime,
    }
}

// ---------------------------------------------------------------- writing

fn ip_type(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn header(out: &mut String, local_ip: IpAddr, session_id: u64, session_version: u64) {
    let t = ip_type(local_ip);
    let _ = write!(
        out,
        "v=0\r\no=phonetree {session_id} {session_version} IN {t} {local_ip}\r\n\
         s=phonetree\r\nc=IN {t} {local_ip}\r\nt=0 0\r\n"
    );
}

fn audio_attributes(out: &mut String, codecs: &[Codec], te: Option<u8>, dir: Direction) {
    for c in codecs {
        let _ = write!(out, "a=rtpmap:{} {}/8000\r\n", c.payload_type(), c.name());
    }
    if let Some(te) = te {
        let _ = write!(
            out,
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{PTIME_MS}\r\na={dir}\r\n");
}

/// Our answer (RFC 3264 §6): as many `m=` lines as offered, in order; every line but the
/// chosen audio stream is rejected with port 0; the chosen one carries the single agreed
/// codec, telephone-event at the offered payload type, `a=ptime:20` and our direction.
pub fn answer(
    neg: &Negotiated,
    offer: &SessionDescription,
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    session_version: u64,
) -> String {
    let mut out = String::with_capacity(320);
    header(&mut out, local_ip, session_id, session_version);
    for (i, m) in offer.media.iter().enumerate() {
        if i == neg.media_index && m.port != 0 {
            let pt = neg.codec.payload_type();
            let _ = write!(out, "m=audio {local_port} {} {pt}", m.protocol);
            if let Some(te) = neg.telephone_event {
                let _ = write!(out, " {te}");
            }
            out.push_str("\r\n");
            audio_attributes(&mut out, &[neg.codec], neg.telephone_event, neg.direction);
        } else {
            // RFC 3264 §6: a rejected stream keeps its media type and formats, port 0.
            let formats = if m.raw_formats.is_empty() {
                "0"
            } else {
                &m.raw_formats
            };
            let _ = write!(out, "m={} 0 {} {formats}\r\n", m.kind, m.protocol);
        }
    }
    out
}

/// Our offer, for an INVITE that came without SDP (we offer in the 200 OK). `codecs` in
/// preference order (empty means PCMU, PCMA); `telephone_event_pt` must be dynamic
/// (96–127), otherwise telephone-event is left out.
pub fn offer(
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    session_version: u64,
    codecs: &[Codec],
    telephone_event_pt: u8,
) -> String {
    let default = [Codec::Pcmu, Codec::Pcma];
    let mut list: Vec<Codec> = Vec::with_capacity(2);
    for &c in if codecs.is_empty() {
        &default[..]
    } else {
        codecs
    } {
        if !list.contains(&c) {
            list.push(c);
        }
    }
    let te = (96..=127)
        .contains(&telephone_event_pt)
        .then_some(telephone_event_pt);
    let mut out = String::with_capacity(320);
    header(&mut out, local_ip, session_id, session_version);
    let _ = write!(out, "m=audio {local_port} RTP/AVP");
    for c in &list {
        let _ = write!(out, " {}", c.payload_type());
    }
    if let Some(te) = te {
        let _ = write!(out, " {te}");
    }
    out.push_str("\r\n");
    audio_attributes(&mut out, &list, te, Direction::SendRecv);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const BOTH: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];

    const LINPHONE: &str = "v=0\r\n\
o=alice 3120 2217 IN IP4 192.168.1.20\r\n\
s=Talk\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100\r\n\
a=rtpmap:96 opus/48000/2\r\n\
a=fmtp:96 useinbandfec=1\r\n\
a=rtpmap:97 speex/16000\r\n\
a=fmtp:97 vbr=on\r\n\
a=rtpmap:98 speex/8000\r\n\
a=fmtp:98 vbr=on\r\n\
a=fmtp:18 annexb=yes\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=rtpmap:99 telephone-event/16000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=rtcp-fb:* trr-int 1000\r\n\
a=rtcp-fb:* ccm tmmbr\r\n\
m=video 9078 RTP/AVP 96 97\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtpmap:97 H264/90000\r\n\
a=fmtp:97 profile-level-id=42801F\r\n\
a=rtcp-fb:* trr-int 1000\r\n";

    const YEALINK: &str = "v=0\r\n\
o=- 20045 20045 IN IP4 10.0.0.51\r\n\
s=SDP data\r\n\
c=IN IP4 10.0.0.51\r\n\
t=0 0\r\n\
m=audio 11800 RTP/AVP 8 0 18 9 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:9 G722/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

    /// sipp's built-in uac scenario.
    const SIPP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

    const HOLD_SENDONLY: &str = "v=0\r\n\
o=- 20045 20046 IN IP4 10.0.0.51\r\n\
s=SDP data\r\n\
c=IN IP4 10.0.0.51\r\n\
t=0 0\r\n\
m=audio 11800 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendonly\r\n";

    /// RFC 2543-style hold: c=0.0.0.0, no direction attribute.
    const HOLD_ZERO: &str = "v=0\r\n\
o=old 1 2 IN IP4 10.0.0.9\r\n\
s=-\r\n\
c=IN IP4 0.0.0.0\r\n\
t=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n";

    const IPV6: &str = "v=0\r\n\
o=bob 1 1 IN IP6 ::1\r\n\
s=-\r\n\
c=IN IP6 ::1\r\n\
t=0 0\r\n\
m=audio 5004 RTP/AVP 0 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=inactive\r\n";

    const G729_ONLY: &str = "v=0\r\n\
o=- 1 1 IN IP4 10.1.1.1\r\n\
s=-\r\n\
c=IN IP4 10.1.1.1\r\n\
t=0 0\r\n\
m=audio 10000 RTP/AVP 18 101\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n";

    fn p(s: &str) -> SessionDescription {
        parse(s.as_bytes()).unwrap()
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn parses_linphone_offer() {
        let sd = p(LINPHONE);
        assert_eq!(sd.origin_username, "alice");
        assert_eq!(sd.origin_session_id, "3120");
        assert_eq!(sd.origin_session_version, "2217");
        assert_eq!(sd.session_name, "Talk");
        assert_eq!(
            sd.connection,
            Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)))
        );
        assert_eq!(sd.media.len(), 2);
        let a = &sd.media[0];
        assert_eq!(
            (a.kind.as_str(), a.port, a.protocol.as_str()),
            ("audio", 7078, "RTP/AVP")
        );
        assert_eq!(a.formats, [96, 97, 98, 0, 8, 18, 101, 99, 100]);
        assert_eq!(a.rtpmap(96), Some(("opus", 48000)));
        assert_eq!(a.rtpmap(100), Some(("telephone-event", 8000)));
        assert_eq!(a.fmtp(18), Some("annexb=yes"));
        assert_eq!(a.direction, Direction::SendRecv);
        assert_eq!(a.connection, None);
        assert_eq!(sd.media[1].raw_formats, "96 97");

        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.codec, Codec::Pcmu, "caller's first acceptable codec");
        assert_eq!(n.telephone_event, Some(100), "the 8 kHz telephone-event");
        assert_eq!(n.remote, sa("192.168.1.20:7078"));
        assert_eq!(n.direction, Direction::SendRecv);
        assert_eq!(n.media_index, 0);
        // Our preference list filters, the caller's order decides.
        assert_eq!(negotiate(&sd, &[Codec::Pcma]).unwrap().codec, Codec::Pcma);
    }

    #[test]
    fn answers_linphone_with_the_video_line_rejected() {
        let sd = p(LINPHONE);
        let n = negotiate(&sd, &BOTH).unwrap();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let body = answer(&n, &sd, ip, 30000, 42, 1);
        assert_eq!(
            body,
            "v=0\r\n\
o=phonetree 42 1 IN IP4 192.0.2.10\r\n\
s=phonetree\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 100\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:100 telephone-event/8000\r\n\
a=fmtp:100 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
m=video 0 RTP/AVP 96 97\r\n"
        );
        let back = p(&body);
        assert_eq!(back.media.len(), sd.media.len());
        assert_eq!(back.media[1].port, 0);
    }

    #[test]
    fn yealink_prefers_pcma_and_echoes_pt_101() {
        let sd = p(YEALINK);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, sa("10.0.0.51:11800"));
        assert_eq!(n.remote_ptime, Some(20));
        let body = answer(&n, &sd, "10.0.0.2".parse().unwrap(), 20000, 1, 1);
        assert!(body.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{body}");
        assert!(body.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(!body.contains("PCMU"));
        // With only PCMU acceptable, the Yealink's second choice is taken.
        assert_eq!(negotiate(&sd, &[Codec::Pcmu]).unwrap().codec, Codec::Pcmu);
    }

    #[test]
    fn sipp_default_offer() {
        let sd = p(SIPP);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.telephone_event, None);
        assert_eq!(n.remote, sa("127.0.0.1:6000"));
        let body = answer(&n, &sd, "127.0.0.1".parse().unwrap(), 6002, 7, 7);
        assert!(body.contains("m=audio 6002 RTP/AVP 0\r\n"));
        assert!(!body.contains("telephone-event"));
    }

    #[test]
    fn hold_with_sendonly_is_answered_recvonly() {
        let sd = p(HOLD_SENDONLY);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(sd.media[0].direction, Direction::SendOnly);
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(n.is_on_hold());
        assert_eq!(n.remote, sa("10.0.0.51:11800"));
        let body = answer(&n, &sd, "10.0.0.2".parse().unwrap(), 20000, 1, 2);
        assert!(body.contains("a=recvonly\r\n"), "{body}");
    }

    #[test]
    fn hold_with_zero_address_has_no_remote_and_we_do_not_send() {
        let sd = p(HOLD_ZERO);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(n.is_on_hold());
    }

    #[test]
    fn direction_answers_follow_rfc3264() {
        for (offer_dir, ours) in [
            ("sendrecv", Direction::SendRecv),
            ("sendonly", Direction::RecvOnly),
            ("recvonly", Direction::SendOnly),
            ("inactive", Direction::Inactive),
        ] {
            // Session-level attribute applies to the media without its own.
            let s = SIPP.replace("t=0 0\r\n", &format!("t=0 0\r\na={offer_dir}\r\n"));
            let n = negotiate(&p(&s), &BOTH).unwrap();
            assert_eq!(n.direction, ours, "{offer_dir}");
        }
        // Media level overrides session level.
        let s = SIPP.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n") + "a=sendrecv\r\n";
        assert_eq!(
            negotiate(&p(&s), &BOTH).unwrap().direction,
            Direction::SendRecv
        );
    }

    #[test]
    fn ipv6_offer_and_answer() {
        let sd = p(IPV6);
        assert_eq!(sd.connection, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.remote, sa("[::1]:5004"));
        assert_eq!(n.direction, Direction::Inactive);
        assert_eq!(n.telephone_event, Some(101));
        let body = answer(&n, &sd, IpAddr::V6(Ipv6Addr::LOCALHOST), 7000, 1, 1);
        assert!(body.contains("c=IN IP6 ::1\r\n"), "{body}");
        assert!(body.contains("o=phonetree 1 1 IN IP6 ::1\r\n"));
        assert!(body.contains("a=inactive\r\n"));
    }

    #[test]
    fn g729_only_is_an_error() {
        let err = negotiate(&p(G729_ONLY), &BOTH).unwrap_err();
        assert_eq!(
            err,
            SdpError::NoCommonCodec {
                offered: "18 G729/8000, 101 telephone-event/8000".into()
            }
        );
        assert!(err.to_string().contains("G729"));
        // No audio at all.
        let video = SIPP.replace("m=audio 6000 RTP/AVP 0", "m=video 6000 RTP/AVP 96");
        assert_eq!(negotiate(&p(&video), &BOTH), Err(SdpError::NoAudio));
        // Secure RTP is not ours to accept.
        let srtp = SIPP.replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(negotiate(&p(&srtp), &BOTH), Err(SdpError::NoAudio));
        // PT 0 remapped to something else is not PCMU.
        let remapped = SIPP.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 G722/8000");
        assert!(matches!(
            negotiate(&p(&remapped), &BOTH),
            Err(SdpError::NoCommonCodec { .. })
        ));
    }

    #[test]
    fn avpf_static_pts_without_rtpmap_and_lowercase_names() {
        let s = "v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVPF 8 96\na=rtpmap:96 TELEPHONE-EVENT/8000\n";
        let sd = p(s);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!((n.codec, n.telephone_event), (Codec::Pcma, Some(96)));
        let body = answer(&n, &sd, "10.0.0.2".parse().unwrap(), 4002, 1, 1);
        assert!(body.contains("m=audio 4002 RTP/AVPF 8 96\r\n"));
        let lower = "v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 rtp/avp 0\na=rtpmap:0 pcmu/8000\n";
        assert_eq!(negotiate(&p(lower), &BOTH).unwrap().codec, Codec::Pcmu);
    }

    #[test]
    fn disabled_streams_and_media_level_connection() {
        // First audio line disabled (port 0), second usable with its own c=.
        let s = "v=0\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 5000 RTP/AVP 8\r\nc=IN IP4 10.9.9.9/127\r\n";
        let sd = p(s);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.media_index, 1);
        assert_eq!(n.remote, sa("10.9.9.9:5000"));
        assert_eq!(n.direction, Direction::SendRecv);
        let body = answer(&n, &sd, "10.0.0.2".parse().unwrap(), 4002, 1, 1);
        let m_lines: Vec<&str> = body.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m_lines, ["m=audio 0 RTP/AVP 0", "m=audio 4002 RTP/AVP 8"]);

        // Only a disabled audio line: answered, no remote, still port 0 in the answer.
        let s = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n";
        let sd = p(s);
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!((n.remote, n.direction), (None, Direction::Inactive));
        let body = answer(&n, &sd, "10.0.0.2".parse().unwrap(), 4002, 1, 1);
        assert!(body.contains("m=audio 0 RTP/AVP 0\r\n"));
    }

    #[test]
    fn tolerant_of_bare_newlines_trailing_spaces_and_unknown_lines() {
        let s = "v=0  \n\
o=- 1 2 IN IP4 10.0.0.1   \n\
s=  \n\
x-weird line without equals\n\
c=IN IP4 10.0.0.1 \t\n\
t=0 0\n\
z=something unknown\n\
m=audio 4000 RTP/AVP 0 101 \n\
a=rtpmap:101 telephone-event/8000 \n\
a=fmtp:101 0-16  \n\
a=ptime:20.0\n\
a=sendrecv   \n\
a=rtpmap:bad\n\
a=fmtp:\n\
\n";
        let sd = p(s);
        let m = &sd.media[0];
        assert_eq!(m.formats, [0, 101]);
        assert_eq!(m.fmtp(101), Some("0-16"));
        assert_eq!(m.ptime, Some(20));
        let n = negotiate(&sd, &BOTH).unwrap();
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, sa("10.0.0.1:4000"));
        // Non-UTF-8 bytes in an attribute do not spoil the rest.
        let mut bytes = SIPP.as_bytes().to_vec();
        bytes.extend_from_slice(b"a=tool:\xff\xfe phone\r\n");
        assert!(negotiate(&parse(&bytes).unwrap(), &BOTH).is_ok());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse(b""), Err(SdpError::NotSdp));
        assert_eq!(parse(b"\r\n\r\n"), Err(SdpError::NotSdp));
        assert_eq!(parse(b"hello world"), Err(SdpError::NotSdp));
        assert_eq!(parse(b"INVITE sip:x SIP/2.0\r\n"), Err(SdpError::NotSdp));
        assert_eq!(
            parse(b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n"),
            Err(SdpError::NotSdp)
        );
        assert_eq!(
            parse(b"v=0\r\nm=audio\r\n"),
            Err(SdpError::Malformed {
                line: 2,
                reason: "m= line has no port"
            })
        );
        assert!(matches!(
            parse(b"v=0\r\nm=audio 99999 RTP/AVP 0\r\n"),
            Err(SdpError::Malformed { .. })
        ));
        assert!(matches!(
            parse(b"v=0\r\nm=audio 5000\r\n"),
            Err(SdpError::Malformed { .. })
        ));
        // Parsable but empty: no audio.
        assert_eq!(negotiate(&p("v=0\r\n"), &BOTH), Err(SdpError::NoAudio));
        // Format tokens that are not payload types are skipped.
        let sd = p("v=0\nm=audio 5 RTP/AVP 0 foo 300 -1 8\n");
        assert_eq!(sd.media[0].formats, [0, 8]);
    }

    #[test]
    fn random_and_mutated_bodies_never_panic() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let corpus = [
            LINPHONE,
            YEALINK,
            SIPP,
            HOLD_SENDONLY,
            HOLD_ZERO,
            IPV6,
            G729_ONLY,
        ];
        let alphabet = b"v=0 \r\nmac/:IN IP4 6 RTP/AVP 101 8 0.0.0.0 ::1 [] audio sendonly";
        for i in 0..30_000 {
            let base = corpus[i % corpus.len()].as_bytes();
            let mut b = base.to_vec();
            for _ in 0..(next() % 8) {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] = next() as u8,
                    1 => b[at] = alphabet[(next() as usize) % alphabet.len()],
                    _ => {
                        b.remove(at);
                    }
                }
            }
            b.truncate((next() as usize) % (b.len() + 1));
            let parsed = parse(&b).ok();
            let neg = parsed.as_ref().and_then(|sd| negotiate(sd, &BOTH).ok());
            if let (Some(sd), Some(n)) = (parsed, neg) {
                let body = answer(&n, &sd, "10.0.0.2".parse().unwrap(), 4000, 1, 1);
                let back = parse(body.as_bytes()).unwrap();
                assert_eq!(back.media.len(), sd.media.len());
            }
            let junk: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            let _ = parse(&junk).map(|sd| negotiate(&sd, &BOTH));
        }
    }

    #[test]
    fn late_offer_round_trip() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let body = offer(ip, 30000, 5, 1, &BOTH, 101);
        assert_eq!(
            body,
            "v=0\r\n\
o=phonetree 5 1 IN IP4 192.0.2.10\r\n\
s=phonetree\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
        );
        // The caller's answer (in the ACK) picks PCMA and keeps 101.
        let ans = "v=0\r\no=- 9 9 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\n\
m=audio 9000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let n = negotiate_answer(&p(ans), &BOTH).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, sa("10.0.0.7:9000"));
        assert_eq!(n.direction, Direction::SendRecv);
        // An answer that puts us on hold from the start.
        let held = ans.replace("a=sendrecv", "a=recvonly");
        assert_eq!(
            negotiate_answer(&p(&held), &BOTH).unwrap().direction,
            Direction::SendOnly
        );
        // A rejected stream is an error.
        let rejected = ans.replace("m=audio 9000", "m=audio 0");
        assert_eq!(
            negotiate_answer(&p(&rejected), &BOTH),
            Err(SdpError::AudioRejected)
        );
        // Offer details: empty codec list means both laws; a bad telephone-event PT is dropped.
        let o = offer(ip, 1, 1, 1, &[], 0);
        assert!(o.contains("m=audio 1 RTP/AVP 0 8\r\n") && !o.contains("telephone-event"));
        let o = offer(ip, 1, 1, 1, &[Codec::Pcma, Codec::Pcma], 96);
        assert!(o.contains("m=audio 1 RTP/AVP 8 96\r\n"), "{o}");
    }
}
