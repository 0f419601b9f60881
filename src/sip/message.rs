//! Reading the fields phonetree needs from requests, and building our responses and
//! in-dialog requests (RFC 3261 §8.2.6, §12.1.1, §12.2.1.1).

use super::rsip::headers::{Header, Headers, make_header};
use super::rsip::prelude::{HeadersExt, ToTypedHeader};
use super::{ALLOWED_METHODS, PRODUCT, Request, Response, SUPPORTED_OPTIONS, StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an INVITE cannot become a call, with the status to answer it.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("missing or unparseable {0} header")]
    BadHeader(&'static str),
    #[error("unsupported extension required: {0}")]
    BadExtension(String),
    #[error("body of type {0} is not a session description")]
    UnsupportedMediaType(String),
}

impl InviteError {
    pub fn status(&self) -> u16 {
        match self {
            InviteError::BadHeader(_) => 400,
            InviteError::BadExtension(_) => 420,
            InviteError::UnsupportedMediaType(_) => 415,
        }
    }
}

/// The parts of a dialog-creating INVITE that the call keeps (RFC 3261 §12.1.1).
#[derive(Debug, Clone)]
pub struct InviteInfo {
    pub call_id: String,
    /// Their `From` value, verbatim (becomes `To` in our requests).
    pub from: String,
    /// Their `To` value, verbatim, without our tag.
    pub to: String,
    /// The caller's user part (From URI), for logs and caller-number routing.
    pub caller: String,
    /// The dialled user part (Request-URI), which selects the flow.
    pub dialled: String,
    /// Where to send our in-dialog requests (Contact URI), verbatim.
    pub remote_target: String,
    /// Record-Route values in the order received; our route set as UAS (§12.1.1).
    pub route_set: Vec<String>,
    pub cseq: u32,
    /// The SDP offer, if the INVITE carried one.
    pub sdp: Option<Vec<u8>>,
}

/// Option tags we support in `Require` (§8.2.2.3): none beyond the base spec.
const SUPPORTED_TAGS: &[&str] = &[];

impl InviteInfo {
    pub fn from_request(req: &Request) -> Result<InviteInfo, InviteError> {
        let call_id = req
            .call_id_header()
            .map_err(|_| InviteError::BadHeader("Call-ID"))?
            .value()
            .to_string();
        let from_h = req
            .from_header()
            .map_err(|_| InviteError::BadHeader("From"))?;
        let to_h = req.to_header().map_err(|_| InviteError::BadHeader("To"))?;
        let from_typed = from_h.typed().map_err(|_| InviteError::BadHeader("From"))?;
        let cseq = req
            .cseq_header()
            .and_then(|c| c.seq())
            .map_err(|_| InviteError::BadHeader("CSeq"))?;
        // A missing Contact is a MUST violation (§8.1.1.8); tolerate it by falling back to
        // the From URI so we can still send BYE to someone.
        // The URI is taken verbatim from the header text: re-serialising a parsed URI may
        // drop or re-escape parameters (`;transport=tcp` matters for our BYE).
        let remote_target = match req.contact_header() {
            Ok(c) => match raw_uri(c.value()) {
                Some(uri) if super::rsip::Uri::try_from(uri).is_ok() => uri.to_string(),
                _ => return Err(InviteError::BadHeader("Contact")),
            },
            Err(_) => from_typed.uri.to_string(),
        };
        for h in req.headers.iter() {
            if let Header::Require(r) = h {
                for tag in r
                    .value()
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                {
                    if !SUPPORTED_TAGS.contains(&tag) {
                        return Err(InviteError::BadExtension(tag.to_string()));
                    }
                }
            }
        }
        let route_set = req
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::RecordRoute(rr) => Some(rr.value().to_string()),
                _ => None,
            })
            .flat_map(|v| split_header_list(&v))
            .collect();
        let sdp = sdp_body(req);
        if sdp.is_none() && !req.body.iter().all(|b| b.is_ascii_whitespace()) {
            // §8.2.3: a body we cannot read is 415, never mistaken for a late offer.
            return Err(InviteError::UnsupportedMediaType(
                content_type(req).unwrap_or_default(),
            ));
        }
        Ok(InviteInfo {
            call_id,
            from: from_h.value().to_string(),
            to: to_h.value().to_string(),
            caller: from_typed.uri.user().unwrap_or_default().to_string(),
            dialled: req.uri.user().unwrap_or_default().to_string(),
            remote_target,
            route_set,
            cseq,
            sdp,
        })
    }
}

