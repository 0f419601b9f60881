//! A caller's PIN never reaches the log, at any level. The real binary runs with
//! `RUST_LOG=trace` (every crate, rsipstack's raw-message logging included) and three
//! callers from an unknown number go to account services (key 3), type customer ID `1010#`
//! and that customer's PIN: one by SIP INFO (`application/dtmf-relay`), one by RFC 4733
//! telephone-events, one by in-band tones (no telephone-event offered). Each call's record
//! must show the PIN was accepted (so the digits really arrived), and the whole log must
//! hold the PIN in no form: not as a string, not as INFO bodies, not digit by digit.
//!
//! The SIP and RTP sides are written here with plain sockets, so the test owns the exact
//! timing and sends every key by exactly one method.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Customer 1010 in data/customers.csv; its PIN is read from the file.
const CUSTOMER_ID: &str = "1010";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Info,
    Rfc4733,
    Inband,
}

fn pin_of(id: &str) -> String {
    let path = repo().join("data/customers.csv");
    let mut r = csv::Reader::from_path(&path).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let (c_id, c_pin) = (col("id"), col("pin"));
    r.records()
        .map(|row| row.unwrap())
        .find(|row| &row[c_id] == id)
        .map(|row| row[c_pin].to_string())
        .expect("customer in the CSV")
}

// ------------------------------------------------------------------ one caller

struct Caller {
    sip: UdpSocket,
    me: SocketAddr,
    engine: SocketAddr,
    call_id: String,
    to: String,
    cseq: u32,
}

