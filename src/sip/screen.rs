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
    /// Hand these bytes to the stack instead: the same message with header whitespace
    /// normalised (never longer than the original).
    Rewrite { bytes: Vec<u8> },
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

/// A datagram larger than the stack's receive buffer: 513 Message Too Large (RFC 3261
/// §18.1.1, §21.5.14) when it is a request whose start line and routing headers can be read,
/// otherwise dropped. Never handed to the stack. Never panics, whatever the bytes.
pub fn screen_too_large(buf: &[u8]) -> Screened {
    let start = buf
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(b"");
    let is_request = start.split(|&b| b == b' ').count() == 3
        && start
            .rsplit(|&b| b == b' ')
            .next()
            .is_some_and(|v| v.eq_ignore_ascii_case(b"SIP/2.0"));
    if !is_request {
        return Screened::Drop {
            reason: "oversized datagram that is not a SIP request",
        };
    }
    answer_or_drop(
        buf,
        513,
        "Message Too Large",
        "oversized request without routing headers",
    )
}

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
            // Not trimmed: trailing whitespace is malformed (RFC 4475 §3.1.2.10).
            Some(l) => break l,
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
        // Bytes, not `str` slicing: the token may hold any UTF-8 (found by fuzzing).
        if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
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
    if start.len() != start.trim_end().len() || start.contains('\t') {
        // RFC 4475 §3.1.2.10: exactly one SP between the parts, none after.
        return answer_or_drop(
            buf,
            400,
            "Malformed Request-Line",
            "whitespace in request line",
        );
    }
    let uri = parts[1];
    if uri.starts_with('<') {
        // §25.1: the Request-URI is a bare URI, never a name-addr (RFC 4475 §3.1.2.7).
        return answer_or_drop(
            buf,
            400,
            "Malformed Request-URI",
            "Request-URI in angle brackets",
        );
    }
    match uri
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
    {
        Some(scheme) if scheme == "sip" || scheme == "sips" => {
            let host_part = uri.rsplit_once('@').map_or(uri, |(_, h)| h);
            if host_part.contains('?') {
                // §19.1.1: the headers component is not allowed in a Request-URI.
                return answer_or_drop(buf, 400, "Malformed Request-URI", "headers in Request-URI");
            }
        }
        Some(scheme) if scheme == "tel" => {}
        // §8.2.2.1: a scheme we do not understand gets 416.
        Some(_) => return answer_or_drop(buf, 416, "Unsupported URI Scheme", "unknown URI scheme"),
        None => {
            return answer_or_drop(
                buf,
                400,
                "Malformed Request-URI",
                "Request-URI has no scheme",
            );
        }
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
    if let Some(name) = fields.duplicated_singleton() {
        // §7.3 / §20: these headers appear once (RFC 4475 §3.3.8).
        let _ = name;
        return answer_or_drop(buf, 400, "Duplicate Header", "single-value header repeated");
    }
    if fields.address_values().any(|v| !quotes_balanced(v)) {
        return answer_or_drop(buf, 400, "Unbalanced Quotes", "unterminated quoted string");
    }
    if fields
        .address_values()
        .chain(fields.via.iter().map(String::as_str))
        .any(has_empty_param)
    {
        return answer_or_drop(
            buf,
            400,
            "Malformed Header Parameters",
            "empty header parameter",
        );
    }
    if method != "CANCEL" && !fields.require.is_empty() {
        // §8.2.2.3: we support no extension a request may require; 420 names them.
        let tags = fields.require.join(", ");
        return match answer_or_drop(buf, 420, "Bad Extension", "unsupported extension required") {
            Screened::Reply { status, bytes } => {
                let text = String::from_utf8_lossy(&bytes).replacen(
                    "Content-Length: 0",
                    &format!("Unsupported: {tags}\r\nContent-Length: 0"),
                    1,
                );
                Screened::Reply {
                    status,
                    bytes: text.into_bytes(),
                }
            }
            other => other,
        };
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
            if stack_reads(&buf[..len]) {
                return other;
            }
            // RFC 3261 §25.1 allows whitespace around `/ ; = ,` and folded lines (RFC 4475
            // §3.1.1.1); the stack's parser loses fields on some of it. Retry normalised.
            let normalised = normalise_headers(&buf[..len], head_len, body_start);
            if normalised.len() <= len && stack_reads(&normalised) {
                Screened::Rewrite { bytes: normalised }
            } else {
                answer_or_drop(buf, 400, "Bad Request", "unparseable header")
            }
        }
    }
}