/// The session description in a request: the body when it is SDP (a body without
/// Content-Type is taken as SDP, as phones do), or the SDP part of a `multipart/mixed` or
/// `multipart/alternative` body (RFC 2046 §5.1, RFC 4475 §3.1.1.11).
pub fn sdp_body(req: &Request) -> Option<Vec<u8>> {
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let raw_ct = req.headers.iter().find_map(|h| match h {
        Header::ContentType(ct) => Some(ct.value().to_string()),
        _ => None,
    });
    let Some(raw_ct) = raw_ct else {
        return Some(req.body.clone());
    };
    let media_type = raw_ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media_type.as_str() {
        "application/sdp" => Some(req.body.clone()),
        "multipart/mixed" | "multipart/alternative" => {
            let boundary = raw_ct.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("boundary")
                    .then(|| v.trim().trim_matches('"').to_string())
            })?;
            multipart_sdp(&req.body, &boundary)
        }
        _ => None,
    }
}

/// Finds the `application/sdp` part of a multipart body.
fn multipart_sdp(body: &[u8], boundary: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part
            .strip_prefix("\r\n")
            .or_else(|| part.strip_prefix('\n'))
            .unwrap_or(part);
        let (head, content) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))?;
        let is_sdp = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("content-type")
                    && v.trim().to_ascii_lowercase().starts_with("application/sdp")
            })
        });
        if is_sdp {
            let content = content
                .strip_suffix("\r\n")
                .or_else(|| content.strip_suffix('\n'))
                .unwrap_or(content);
            return Some(content.as_bytes().to_vec());
        }
    }
    None
}

/// The media type of the body without parameters, e.g. `application/dtmf-relay`.
pub fn content_type(req: &Request) -> Option<String> {
    req.headers.iter().find_map(|h| match h {
        Header::ContentType(ct) => Some(
            ct.value()
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
        ),
        _ => None,
    })
}

/// The Call-ID of a request.
pub fn call_id(req: &Request) -> Option<String> {
    req.call_id_header().ok().map(|c| c.value().to_string())
}

/// The To tag of a request (Some for in-dialog requests).
pub fn to_tag(req: &Request) -> Option<String> {
    req.to_header()
        .ok()?
        .tag()
        .ok()
        .flatten()
        .map(|t| t.value().to_string())
}

/// The `Max-Forwards` value of a request, if it has a readable one (RFC 3261 §20.22).
pub fn max_forwards(req: &Request) -> Option<u32> {
    req.headers.iter().find_map(|h| match h {
        Header::MaxForwards(m) => m.value().trim().parse().ok(),
        _ => None,
    })
}

/// The user part of the `From` URI (an agent's SIP user name on a feature-code INVITE).
pub fn from_user(req: &Request) -> Option<String> {
    req.from_header()
        .ok()?
        .typed()
        .ok()?
        .uri
        .user()
        .map(str::to_string)
}

/// The tag of the `From` header: the peer's tag on requests inside a dialog we answered
/// (RFC 3261 §12.2.2 matches it against the dialog's remote tag).
pub fn from_tag(req: &Request) -> Option<String> {
    req.from_header()
        .ok()?
        .tag()
        .ok()
        .flatten()
        .map(|t| t.value().to_string())
}

/// The URI inside a name-addr (`"Bob" <sip:b@h;transport=tcp>;expires=5`) or an addr-spec
/// (`sip:b@h;x=y`, where parameters belong to the header, RFC 3261 §20.10), verbatim.
pub fn raw_uri(value: &str) -> Option<&str> {
    let v = value.trim();
    // The first `>` after the first `<`: header parameters may hold quoted `<...>`
    // themselves (Linphone's `+sip.instance="<urn:uuid:...>"`).
    if let Some(a) = v.find('<') {
        let b = v[a..].find('>')? + a;
        return Some(v[a + 1..b].trim());
    }
    let uri = v.split(';').next()?.trim();
    (!uri.is_empty()).then_some(uri)
}

/// Splits a comma-separated header value list, respecting `<...>` and quotes.
pub fn split_header_list(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0usize, false);
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth = depth.saturating_sub(1),
            ',' if !quoted && depth == 0 => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A fresh tag / identifier: 64 bits from the operating system's CSPRNG. RFC 3261 §19.3
/// asks for at least 32 random bits in tags and unguessable Call-IDs: a tag or Call-ID
/// that can be predicted from an earlier one lets a third party forge in-dialog requests.
pub fn new_tag() -> String {
    format!("{:016x}", next_random())
}