fn sdp(rtp: SocketAddr, telephone_event: bool) -> String {
    let (fmts, rtpmap) = if telephone_event {
        (
            "0 101",
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        )
    } else {
        ("0", "a=rtpmap:0 PCMU/8000\r\n")
    };
    format!(
        "v=0\r\no=- 7 7 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {fmts}\r\n{rtpmap}a=ptime:20\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

impl Caller {
    /// INVITE (from a number not on file), 200, ACK; returns the engine's RTP address.
    fn dial(engine: SocketAddr, rtp: SocketAddr, method: Method) -> (Caller, SocketAddr) {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = sip.local_addr().unwrap();
        let call_id = format!("pin-log-{method:?}-{}", me.port());
        let body = sdp(rtp, method != Method::Inband);
        let invite = format!(
            "INVITE sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+15550009999@{me}>;tag=c-{call_id}\r\nTo: <sip:ivr@{engine}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sip.send_to(invite.as_bytes(), engine).unwrap();
        let ok = final_response_to(&sip, &call_id, "INVITE", Duration::from_secs(10));
        assert_eq!(ok.status, 200, "INVITE answered {}", ok.status);
        let to = ok.header("to").unwrap().to_string();
        let media = answer_media(&String::from_utf8_lossy(&ok.body));
        let mut caller = Caller {
            sip,
            me,
            engine,
            call_id,
            to,
            cseq: 1,
        };
        caller.send_in_dialog("ACK", 1, "", "");
        (caller, media)
    }

    fn send_in_dialog(&mut self, method: &str, cseq: u32, content_type: &str, body: &str) {
        let (me, engine, call_id, to) = (self.me, self.engine, &self.call_id, &self.to);
        let ct = if content_type.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {content_type}\r\n")
        };
        let msg = format!(
            "{method} sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-{cseq}-{method};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+15550009999@{me}>;tag=c-{call_id}\r\nTo: {to}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.sip.send_to(msg.as_bytes(), self.engine).unwrap();
    }

    /// One key by SIP INFO (application/dtmf-relay), waiting for its 200.
    fn info_key(&mut self, key: char) {
        self.cseq += 1;
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        self.send_in_dialog("INFO", self.cseq, "application/dtmf-relay", &body);
        let r = final_response_to(
            &self.sip,
            &self.call_id.clone(),
            "INFO",
            Duration::from_secs(10),
        );
        assert_eq!(r.status, 200, "INFO answered {}", r.status);
    }

    fn bye(&mut self) {
        self.cseq += 1;
        self.send_in_dialog("BYE", self.cseq, "", "");
        let _ = final_response_to(
            &self.sip,
            &self.call_id.clone(),
            "BYE",
            Duration::from_secs(10),
        );
    }
}

fn answer_media(body: &str) -> SocketAddr {
    let ip = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .expect("m= line");
    format!("{ip}:{port}").parse().unwrap()
}

// ------------------------------------------------------------------ the caller's RTP

/// What the RTP thread sends next: silence, or one key by telephone-event or by tone.
enum Keying {
    Silence,
    Event(char),
    Tone(char),
}

fn event_code(key: char) -> u8 {
    match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        other => panic!("no event for {other}"),
    }
}

/// (low, high) DTMF frequencies, Q.23.
fn tone_pair(key: char) -> (f64, f64) {
    let rows = [697.0, 770.0, 852.0, 941.0];
    let cols = [1209.0, 1336.0, 1477.0];
    let (r, c) = match key {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        other => panic!("no tone for {other}"),
    };
    (rows[r], cols[c])
}

/// G.711 µ-law encoding of one sample (ITU-T G.711, with the usual bias of 0x84).
fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = (s + BIAS).min(0x7FFF);
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Streams 20 ms PCMU frames to the engine; `keys` queues what to send, one key at a time:
/// telephone-events (100 ms, 3 end packets) or tones (100 ms), each followed by 100 ms of
/// silence.
struct RtpSender {
    keys: std::sync::mpsc::Sender<Keying>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RtpSender {
    fn start(sock: UdpSocket, to: SocketAddr) -> RtpSender {
        let (tx, rx) = std::sync::mpsc::channel::<Keying>();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::spawn(move || {
            let ssrc = 0x5eed_1234u32;
            let (mut seq, mut ts) = (1u16, 0u32);
            let mut next = Instant::now();
            let packet = |pt: u8, marker: bool, ts: u32, seq: u16, payload: &[u8]| {
                let mut b = Vec::with_capacity(12 + payload.len());
                b.push(0x80);
                b.push(if marker { 0x80 } else { 0 } | pt);
                b.extend_from_slice(&seq.to_be_bytes());
                b.extend_from_slice(&ts.to_be_bytes());
                b.extend_from_slice(&ssrc.to_be_bytes());
                b.extend_from_slice(payload);
                let _ = sock.send_to(&b, to);
            };
            let silence = [0xFFu8; 160];
            let mut pending: std::collections::VecDeque<Keying> = Default::default();
            let mut phase = 0.0f64;
            while !stop2.load(Ordering::Relaxed) {
                while let Ok(k) = rx.try_recv() {
                    pending.push_back(k);
                    pending.push_back(Keying::Silence);
                }
                let frames = 5; // 100 ms per key or per gap
                match pending.pop_front() {
                    None | Some(Keying::Silence) => {
                        for _ in 0..frames {
                            packet(0, false, ts, seq, &silence);
                            (seq, ts) = (seq.wrapping_add(1), ts.wrapping_add(160));
                            next += Duration::from_millis(20);
                            thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                    }
                    Some(Keying::Event(key)) => {
                        // RFC 4733 §2.5: one timestamp for the event, growing duration,
                        // the end packet sent three times.
                        let code = event_code(key);
                        for i in 0..frames + 3 {
                            let end = i >= frames - 1;
                            let duration = (160 * (i.min(frames - 1) + 1)) as u16;
                            let payload = [
                                code,
                                if end { 0x80 } else { 0 } | 10,
                                (duration >> 8) as u8,
                                duration as u8,
                            ];
                            packet(101, i == 0, ts, seq, &payload);
                            seq = seq.wrapping_add(1);
                            next += Duration::from_millis(20);
                            thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                        ts = ts.wrapping_add(160 * frames as u32);
                    }
                    Some(Keying::Tone(key)) => {
                        let (lo, hi) = tone_pair(key);
                        for _ in 0..frames {
                            let mut frame = [0u8; 160];
                            for (n, b) in frame.iter_mut().enumerate() {
                                let t = phase + n as f64 / 8000.0;
                                let v = 7000.0 * (2.0 * std::f64::consts::PI * lo * t).sin()
                                    + 7000.0 * (2.0 * std::f64::consts::PI * hi * t).sin();
                                *b = linear_to_ulaw(v as i16);
                            }
                            phase += 160.0 / 8000.0;
                            packet(0, false, ts, seq, &frame);
                            (seq, ts) = (seq.wrapping_add(1), ts.wrapping_add(160));
                            next += Duration::from_millis(20);
                            thread::sleep(next.saturating_duration_since(Instant::now()));
                        }
                    }
                }
            }
        });
        RtpSender {
            keys: tx,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RtpSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One whole call: 3 (account services), the ID and `#`, the PIN, all by `method`; then
/// hang up once the PIN has had time to be checked.
fn call(engine: SocketAddr, method: Method, pin: &str) -> String {
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_addr = rtp.local_addr().unwrap();
    let (mut caller, media) = Caller::dial(engine, rtp_addr, method);
    let sender = RtpSender::start(rtp, media);
    // Keys pressed during the welcome are kept (type-ahead); give each collect its prompt.
    let steps: [(String, Duration); 3] = [
        ("3".into(), Duration::from_millis(1500)),
        (format!("{CUSTOMER_ID}#"), Duration::from_millis(1500)),
        (pin.to_string(), Duration::from_millis(4000)),
    ];
    for (keys, pause) in steps {
        thread::sleep(Duration::from_millis(700));
        for key in keys.chars() {
            match method {
                Method::Info => caller.info_key(key),
                Method::Rfc4733 => sender.keys.send(Keying::Event(key)).unwrap(),
                Method::Inband => sender.keys.send(Keying::Tone(key)).unwrap(),
            }
            if method == Method::Info {
                thread::sleep(Duration::from_millis(200));
            }
        }
        if method != Method::Info {
            // Each key takes 100 ms of key and 100 ms of gap on the RTP thread.
            thread::sleep(Duration::from_millis(200) * keys.len() as u32);
        }
        thread::sleep(pause);
    }
    drop(sender);
    caller.bye();
    caller.call_id.clone()
}

/// The call record of `call_id` from the records file (JSON lines), within 10 s.
fn record_of(data: &std::path::Path, call_id: &str) -> serde_json::Value {
    let path = data.join("call-records.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(f) = std::fs::File::open(&path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["call_id"] == call_id
                {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no record for {call_id} in {}",
            path.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pin_typed_three_ways_never_reaches_a_trace_log() {
    let pin = pin_of(CUSTOMER_ID);
    assert!(
        pin.len() == 4 && pin.chars().all(|c| c.is_ascii_digit()),
        "PIN {pin:?}"
    );
    let scratch = Scratch::new("pin-never-in-logs");
    let mut engine = EngineProcess::spawn(&scratch, &[("RUST_LOG", "trace")]);
    for method in [Method::Info, Method::Rfc4733, Method::Inband] {
        let call_id = call(engine.sip, method, &pin);
        let record = record_of(&engine.data, &call_id);
        let path: Vec<&str> = record["path"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            path.iter().any(|n| n.ends_with("account_menu")),
            "{method:?}: the PIN was not accepted, so it cannot have been tested: path {path:?}\n{record}"
        );
        // Keys outside a menu (and type-ahead) are kept as `x`: at most the menu choice
        // (3) shows, never a PIN key.
        let shown: String = record["digits"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["digit"].as_str())
            .collect();
        assert!(
            shown.len() == 1 + CUSTOMER_ID.len() + 1 + pin.len()
                && shown.chars().all(|c| c == 'x' || c == '3')
                && pin
                    .chars()
                    .filter(|&c| c != '3')
                    .all(|c| !shown.contains(c)),
            "{method:?}: record digits {shown:?}"
        );
    }
    let _ = engine.child.kill();
    let _ = engine.child.wait();
    let log = std::fs::read_to_string(&engine.log).unwrap();
    assert!(
        log.lines().count() > 100,
        "RUST_LOG=trace logged only {} lines: is the filter applied?",
        log.lines().count()
    );
    let key = pin.chars().next().unwrap();
    let leaks: Vec<&str> = log
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            l.contains(&pin)
                || l.contains(&pin.chars().map(|c| format!("{c},")).collect::<String>())
                || lower.contains(&format!("signal={key}"))
                || lower.contains(&format!("signal= {key}"))
                || lower.contains("dtmf-relay\r\n")
                || lower.contains(&format!("digit={key}"))
                || lower.contains(&format!("digit: {key}"))
                || lower.contains(&format!("digit(\"{key}\")"))
                || lower.contains(&format!("'{key}'"))
                || lower.contains(&format!("key={key}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the log shows the PIN ({} lines), e.g.:\n{}",
        leaks.len(),
        leaks
            .iter()
            .take(10)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // `engine` is dropped here: already killed.
    drop(scratch);
}
