//! Screening of raw SIP datagrams before the stack sees them.
//!
//! rsipstack drops what it cannot parse without a word, accepts any `SIP/x.y` version and
//! ignores `Content-Length` on datagrams. RFC 3261 wants more: 505 for an unsupported version
//! (§8.2.2 → §21.5.6), 400 for a malformed request when a response can still be routed
//! (§8.2.6, §18.3), 501 for a method we do not recognise (§21.5.2), and a datagram's body cut
//! at `Content-Length` (§18.3). This module decides; the runtime sends.

use super::{ALLOWED_METHODS, PRODUCT};

/// The verdict on one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Screened {
    /// Hand the first `len` bytes to the stack (extra bytes beyond `Content-Length` are cut).
    Accept { len: usize },
    /// Do not hand it on; send these bytes back to the source instead.
    Reply { status: u16, bytes: Vec<u8> },
    /// Neither parseable nor answerable: log and drop.
    Drop { reason: &'static str },
}

/// Largest datagram we look at; rsipstack's buffer is larger, but no sane SIP message is.
pub const MAX_DATAGRAM: usize = 65_535;

/// Methods the message parser knows (`rsip::Method`); others get 501.
const KNOWN_METHODS: &[&str] = &[
    "ACK",
    "BYE",
    "CANCEL",
    "INFO",
    "INVITE",
    "MESSAGE",
    "NOTIFY",
    "OPTIONS",
    "PRACK",
    "PUBLISH",
    "REFER",
    "REGISTER",
    "SUBSCRIBE",
    "UPDATE",
];

/// Screens one datagram. Never panics, whatever the bytes.
pub fn screen_datagram(buf: &[u8]) -> Screened {
    // Keep-alives (RFC 5626 §3.5.1 CRLF pings) are the stack's business.
    if buf.iter().all(|b| b.is_ascii_whitespace()) {
        return Screened::Accept { len: buf.len() };
    }
    let Some(head_end) = find(buf, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(buf, b"\n\n").map(|i| (i, i + 2)))
    else {
        return answer_or_drop(
            buf,
            400,
            "Missing End Of Headers",
            "no blank line after headers",
        );
    };
    let (head_len, body_start) = head_end;
    let head = String::from_utf8_lossy(&buf[..head_len]);
    let mut lines = head.lines();
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let start = loop {
        match lines.next() {
            Some(l) if l.trim().is_empty() => continue,
            Some(l) => break l.trim_end(),
            None => {
                return Screened::Drop {
                    reason: "empty message",
                };
            }
        }
    };
    if start.starts_with("SIP/") {
        // A response: only version can be checked cheaply; the stack drops the rest.
        if !start
            .get(..8)
            .is_some_and(|v| v.eq_ignore_ascii_case("SIP/2.0 "))
        {
            return Screened::Drop {
                reason: "response with unsupported SIP version",
            };
        }
        return accept_with_length(buf, &head, body_start);
    }
    let parts: Vec<&str> = start.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return answer_or_drop(buf, 400, "Malformed Request-Line", "malformed request line");
    }
    let (method, version) = (parts[0], parts[2]);
    if !method
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
    {
        return answer_or_drop(buf, 400, "Malformed Method", "malformed method token");
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() > 4 && version[..4].eq_ignore_ascii_case("SIP/") {
            return answer_or_drop(buf, 505, "Version Not Supported", "unsupported SIP version");
        }
        return answer_or_drop(buf, 400, "Malformed SIP-Version", "malformed SIP version");
    }
    if method == "ACK" {
        // Never answer an ACK (§17.1.1.3); let the stack match or drop it.
        return accept_with_length(buf, &head, body_start);
    }
    if !KNOWN_METHODS.contains(&method) {
        return answer_or_drop(buf, 501, "Not Implemented", "unknown method");
    }
    let fields = HeaderFields::collect(&head);
    if fields.via.is_empty()
        || fields.from.is_none()
        || fields.to.is_none()
        || fields.call_id.is_none()
        || fields.cseq.is_none()
    {
        return answer_or_drop(
            buf,
            400,
            "Missing Mandatory Header",
            "mandatory header missing",
        );
    }
    if let Some(cseq) = &fields.cseq {
        let mut it = cseq.split_whitespace();
        let seq_ok = it.next().is_some_and(|n| n.parse::<u32>().is_ok());
        let cseq_method = it.next();
        if !seq_ok || cseq_method != Some(method) {
            // §8.1.1.5: the CSeq method MUST match the request method.
            return answer_or_drop(
                buf,
                400,
                "Bad CSeq",
                "CSeq invalid or does not match method",
            );
        }
    }
    if fields.content_length_count > 1 {
        return answer_or_drop(
            buf,
            400,
            "Conflicting Content-Length",
            "several Content-Length",
        );
    }
    match accept_with_length(buf, &head, body_start) {
        Screened::Drop { reason } => answer_or_drop(buf, 400, "Bad Content-Length", reason),
        other => {
            // The message looks sane on the surface; make sure the parser agrees, so that a
            // message the stack would silently drop gets its 400 here (§8.2.6).
            let len = match other {
                Screened::Accept { len } => len,
                _ => return other,
            };
            match rsipstack::sip::SipMessage::try_from(&buf[..len]) {
                Ok(_) => other,
                Err(_) => answer_or_drop(buf, 400, "Bad Request", "unparseable header"),
            }
        }
    }
}