/// Unpredictable 64-bit numbers for tags, Call-IDs, SSRCs, initial sequence numbers and
/// timestamps (RFC 3550 §5.1 wants the latter random so streams cannot be spoofed blind).
/// From the OS CSPRNG (`getrandom`); if that ever fails, a hash keyed per process with a
/// counter, so values stay distinct (never a panic on the call path).
pub fn next_random() -> u64 {
    match getrandom::u64() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "the OS random source failed; using a weaker fallback");
            fallback_random()
        }
    }
}

fn fallback_random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = KEYS
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A body with its media type.
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Builds a response to `req` (§8.2.6.2): Via, From, Call-ID, CSeq copied; To copied with
/// `to_tag` added when it has none; Record-Route copied on dialog-creating responses
/// (§12.1.1); `Contact` given for 2xx to INVITE.
pub fn response(
    req: &Request,
    status: u16,
    to_tag: Option<&str>,
    contact: Option<&str>,
    body: Option<Body>,
) -> Response {
    let status_code = StatusCode::from(status);
    let dialog_creating = req.method == super::Method::Invite && (101..300).contains(&status);
    let mut headers: Vec<Header> = Vec::with_capacity(12);
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::RecordRoute(_) if dialog_creating => headers.push(h.clone()),
            Header::To(to) => {
                let has_tag = to.tag().ok().flatten().is_some();
                match (has_tag, to_tag) {
                    (false, Some(tag)) if status > 100 => {
                        headers.push(make_header("To", format!("{};tag={tag}", to.value())))
                    }
                    _ => headers.push(h.clone()),
                }
            }
            _ => {}
        }
    }
    if let Some(c) = contact {
        headers.push(make_header("Contact", c.to_string()));
    }
    // §20.5 / §20.37: a 2xx to INVITE and an OPTIONS answer say what we allow and support
    // (§11.2), so the peer knows not to try UPDATE, PRACK or REFER; a 405 MUST carry Allow
    // (§21.4.6).
    let capabilities = (req.method == super::Method::Invite && (200..300).contains(&status))
        || (req.method == super::Method::Options && status < 300);
    if status == 405 || status == 501 || capabilities {
        headers.push(make_header("Allow", ALLOWED_METHODS.to_string()));
    }
    if status == 405 || capabilities {
        headers.push(make_header("Supported", SUPPORTED_OPTIONS.to_string()));
    }
    if req.method == super::Method::Options && status < 300 {
        headers.push(make_header("Accept", "application/sdp".to_string()));
    }
    if status == 415 {
        headers.push(make_header(
            "Accept",
            "application/sdp, application/dtmf-relay, application/dtmf".to_string(),
        ));
    }
    if status == 488 {
        headers.push(make_header(
            "Warning",
            "304 phonetree \"Media type not available: offer PCMU or PCMA\"".to_string(),
        ));
    }
    headers.push(make_header("Server", PRODUCT.to_string()));
    let body = match body {
        Some(b) => {
            headers.push(make_header("Content-Type", b.content_type.to_string()));
            b.bytes
        }
        None => Vec::new(),
    };
    headers.push(make_header("Content-Length", body.len().to_string()));
    Response {
        status_code,
        wire_reason: None,
        version: super::rsip::Version::V2,
        headers: Headers::from(headers),
        body,
    }
}

/// What an INVITE we send carries: a new dialog (RFC 3261 §8.1.1) to an agent or a transfer
/// target.
pub struct OutgoingInvite<'a> {
    pub request_uri: &'a str,
    /// Our `From` value without tag, e.g. `"Support" <sip:support@192.0.2.1>`.
    pub from: &'a str,
    pub to: &'a str,
    pub call_id: &'a str,
    pub local_tag: &'a str,
    pub cseq: u32,
    pub contact: &'a str,
    /// Extension headers (screen-pop data); values are made header-safe here.
    pub extra_headers: &'a [(&'static str, String)],
    pub sdp: String,
}

