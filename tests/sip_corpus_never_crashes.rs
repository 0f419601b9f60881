//! Every message of `tests/data/sip/` (RFC 4475 torture cases, real phone INVITEs,
//! garbage) is sent over UDP to a running engine. Each must get the answer
//! `tests/data/sip/README.md` gives for it (a status code, or none at all), and after
//! each one the engine must still answer an OPTIONS with 200. Calls that get answered
//! are ACKed and hung up. All mismatches are collected and reported together.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Stands for the sender in the corpus files (see the README).
const PLACEHOLDER: &[u8] = b"127.0.0.1:5070";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Status(u16),
    Drop,
}

struct Case {
    file: String,
    expect: Vec<Expect>,
}

/// Rows of the README table: "| `file` | 400 or drop | why |".
fn cases() -> Vec<Case> {
    let readme = String::from_utf8(read_fixture("tests/data/sip/README.md")).expect("utf-8 README");
    let mut v = Vec::new();
    for line in readme.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() < 4 || !cols[1].starts_with('`') {
            continue;
        }
        let file = cols[1].trim_matches('`').to_string();
        let expect: Vec<Expect> = cols[2]
            .split(" or ")
            .map(|t| match t.trim() {
                "drop" => Expect::Drop,
                n => Expect::Status(
                    n.parse()
                        .unwrap_or_else(|_| panic!("README: bad expectation {t:?} for {file}")),
                ),
            })
            .collect();
        v.push(Case { file, expect });
    }
    v
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// First header value named `long` or `compact` (case-insensitive, before the body).
fn header_of(msg: &[u8], long: &str, compact: &str) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let head = text.split("\r\n\r\n").next()?;
    for line in head.split("\r\n").skip(1) {
        if let Some((n, v)) = line.split_once(':') {
            let n = n.trim();
            if n.eq_ignore_ascii_case(long) || n.eq_ignore_ascii_case(compact) {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

fn has_body(msg: &[u8]) -> bool {
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4 < msg.len())
        .unwrap_or(false)
}

/// Reads datagrams until `until` returns true for a response or the time is up.
fn collect(
    sock: &UdpSocket,
    wait: Duration,
    mut until: impl FnMut(&SipResponse) -> bool,
) -> Vec<SipResponse> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                // Requests from the engine (none expected here) are ignored.
                if let Some(r) = SipResponse::parse(&buf[..n]) {
                    let stop = until(&r);
                    got.push(r);
                    if stop {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    got
}

fn uri_of(name_addr: &str) -> String {
    match (name_addr.find('<'), name_addr.find('>')) {
        (Some(a), Some(b)) if b > a => name_addr[a + 1..b].to_string(),
        _ => name_addr
            .split(';')
            .next()
            .unwrap_or(name_addr)
            .trim()
            .to_string(),
    }
}

/// ACK and BYE for a 2xx to an INVITE; returns a problem if the BYE is not answered 200.
/// Payload types of the first `m=audio` line anywhere in a message (also inside a
/// multipart body), or None when there is none.
fn audio_formats(msg: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(msg);
    let body_at = text.find("\r\n\r\n")? + 4;
    let line = text[body_at..]
        .lines()
        .find(|l| l.starts_with("m=audio "))?;
    Some(line.split_whitespace().skip(3).map(String::from).collect())
}

/// The Request-URI of a request's start line.
fn request_uri(msg: &[u8]) -> Option<String> {
    let line = msg.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let _method = parts.next()?;
    Some(parts.next()?.to_string())
}

/// RFC 3261 §17.1.1.3: the ACK for a non-2xx final response reuses the INVITE's Via
/// (same branch) and takes the To (with tag) from the response.
fn ack_refusal(sock: &UdpSocket, engine: SocketAddr, fin: &SipResponse, uri: &str) {
    let (Some(via), Some(from), Some(to), Some(call_id), Some((n, _))) = (
        fin.header("via"),
        fin.header("from"),
        fin.header("to"),
        fin.header("call-id"),
        fin.cseq(),
    ) else {
        return;
    };
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n"
    );
    let _ = sock.send_to(ack.as_bytes(), engine);
}

fn hang_up(
    sock: &UdpSocket,
    engine: SocketAddr,
    ok: &SipResponse,
    late_offer: bool,
) -> Result<(), String> {
    let me = sock.local_addr().expect("addr");
    let to = ok.header("to").ok_or("200 without To")?;
    let from = ok.header("from").ok_or("200 without From")?;
    let call_id = ok.header("call-id").ok_or("200 without Call-ID")?;
    let (n, _) = ok.cseq().ok_or("200 without CSeq")?;
    let target = ok
        .header("contact")
        .map(uri_of)
        .unwrap_or_else(|| uri_of(to));
    let answer = if late_offer {
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 40020 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    } else {
        ""
    };
    let ctype = if late_offer {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let ack = format!(
        "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack-{n}-{call_id_hash};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {n} ACK\r\n{ctype}\
         Content-Length: {}\r\n\r\n{answer}",
        answer.len(),
        call_id_hash = call_id.len()
    );
    sock.send_to(ack.as_bytes(), engine)
        .map_err(|e| e.to_string())?;
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bye-{n}-{h};rport\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} BYE\r\n\
         Content-Length: 0\r\n\r\n",
        n + 1,
        h = call_id.len()
    );
    sock.send_to(bye.as_bytes(), engine)
        .map_err(|e| e.to_string())?;
    let got = collect(sock, Duration::from_secs(2), |r| {
        r.header("call-id") == Some(call_id)
            && r.cseq().map(|c| c.1 == "BYE").unwrap_or(false)
            && r.status >= 200
    });
    match got
        .iter()
        .rev()
        .find(|r| r.cseq().map(|c| c.1 == "BYE").unwrap_or(false) && r.status >= 200)
    {
        Some(r) if r.status == 200 => Ok(()),
        Some(r) => Err(format!("our BYE got {} {}", r.status, r.reason)),
        None => Err("our BYE got no final response".into()),
    }
}

fn run_corpus(engine: SocketAddr) -> Vec<String> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let me = sock.local_addr().expect("addr").to_string();
    let mut failures = Vec::new();
    let mut earlier_call_ids: Vec<String> = Vec::new();
    options_ping(&sock, engine, "before").expect("engine answers OPTIONS before the corpus");

    for case in cases() {
        let path = format!("tests/data/sip/{}", case.file);
        let msg = replace_all(&read_fixture(&path), PLACEHOLDER, me.as_bytes());
        let call_id = header_of(&msg, "Call-ID", "i");
        let method = header_of(&msg, "CSeq", "CSeq")
            .and_then(|c| c.split_whitespace().nth(1).map(String::from));
        let is_invite = msg.starts_with(b"INVITE ");
        let may_drop = case.expect.contains(&Expect::Drop);
        let statuses: Vec<u16> = case
            .expect
            .iter()
            .filter_map(|e| match e {
                Expect::Status(s) => Some(*s),
                _ => None,
            })
            .collect();

        if let Err(e) = sock.send_to(&msg, engine) {
            failures.push(format!("{}: send failed: {e}", case.file));
            continue;
        }
        let wait = if statuses.is_empty() {
            Duration::from_millis(500)
        } else if may_drop {
            Duration::from_millis(1000)
        } else {
            Duration::from_secs(3)
        };
        let ours = |r: &SipResponse| match r.header("call-id") {
            Some(id) => !earlier_call_ids.iter().any(|e| e == id),
            None => true,
        };
        let got: Vec<SipResponse> =
            collect(&sock, wait, |r| ours(r) && r.status >= 200 && !may_drop)
                .into_iter()
                .filter(|r| ours(r))
                .collect();
        let finals: Vec<&SipResponse> = got.iter().filter(|r| r.status >= 200).collect();
        let desc = |rs: &[SipResponse]| {
            rs.iter()
                .map(|r| format!("{} {}", r.status, r.reason))
                .collect::<Vec<_>>()
                .join(", ")
        };

        let failures_before = failures.len();
        match finals.first() {
            None if statuses.is_empty() && !got.is_empty() => {
                failures.push(format!(
                    "{}: expected no answer, got {}",
                    case.file,
                    desc(&got)
                ));
            }
            None if !may_drop => {
                failures.push(format!(
                    "{}: expected {:?}, got no final response{}",
                    case.file,
                    statuses,
                    if got.is_empty() {
                        String::new()
                    } else {
                        format!(" (only {})", desc(&got))
                    }
                ));
            }
            None => {}
            Some(r) if !statuses.contains(&r.status) => {
                failures.push(format!(
                    "{}: expected {:?}, got {}",
                    case.file,
                    case.expect,
                    desc(&got)
                ));
            }
            Some(r) => {
                if let (Some(m), Some((_, rm))) = (&method, r.cseq()) {
                    if !m.eq_ignore_ascii_case(&rm) {
                        failures.push(format!(
                            "{}: answer is for CSeq method {rm}, sent {m}",
                            case.file
                        ));
                    }
                }
            }
        }
        if finals.len() > 1 {
            let methods: Vec<String> = finals
                .iter()
                .filter_map(|r| r.cseq().map(|c| c.1))
                .collect();
            if methods.iter().any(|m| Some(m) != method.as_ref()) {
                failures.push(format!(
                    "{}: more than one request answered: {}",
                    case.file,
                    desc(&got)
                ));
            }
        }
        // End every call that was answered (also the trailing INVITE of dblreq, if it was);
        // ACK refusals so they are not retransmitted into the next case.
        let expectation_met = failures.len() == failures_before;
        for fin in &finals {
            if !fin.cseq().map(|c| c.1 == "INVITE").unwrap_or(false) {
                continue;
            }
            if (200..300).contains(&fin.status) {
                let late = is_invite && !has_body(&msg);
                // RFC 3264 §6: when the INVITE carried an offer, the 200 carries an answer,
                // whose formats are a subset of the offer's.
                let mut answer_ok = true;
                if let (false, Some(offered), Some(answered)) =
                    (late, audio_formats(&msg), audio_formats(&fin.raw))
                {
                    let extra: Vec<&String> =
                        answered.iter().filter(|f| !offered.contains(f)).collect();
                    if !extra.is_empty() {
                        answer_ok = false;
                        failures.push(format!(
                            "{}: the 200 is not an answer to the offer: formats {extra:?} were not offered ({offered:?})",
                            case.file
                        ));
                    }
                }
                if let Err(e) = hang_up(&sock, engine, fin, late) {
                    if expectation_met && answer_ok {
                        failures.push(format!("{}: after the 200: {e}", case.file));
                    }
                }
            } else if let Some(uri) = request_uri(&msg) {
                ack_refusal(&sock, engine, fin, &uri);
            }
        }
        if let Some(id) = call_id {
            earlier_call_ids.push(id);
        }
        for r in &got {
            if let Some(id) = r.header("call-id") {
                earlier_call_ids.push(id.to_string());
            }
        }
        if let Err(e) = options_ping(&sock, engine, &case.file.replace('.', "-")) {
            failures.push(format!(
                "{}: engine no longer answers OPTIONS: {e}",
                case.file
            ));
            break;
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_corpus_never_crashes() {
    // The README and the directory list the same files.
    let listed: Vec<String> = cases().into_iter().map(|c| c.file).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo().join("tests/data/sip"))
        .expect("corpus dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sip"))
        .collect();
    on_disk.sort();
    let missing: Vec<&String> = on_disk.iter().filter(|f| !listed.contains(f)).collect();
    let stale: Vec<&String> = listed.iter().filter(|f| !on_disk.contains(f)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README vs directory: not listed {missing:?}, listed but absent {stale:?}"
    );

    let engine = start_engine("corpus").await;
    let sip = engine.sip;
    let failures = tokio::task::spawn_blocking(move || run_corpus(sip))
        .await
        .expect("corpus runner");

    // Still alive from a fresh socket, and shuts down cleanly.
    let fresh = UdpSocket::bind("127.0.0.1:0").expect("bind");
    options_ping(&fresh, sip, "after").expect("engine answers OPTIONS after the corpus");
    engine.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} corpus expectation(s) not met:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