/// §18.3: honour Content-Length on a datagram: cut extra bytes, reject short bodies.
fn accept_with_length(buf: &[u8], head: &str, body_start: usize) -> Screened {
    let fields = HeaderFields::collect(head);
    let body_len = buf.len().saturating_sub(body_start);
    match fields.content_length {
        None => Screened::Accept { len: buf.len() },
        Some(Err(())) => Screened::Drop {
            reason: "Content-Length is not a number",
        },
        Some(Ok(n)) if n > body_len => Screened::Drop {
            reason: "body shorter than Content-Length",
        },
        Some(Ok(n)) => Screened::Accept {
            len: body_start + n,
        },
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The raw header fields a response must copy (§8.2.6.2), read leniently from text.
#[derive(Default)]
struct HeaderFields {
    via: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<String>,
    content_length: Option<Result<usize, ()>>,
    content_length_count: usize,
}

impl HeaderFields {
    fn collect(head: &str) -> HeaderFields {
        let mut f = HeaderFields::default();
        // Unfold continuation lines (§7.3.1) first.
        let mut unfolded: Vec<String> = Vec::new();
        for line in head.lines().skip_while(|l| l.trim().is_empty()).skip(1) {
            if (line.starts_with(' ') || line.starts_with('\t')) && !unfolded.is_empty() {
                if let Some(last) = unfolded.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                }
            } else {
                unfolded.push(line.to_string());
            }
        }
        for line in &unfolded {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "via" | "v" => f.via.push(value),
                "from" | "f" => f.from = Some(value),
                "to" | "t" => f.to = Some(value),
                "call-id" | "i" => f.call_id = Some(value),
                "cseq" => f.cseq = Some(value),
                "content-length" | "l" => {
                    f.content_length_count += 1;
                    f.content_length = Some(value.parse::<usize>().map_err(|_| ()));
                }
                _ => {}
            }
        }
        f
    }
}