/// Builds an INVITE without `Via` (the transport adds it with a fresh branch, §8.1.1.7).
/// `None` when the Request-URI does not parse.
pub fn invite(o: &OutgoingInvite<'_>) -> Option<Request> {
    let uri = super::rsip::Uri::try_from(o.request_uri).ok()?;
    let mut headers: Vec<Header> = Vec::with_capacity(12 + o.extra_headers.len());
    headers.push(make_header(
        "From",
        format!("{};tag={}", o.from, o.local_tag),
    ));
    headers.push(make_header("To", o.to.to_string()));
    headers.push(make_header("Call-ID", o.call_id.to_string()));
    headers.push(make_header("CSeq", format!("{} INVITE", o.cseq)));
    headers.push(make_header("Max-Forwards", "70".to_string()));
    headers.push(make_header("Contact", o.contact.to_string()));
    headers.push(make_header("Allow", ALLOWED_METHODS.to_string()));
    headers.push(make_header("User-Agent", PRODUCT.to_string()));
    for (name, value) in o.extra_headers {
        headers.push(make_header(name, header_safe(value)));
    }
    headers.push(make_header("Content-Type", "application/sdp".to_string()));
    headers.push(make_header("Content-Length", o.sdp.len().to_string()));
    Some(Request {
        method: super::Method::Invite,
        uri,
        version: super::rsip::Version::V2,
        headers: Headers::from(headers),
        body: o.sdp.clone().into_bytes(),
    })
}

/// The CANCEL for an INVITE we sent (RFC 3261 §9.1): the same Request-URI, Call-ID, To,
/// From, Route and the top Via only (so it matches the INVITE's branch), CSeq number with
/// method CANCEL, no body.
pub fn cancel(invite: &Request) -> Request {
    let mut headers: Vec<Header> = Vec::with_capacity(8);
    let mut via_done = false;
    for h in invite.headers.iter() {
        match h {
            Header::Via(_) if !via_done => {
                via_done = true;
                headers.push(h.clone());
            }
            Header::From(_) | Header::To(_) | Header::CallId(_) | Header::Route(_) => {
                headers.push(h.clone())
            }
            Header::CSeq(c) => {
                let seq = c.seq().unwrap_or(1);
                headers.push(make_header("CSeq", format!("{seq} CANCEL")));
            }
            _ => {}
        }
    }
    headers.push(make_header("Max-Forwards", "70".to_string()));
    headers.push(make_header("User-Agent", PRODUCT.to_string()));
    headers.push(make_header("Content-Length", "0".to_string()));
    Request {
        method: super::Method::Cancel,
        uri: invite.uri.clone(),
        version: super::rsip::Version::V2,
        headers: Headers::from(headers),
        body: Vec::new(),
    }
}