/// Whether the stack will see what the transaction layer needs: a parsed message with a
/// typed top Via and, on requests, a From tag.
fn stack_reads(bytes: &[u8]) -> bool {
    use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
    match rsipstack::sip::SipMessage::try_from(bytes) {
        Ok(rsipstack::sip::SipMessage::Request(r)) => {
            r.top_via_header().and_then(|v| v.typed()).is_ok()
                && r.from_header()
                    .ok()
                    .and_then(|f| f.tag().ok().flatten())
                    .is_some()
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Rewrites the header section: folded lines joined, whitespace around `/ ; = ,` removed
/// and other runs of whitespace collapsed — outside quoted strings and `<...>` only.
fn normalise_headers(msg: &[u8], head_len: usize, body_start: usize) -> Vec<u8> {
    let head = String::from_utf8_lossy(&msg[..head_len]);
    let mut lines = head.lines().skip_while(|l| l.trim().is_empty());
    let mut out = String::with_capacity(msg.len());
    out.push_str(lines.next().unwrap_or(""));
    let mut headers: Vec<String> = Vec::new();
    for line in lines {
        if (line.starts_with(' ') || line.starts_with('\t')) && !headers.is_empty() {
            if let Some(last) = headers.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            headers.push(line.to_string());
        }
    }
    for h in headers {
        out.push_str("\r\n");
        match h.split_once(':') {
            Some((name, value)) => {
                out.push_str(name.trim());
                out.push_str(": ");
                out.push_str(&normalise_value(value));
            }
            None => out.push_str(h.trim()),
        }
    }
    out.push_str("\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&msg[body_start.min(msg.len())..]);
    bytes
}

fn normalise_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let (mut quoted, mut escaped, mut depth) = (false, false, 0usize);
    // Whitespace seen since the last character written, and whether that was a separator.
    let (mut space, mut after_separator) = (false, false);
    for c in v.trim().chars() {
        if quoted {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        if depth == 0 && c.is_whitespace() {
            space = true;
            continue;
        }
        let separator = depth == 0 && matches!(c, '/' | ';' | '=' | ',');
        if space && !separator && !after_separator && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        after_separator = separator;
        match c {
            '"' => quoted = true,
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(c);
    }
    out
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
struct HeaderFields {
    via: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<String>,
    content_length: Option<Result<usize, ()>>,
    content_length_count: usize,
    contact: Vec<String>,
    require: Vec<String>,
    /// How often From, To, Call-ID, CSeq, Max-Forwards, Content-Type appear.
    singletons: [(&'static str, usize); 6],
}

impl HeaderFields {
    fn duplicated_singleton(&self) -> Option<&'static str> {
        self.singletons
            .iter()
            .find(|(_, n)| *n > 1)
            .map(|(name, _)| *name)
    }

    /// Header values that hold a name-addr (display names may be quoted).
    fn address_values(&self) -> impl Iterator<Item = &str> {
        self.from
            .iter()
            .chain(self.to.iter())
            .chain(self.contact.iter())
            .map(String::as_str)
    }
}

/// Quotes balance, honouring backslash escapes inside quoted strings (§25.1).
fn quotes_balanced(v: &str) -> bool {
    let (mut quoted, mut escaped) = (false, false);
    for c in v.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            _ => {}
        }
    }
    !quoted
}

/// `;;`, `;,` or a trailing `;` outside quotes and `<...>`: a parameter with no name.
fn has_empty_param(v: &str) -> bool {
    let (mut quoted, mut depth, mut after_semi) = (false, 0usize, false);
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth = depth.saturating_sub(1),
            ';' if !quoted && depth == 0 => {
                if after_semi {
                    return true;
                }
                after_semi = true;
                continue;
            }
            ',' if !quoted && depth == 0 && after_semi => return true,
            c if c.is_whitespace() => continue,
            _ => {}
        }
        after_semi = false;
    }
    after_semi
}

impl HeaderFields {
    fn collect(head: &str) -> HeaderFields {
        let mut f = HeaderFields {
            via: Vec::new(),
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            content_length: None,
            content_length_count: 0,
            contact: Vec::new(),
            require: Vec::new(),
            singletons: [
                ("From", 0),
                ("To", 0),
                ("Call-ID", 0),
                ("CSeq", 0),
                ("Max-Forwards", 0),
                ("Content-Type", 0),
            ],
        };
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
            let name = name.trim().to_ascii_lowercase();
            let singleton = match name.as_str() {
                "from" | "f" => Some(0),
                "to" | "t" => Some(1),
                "call-id" | "i" => Some(2),
                "cseq" => Some(3),
                "max-forwards" => Some(4),
                "content-type" | "c" => Some(5),
                _ => None,
            };
            if let Some(i) = singleton {
                f.singletons[i].1 += 1;
            }
            match name.as_str() {
                "via" | "v" => f.via.push(value),
                "from" | "f" => f.from = Some(value),
                "to" | "t" => f.to = Some(value),
                "call-id" | "i" => f.call_id = Some(value),
                "cseq" => f.cseq = Some(value),
                "contact" | "m" => f.contact.push(value),
                "require" => f.require.extend(
                    value
                        .split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty()),
                ),
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
    fn oversized_request_gets_513_with_its_via() {
        let padding = format!("X-Pad: {}\r\n", "a".repeat(20_000));
        let big = OPTIONS.replacen(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{padding}"),
            1,
        );
        let s = screen_too_large(big.as_bytes());
        assert_eq!(status(&s), Some(513));
        let Screened::Reply { bytes, .. } = s else {
            unreachable!()
        };
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("SIP/2.0 513 Message Too Large\r\n"),
            "{text}"
        );
        assert!(text.contains("branch=z9hG4bK1"), "{text}");
        assert!(!text.contains("X-Pad"), "{text}");
    }

    #[test]
    fn oversized_garbage_or_response_is_dropped_not_answered() {
        let garbage = vec![b'z'; 20_000];
        assert!(matches!(screen_too_large(&garbage), Screened::Drop { .. }));
        let resp = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n{}",
            "a".repeat(9000)
        );
        assert!(matches!(
            screen_too_large(resp.as_bytes()),
            Screened::Drop { .. }
        ));
        let ack = OPTIONS.replace("OPTIONS", "ACK") + &"a".repeat(9000);
        assert!(matches!(
            screen_too_large(ack.as_bytes()),
            Screened::Drop { .. }
        ));
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
    fn unknown_uri_scheme_gets_416() {
        let m = OPTIONS.replacen("OPTIONS sip:ivr@127.0.0.1", "OPTIONS nope:ivr@127.0.0.1", 1);
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(416));
    }

    #[test]
    fn request_uri_in_angle_brackets_or_with_headers_gets_400() {
        let m = OPTIONS.replacen(
            "OPTIONS sip:ivr@127.0.0.1",
            "OPTIONS <sip:ivr@127.0.0.1>",
            1,
        );
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
        let m = OPTIONS.replacen(
            "OPTIONS sip:ivr@127.0.0.1",
            "OPTIONS sip:ivr@127.0.0.1?Route=%3Csip:x%3E",
            1,
        );
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
    }

    #[test]
    fn trailing_space_in_request_line_gets_400() {
        let m = OPTIONS.replacen("SIP/2.0\r\n", "SIP/2.0 \r\n", 1);
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
    }

    #[test]
    fn repeated_call_id_gets_400() {
        let m = OPTIONS.replace("Call-ID: x1\r\n", "Call-ID: x1\r\nCall-ID: x2\r\n");
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
    }

    #[test]
    fn unterminated_quote_gets_400() {
        let m = OPTIONS.replace("From: <sip:a@b>;tag=1", "From: \"Bob <sip:a@b>;tag=1");
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
        let ok = OPTIONS.replace("From: <sip:a@b>;tag=1", "From: \"B\\\"ob\" <sip:a@b>;tag=1");
        assert!(matches!(
            screen_datagram(ok.as_bytes()),
            Screened::Accept { .. }
        ));
    }

    #[test]
    fn empty_parameters_get_400() {
        let m = OPTIONS.replace(";branch=z9hG4bK1", ";;,;,,");
        assert_eq!(status(&screen_datagram(m.as_bytes())), Some(400));
    }

    #[test]
    fn required_extension_gets_420_with_unsupported() {
        let m = OPTIONS.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRequire: newfeature1, newfeature2\r\n",
        );
        let s = screen_datagram(m.as_bytes());
        assert_eq!(status(&s), Some(420));
        let Screened::Reply { bytes, .. } = s else {
            unreachable!()
        };
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .contains("Unsupported: newfeature1, newfeature2\r\n")
        );
    }

    #[test]
    fn quoted_params_and_name_addr_contacts_are_fine() {
        let m = OPTIONS.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nContact: <sip:u@h;transport=udp>;+sip.instance=\"<urn:uuid:1-2>\";expires=60\r\n",
        );
        assert!(matches!(
            screen_datagram(m.as_bytes()),
            Screened::Accept { .. }
        ));
    }

    #[test]
    fn whitespace_around_separators_is_normalised_for_the_stack() {
        let m = OPTIONS.replace(
            "From: <sip:a@b>;tag=1",
            "from   : \"J R \\\"\"  <sip:a@b>\r\n  ;\r\n  tag = 98asjd8",
        );
        match screen_datagram(m.as_bytes()) {
            Screened::Rewrite { bytes } => {
                let t = String::from_utf8(bytes).unwrap();
                assert!(
                    t.contains("from: \"J R \\\"\" <sip:a@b>;tag=98asjd8\r\n"),
                    "{t}"
                );
            }
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    /// fuzz/artifacts/sip_datagram/crash-f534ef7a: multi-byte UTF-8 where the SIP version
    /// should be panicked on a `str` slice.
    #[test]
    fn non_ascii_version_token_does_not_panic() {
        let mut m = b"GET / ".to_vec();
        m.extend(std::iter::repeat_n(0xe7u8, 58));
        m.extend_from_slice(b"<HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n");
        assert!(matches!(
            screen_datagram(&m),
            Screened::Drop { .. } | Screened::Reply { .. }
        ));
        let m = "OPTIONS sip:a@b é\u{e9}/2.0\r\n\r\n";
        let _ = screen_datagram(m.as_bytes());
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