/// Builds a stateless error response from the raw request text if the headers needed to
/// route it (Via, From, To, Call-ID, CSeq) are there; otherwise the datagram is dropped.
fn answer_or_drop(buf: &[u8], status: u16, reason: &str, why: &'static str) -> Screened {
    let head_len = find(buf, b"\r\n\r\n")
        .or_else(|| find(buf, b"\n\n"))
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..head_len.min(MAX_DATAGRAM)]);
    let f = HeaderFields::collect(&head);
    let (Some(from), Some(to), Some(call_id), Some(cseq)) = (f.from, f.to, f.call_id, f.cseq)
    else {
        return Screened::Drop { reason: why };
    };
    if f.via.is_empty() {
        return Screened::Drop { reason: why };
    }
    // Never answer a response or an ACK.
    let start = head.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if start.starts_with("SIP/") || start.starts_with("ACK ") {
        return Screened::Drop { reason: why };
    }
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for v in &f.via {
        out.push_str("Via: ");
        out.push_str(v);
        out.push_str("\r\n");
    }
    let to = if to.to_ascii_lowercase().contains(";tag=") {
        to
    } else {
        format!("{to};tag={}", super::message::new_tag())
    };
    out.push_str(&format!(
        "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
    ));
    if status == 501 || status == 405 {
        out.push_str(&format!("Allow: {ALLOWED_METHODS}\r\n"));
    }
    if status == 505 {
        out.push_str("Warning: 399 phonetree \"only SIP/2.0 is supported\"\r\n");
    }
    out.push_str(&format!("Server: {PRODUCT}\r\nContent-Length: 0\r\n\r\n"));
    Screened::Reply {
        status,
        bytes: out.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: x1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    fn status(s: &Screened) -> Option<u16> {
        match s {
            Screened::Reply { status, .. } => Some(*status),
            _ => None,
        }
    }

    #[test]
    fn well_formed_request_is_accepted_whole() {
        assert_eq!(
            screen_datagram(OPTIONS.as_bytes()),
            Screened::Accept { len: OPTIONS.len() }
        );
    }

    #[test]
    fn unsupported_version_gets_505() {
        let m = OPTIONS.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1);
        let s = screen_datagram(m.as_bytes());
        assert_eq!(status(&s), Some(505));
        let Screened::Reply { bytes, .. } = s else {
            unreachable!()
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Call-ID: x1\r\n"), "{text}");
        assert!(text.contains("To: <sip:ivr@127.0.0.1>;tag="), "{text}");
    }

    #[test]
    fn unknown_method_gets_501_with_allow() {
        let m = OPTIONS.replace("OPTIONS", "FOO");
        let s = screen_datagram(m.as_bytes());
        assert_eq!(status(&s), Some(501));
        let Screened::Reply { bytes, .. } = s else {
            unreachable!()
        };
        assert!(String::from_utf8(bytes).unwrap().contains("Allow: INVITE"));
    }

    #[test]
    fn cseq_method_mismatch_gets_400() {
        let m = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
    }

    #[test]
    fn short_body_gets_400() {
        let m = OPTIONS.replace("Content-Length: 0", "Content-Length: 50");
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
    }

    #[test]
    fn bytes_beyond_content_length_are_cut() {
        let m = format!("{OPTIONS}garbage");
        assert_eq!(
            screen_datagram(m.as_bytes()),
            Screened::Accept { len: OPTIONS.len() }
        );
    }

    #[test]
    fn missing_call_id_is_dropped_not_answered() {
        let m = OPTIONS.replace("Call-ID: x1\r\n", "");
        assert!(matches!(
            screen_datagram(m.as_bytes()),
            Screened::Drop { .. }
        ));
    }

    #[test]
    fn compact_headers_are_understood() {
        let m = "OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:ivr@127.0.0.1>\r\ni: x1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        assert_eq!(
            screen_datagram(m.as_bytes()),
            Screened::Accept { len: m.len() }
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 12345;
        for n in 0..2000 {
            let mut buf = Vec::new();
            for _ in 0..(n % 300) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                buf.push((x >> 16) as u8);
            }
            if n % 3 == 0 {
                buf.splice(
                    0..0,
                    OPTIONS.as_bytes()[..(n % OPTIONS.len())].iter().copied(),
                );
            }
            let _ = screen_datagram(&buf);
        }
    }
}