/// A value safe to put in a header: no CR/LF or other control characters (header
/// injection from customer data), at most 256 bytes on a character boundary.
pub fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(256));
    for c in value.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > 256 {
            break;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// Adds an `Unsupported` header listing the option tag (for 420, §8.2.2.3).
pub fn with_unsupported(mut resp: Response, tag: &str) -> Response {
    resp.headers
        .push(make_header("Unsupported", tag.to_string()));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:ivr@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
From: \"Alice\" <sip:+15551234567@10.0.0.1>;tag=a1\r\n\
To: <sip:ivr@127.0.0.1>\r\n\
Call-ID: c1@10.0.0.1\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5070;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    fn invite() -> Request {
        Request::try_from(INVITE).expect("test INVITE parses")
    }

    #[test]
    fn invite_info_reads_dialog_fields() {
        let info = InviteInfo::from_request(&invite()).unwrap();
        assert_eq!(info.call_id, "c1@10.0.0.1");
        assert_eq!(info.caller, "+15551234567");
        assert_eq!(info.dialled, "ivr");
        assert_eq!(info.cseq, 7);
        assert_eq!(info.remote_target, "sip:alice@10.0.0.1:5070;transport=udp");
        assert_eq!(
            info.route_set,
            vec![
                "<sip:p1.example.com;lr>",
                "<sip:p2.example.com;lr>",
                "<sip:p3.example.com;lr>"
            ]
        );
        assert_eq!(info.sdp.as_deref(), Some(&b"v=0\n"[..]));
    }

    #[test]
    fn unknown_require_gives_420() {
        let text = INVITE.replace(
            "CSeq: 7 INVITE\r\n",
            "CSeq: 7 INVITE\r\nRequire: 100rel\r\n",
        );
        let err = InviteInfo::from_request(&Request::try_from(text.as_str()).unwrap()).unwrap_err();
        assert_eq!(err.status(), 420);
    }

    #[test]
    fn ok_to_invite_copies_record_route_and_tags_to() {
        let resp = response(
            &invite(),
            200,
            Some("xyz"),
            Some("<sip:ivr@127.0.0.1:5060>"),
            None,
        );
        let text = resp.to_string();
        assert!(text.contains("To: <sip:ivr@127.0.0.1>;tag=xyz"), "{text}");
        assert_eq!(text.matches("Record-Route").count(), 2, "{text}");
        assert!(text.contains("Contact: <sip:ivr@127.0.0.1:5060>"), "{text}");
        assert!(
            text.contains("Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc"),
            "{text}"
        );
    }

    #[test]
    fn ok_to_invite_and_options_answers_carry_allow_and_supported() {
        let ok = response(&invite(), 200, Some("x"), None, None).to_string();
        assert!(
            ok.contains(&format!("Allow: {ALLOWED_METHODS}\r\n")),
            "{ok}"
        );
        assert!(ok.contains("Supported:"), "{ok}");
        let options = Request::try_from(
            INVITE
                .replace("INVITE sip", "OPTIONS sip")
                .replace("7 INVITE", "7 OPTIONS")
                .as_str(),
        )
        .unwrap();
        let ok = response(&options, 200, Some("x"), None, None).to_string();
        assert!(ok.contains("Allow: INVITE"), "{ok}");
        assert!(ok.contains("Supported:"), "{ok}");
        let refused = response(&options, 405, Some("x"), None, None).to_string();
        assert!(refused.contains("Allow: INVITE"), "{refused}");
        assert!(refused.contains("Supported:"), "{refused}");
        let ringing = response(&invite(), 180, Some("x"), None, None).to_string();
        assert!(!ringing.contains("Supported:"), "{ringing}");
    }

    #[test]
    fn max_forwards_is_read() {
        let text = INVITE.replace(
            "CSeq: 7 INVITE\r\n",
            "CSeq: 7 INVITE\r\nMax-Forwards: 0\r\n",
        );
        assert_eq!(
            max_forwards(&Request::try_from(text.as_str()).unwrap()),
            Some(0)
        );
        assert_eq!(max_forwards(&invite()), None);
    }

    #[test]
    fn error_response_has_no_record_route() {
        let text = response(&invite(), 486, Some("xyz"), None, None).to_string();
        assert!(!text.contains("Record-Route"), "{text}");
    }

    #[test]
    fn contact_with_quoted_angle_brackets_in_params_reads_the_uri() {
        assert_eq!(
            raw_uri(
                "<sip:u@10.0.0.1:5060;transport=udp>;+sip.instance=\"<urn:uuid:a-b>\";expires=60"
            ),
            Some("sip:u@10.0.0.1:5060;transport=udp")
        );
        assert_eq!(raw_uri("sip:u@h;expires=5"), Some("sip:u@h"));
    }

    #[test]
    fn invite_with_unknown_body_type_gives_415() {
        let text = INVITE.replace(
            "Content-Type: application/sdp",
            "Content-Type: application/x-unknown",
        );
        let err = InviteInfo::from_request(&Request::try_from(text.as_str()).unwrap()).unwrap_err();
        assert_eq!(err.status(), 415);
    }

    #[test]
    fn sdp_part_of_a_multipart_body_is_the_offer() {
        let body = "--xyz\r\nContent-Type: application/x-foo\r\n\r\nfoo\r\n--xyz\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio 4 RTP/AVP 0\r\n--xyz--\r\n";
        let text = INVITE
            .replace(
                "Content-Type: application/sdp",
                "Content-Type: multipart/mixed;boundary=\"xyz\"",
            )
            .replace(
                "Content-Length: 4\r\n\r\nv=0\n",
                &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
            );
        let info = InviteInfo::from_request(&Request::try_from(text.as_str()).unwrap()).unwrap();
        assert_eq!(
            info.sdp.as_deref(),
            Some(&b"v=0\r\nm=audio 4 RTP/AVP 0"[..])
        );
    }

    #[test]
    fn tags_are_distinct() {
        let a = new_tag();
        let b = new_tag();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn random_values_are_not_a_sequence() {
        // A splitmix counter gives a fixed difference pattern between successive values;
        // CSPRNG output has none. Every bit position must flip somewhere in 64 draws, and
        // no two successive differences may repeat.
        let v: Vec<u64> = (0..64).map(|_| next_random()).collect();
        let (mut ones, mut zeros) = (0u64, 0u64);
        for x in &v {
            ones |= x;
            zeros |= !x;
        }
        assert_eq!(ones, u64::MAX);
        assert_eq!(zeros, u64::MAX);
        let diffs: Vec<u64> = v.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert!(diffs.windows(2).all(|d| d[0] != d[1]));
        let fallback: Vec<u64> = (0..8).map(|_| fallback_random()).collect();
        assert!(fallback.windows(2).all(|w| w[0] != w[1]));
    }
}
