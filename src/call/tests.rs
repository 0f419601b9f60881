//! Whole calls on a fake clock: no sockets, no sleeping. Each test drives `Call` with SIP
//! inputs and time, and reads what it would send.

use super::*;
use crate::catalog::Catalog;
use crate::flow::{self, Source};
use crate::media::prompt::PromptSet;
use crate::media::rtp;
use std::net::SocketAddr;

/// Dialog and media hygiene: who may end, change or feed a call.
mod hygiene;

const FLOW: &str = r#"
routes:
  - number: ivr
    flow: main
flows:
  main:
    language: en
    start: welcome
    nodes:
      welcome:
        play: [welcome]
        next: menu
      menu:
        menu:
          prompt: [main-menu]
          timeout: 1s
          retries: 2
          invalid: [invalid]
          no_input: [no-input]
          options:
            "1": hours
          max_failures: goodbye
      hours: { play: [hours], next: menu }
      goodbye: { play: [goodbye], next: end }
      end: { hangup: {} }
"#;

fn tone(freq: f32, ms: usize) -> Vec<i16> {
    (0..ms * 8)
        .map(|n| ((n as f32 * freq * std::f32::consts::TAU / 8000.0).sin() * 8000.0) as i16)
        .collect()
}

fn catalog() -> Arc<Catalog> {
    let names = [
        ("welcome", 300.0, 200),
        ("main-menu", 500.0, 300),
        ("invalid", 700.0, 100),
        ("no-input", 900.0, 100),
        ("hours", 1100.0, 400),
        ("goodbye", 1300.0, 100),
    ];
    let prompts = PromptSet::from_prompts(
        names
            .iter()
            .map(|(n, f, ms)| (format!("en/{n}"), tone(*f, *ms)))
            .collect(),
    );
    let sources = vec![Source {
        path: "flows/t.yaml".into(),
        text: FLOW.to_string(),
    }];
    let (flows, warnings) = match flow::compile(&sources, &prompts, 7) {
        Ok(x) => x,
        Err(e) => panic!("test flow must compile: {e:?}"),
    };
    Arc::new(Catalog {
        version: 7,
        flows: Arc::new(flows),
        prompts: Arc::new(prompts),
        warnings,
    })
}

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";
const CALLER_RTP: &str = "127.0.0.1:40000";

fn request(method: &str, cseq: u32, to_tag: Option<&str>, extra: &str, body: &str) -> Request {
    let to = match to_tag {
        Some(t) => format!("<sip:ivr@127.0.0.1>;tag={t}"),
        None => "<sip:ivr@127.0.0.1>".to_string(),
    };
    let text = format!(
        "{method} sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{cseq}{method}\r\nFrom: <sip:alice@127.0.0.1>;tag=caller\r\nTo: {to}\r\nCall-ID: test-call\r\nCSeq: {cseq} {method}\r\nContact: <sip:alice@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Request::try_from(text.as_str()).expect("test request parses")
}

fn invite(sdp: Option<&str>) -> Request {
    match sdp {
        Some(s) => request("INVITE", 1, None, "Content-Type: application/sdp\r\n", s),
        None => request("INVITE", 1, None, "", ""),
    }
}

fn start(now: Instant, req: Request, settings: CallSettings) -> Call {
    let (tx, _rx) = ServerTx::detached(req);
    Call::new(
        now,
        NewCall {
            id: 1,
            invite: tx,
            local_tag: "ourtag".into(),
            contact: "<sip:ivr@127.0.0.1:5060>".into(),
            media_ip: "127.0.0.1".parse().unwrap(),
            media_port: 20000,
            transport: "udp",
            catalog: catalog(),
            started_unix_ms: 0,
            random: 0x1234_5678_9abc_def0,
            sip_local: "127.0.0.1:5060".parse().unwrap(),
            announce: None,
        },
        settings,
    )
}

/// Drains responses/requests the call wants sent, as (status or method) strings.
fn sip_out(call: &mut Call) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(o) = call.poll_sip() {
        out.push(match o {
            SipOut::Respond { response, .. } => response.status_code.code().to_string(),
            SipOut::Request { request, .. } => request.method.to_string(),
            SipOut::Invite { request, .. } => request.method.to_string(),
            SipOut::Cancel { .. } => "CANCEL".to_string(),
        });
    }
    out
}

fn ok_body(call: &mut Call) -> String {
    while let Some(o) = call.poll_sip() {
        if let SipOut::Respond { response, .. } = o {
            if response.status_code.code() == 200 {
                return String::from_utf8_lossy(&response.body).into_owned();
            }
        }
    }
    panic!("no 200 OK");
}

/// Runs the call for `ms` of fake time in 20 ms steps, returning every RTP packet sent.
fn run_for(call: &mut Call, now: &mut Instant, ms: u64) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut sent = Vec::new();
    let end = *now + Duration::from_millis(ms);
    let mut buf = Vec::new();
    while *now < end {
        *now += Duration::from_millis(20);
        if call.poll_timeout().is_some_and(|t| t <= *now) {
            call.handle_timeout(*now);
        }
        while let Some((_, dest)) = call.poll_transmit(*now, &mut buf) {
            sent.push((dest, buf.clone()));
        }
    }
    sent
}

/// Which test prompt a payload is a frame of (they are distinct tones).
fn prompt_of(cat: &Catalog, payload: &[u8]) -> Option<String> {
    for name in [
        "welcome",
        "main-menu",
        "invalid",
        "no-input",
        "hours",
        "goodbye",
    ] {
        let id = cat.prompts.lookup(&format!("en/{name}"))?;
        let p = cat.prompts.get(id)?;
        if (0..p.frame_count()).any(|i| p.frame(Codec::Pcmu, i) == Some(payload)) {
            return Some(name.to_string());
        }
    }
    None
}

fn heard(sent: &[(SocketAddr, Vec<u8>)]) -> Vec<String> {
    let cat = catalog();
    let mut out: Vec<String> = Vec::new();
    for (_, pkt) in sent {
        let p = rtp::parse(pkt).expect("we send valid RTP");
        if let Some(name) = prompt_of(&cat, p.payload) {
            if out.last() != Some(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn long_rtp_timeout() -> CallSettings {
    CallSettings {
        rtp_timeout: Duration::from_secs(3600),
        ..CallSettings::default()
    }
}

/// A call answered with the standard offer and ACKed at `now`, its 200 OK already drained.
fn answered(now: Instant) -> Call {
    let mut call = start(now, invite(Some(OFFER)), long_rtp_timeout());
    sip_out(&mut call);
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    call
}

#[test]
fn invite_with_offer_is_answered_with_pcmu_and_echoed_telephone_event() {
    let t0 = Instant::now();
    let mut call = start(t0, invite(Some(OFFER)), CallSettings::default());
    let body = ok_body(&mut call);
    assert!(body.contains("m=audio 20000 RTP/AVP 0 101"), "{body}");
    assert!(body.contains("telephone-event/8000"), "{body}");
    assert!(body.contains("c=IN IP4 127.0.0.1"), "{body}");
}

#[test]
fn prompt_starts_on_ack_with_marker_bit_to_the_offered_address() {
    let mut now = Instant::now();
    let mut call = start(now, invite(Some(OFFER)), long_rtp_timeout());
    sip_out(&mut call);
    assert!(
        run_for(&mut call, &mut now, 100).is_empty(),
        "no media before the ACK"
    );
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    let sent = run_for(&mut call, &mut now, 100);
    assert!(
        sent.len() >= 4,
        "about 5 packets in 100 ms, got {}",
        sent.len()
    );
    assert_eq!(sent[0].0, CALLER_RTP.parse::<SocketAddr>().unwrap());
    let first = rtp::parse(&sent[0].1).unwrap();
    assert!(first.marker);
    assert_eq!(first.payload_type, 0);
    assert_eq!(heard(&sent), vec!["welcome"]);
}

#[test]
fn info_digit_barges_in_and_takes_the_branch() {
    let mut now = Instant::now();
    let mut call = answered(now);
    let before = run_for(&mut call, &mut now, 300);
    let info = request(
        "INFO",
        2,
        Some("ourtag"),
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=1\r\nDuration=160\r\n",
    );
    let (tx, _rx) = ServerTx::detached(info);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    assert_eq!(sip_out(&mut call), vec!["200"]);
    let after = run_for(&mut call, &mut now, 200);
    assert_eq!(heard(&before), vec!["welcome", "main-menu"]);
    let first_after = rtp::parse(&after[0].1).unwrap();
    assert_eq!(
        prompt_of(&catalog(), first_after.payload).as_deref(),
        Some("hours"),
        "barge-in within one packet"
    );
    let bye = request("BYE", 3, Some("ourtag"), "", "");
    let (tx, _rx) = ServerTx::detached(bye);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    assert_eq!(sip_out(&mut call), vec!["200"]);
    let rec = call.poll_record().expect("one record");
    assert_eq!(rec.outcome, Outcome::CallerHangup);
    assert_eq!(rec.digits.len(), 1);
    assert_eq!(rec.digits[0].digit, '1');
    assert_eq!(rec.digits[0].source, "info");
    assert!(rec.path.iter().any(|p| p == "hours"), "{:?}", rec.path);
    assert_eq!(rec.flow_version, 7);
    assert!(call.is_ended());
    assert!(call.poll_record().is_none(), "a record is given once");
}

#[test]
fn silent_caller_gets_retries_then_goodbye_and_bye() {
    let mut now = Instant::now();
    let mut call = answered(now);
    let sent = run_for(&mut call, &mut now, 10_000);
    assert_eq!(
        heard(&sent),
        vec![
            "welcome",
            "main-menu",
            "no-input",
            "main-menu",
            "no-input",
            "goodbye"
        ]
    );
    assert_eq!(sip_out(&mut call), vec!["BYE"]);
    let rec = call.poll_record().unwrap();
    assert_eq!(rec.outcome, Outcome::EngineHangup);
}

#[test]
fn caller_without_rtp_is_hung_up_after_rtp_timeout() {
    let mut now = Instant::now();
    let settings = CallSettings {
        rtp_timeout: Duration::from_secs(2),
        ..CallSettings::default()
    };
    let mut call = start(now, invite(Some(OFFER)), settings);
    sip_out(&mut call);
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    run_for(&mut call, &mut now, 1500);
    assert!(!call.is_ended());
    run_for(&mut call, &mut now, 1000);
    assert_eq!(sip_out(&mut call), vec!["BYE"]);
    assert_eq!(call.poll_record().unwrap().outcome, Outcome::RtpTimeout);
}

#[test]
fn cancel_while_ringing_gets_487() {
    let now = Instant::now();
    let settings = CallSettings {
        answer_delay: Duration::from_secs(2),
        ..CallSettings::default()
    };
    let mut call = start(now, invite(Some(OFFER)), settings);
    assert_eq!(sip_out(&mut call), vec!["180"]);
    call.handle_sip(now + Duration::from_millis(500), SipIn::Cancel);
    assert_eq!(sip_out(&mut call), vec!["487"]);
    let rec = call.poll_record().unwrap();
    assert_eq!((rec.outcome, rec.status), (Outcome::Cancelled, 487));
}

#[test]
fn ringing_call_is_answered_after_the_delay() {
    let mut now = Instant::now();
    let settings = CallSettings {
        answer_delay: Duration::from_millis(500),
        ..CallSettings::default()
    };
    let mut call = start(now, invite(Some(OFFER)), settings);
    assert_eq!(sip_out(&mut call), vec!["180"]);
    run_for(&mut call, &mut now, 400);
    assert!(sip_out(&mut call).is_empty());
    run_for(&mut call, &mut now, 200);
    assert_eq!(sip_out(&mut call), vec!["200"]);
}

#[test]
fn late_offer_is_made_in_200_and_answered_in_ack() {
    let mut now = Instant::now();
    let mut call = start(now, invite(None), long_rtp_timeout());
    let offer = ok_body(&mut call);
    assert!(offer.contains("m=audio 20000 RTP/AVP"), "{offer}");
    let answer = OFFER.replace("40000", "40002");
    call.handle_sip(
        now,
        SipIn::Ack {
            cseq: 1,
            sdp: Some(answer.into_bytes()),
        },
    );
    let sent = run_for(&mut call, &mut now, 60);
    assert_eq!(sent[0].0, "127.0.0.1:40002".parse::<SocketAddr>().unwrap());
}

#[test]
fn late_offer_without_answer_in_ack_ends_with_bye() {
    let now = Instant::now();
    let mut call = start(now, invite(None), long_rtp_timeout());
    sip_out(&mut call);
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    assert_eq!(sip_out(&mut call), vec!["BYE"]);
    assert_eq!(call.poll_record().unwrap().outcome, Outcome::MediaFailed);
}

#[test]
fn offer_without_g711_gets_488() {
    let g729 = OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:18 G729/8000\r\n");
    let mut call = start(Instant::now(), invite(Some(&g729)), CallSettings::default());
    assert_eq!(sip_out(&mut call), vec!["488"]);
    assert_eq!(call.poll_record().unwrap().outcome, Outcome::Rejected);
}

#[test]
fn number_without_route_gets_404() {
    let req = Request::try_from(
        "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:nobody@127.0.0.1>\r\nCall-ID: n\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let mut call = start(Instant::now(), req, CallSettings::default());
    assert_eq!(sip_out(&mut call), vec!["404"]);
}

#[test]
fn missing_ack_ends_call_with_bye() {
    let now = Instant::now();
    let mut call = start(now, invite(Some(OFFER)), CallSettings::default());
    sip_out(&mut call);
    call.handle_sip(now + Duration::from_secs(32), SipIn::InviteTransactionEnded);
    assert_eq!(sip_out(&mut call), vec!["BYE"]);
    assert_eq!(call.poll_record().unwrap().outcome, Outcome::NoAck);
}

#[test]
fn reinvite_to_hold_is_answered_recvonly_and_stops_media() {
    let mut now = Instant::now();
    let mut call = answered(now);
    run_for(&mut call, &mut now, 100);
    let hold = OFFER.replace("a=sendrecv", "a=sendonly");
    let re = request(
        "INVITE",
        2,
        Some("ourtag"),
        "Content-Type: application/sdp\r\n",
        &hold,
    );
    let (tx, _rx) = ServerTx::detached(re);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    let body = ok_body(&mut call);
    assert!(body.contains("a=recvonly"), "{body}");
    assert!(
        body.contains("o=- ") || body.contains(" 2 IN IP4"),
        "session version moves: {body}"
    );
    call.handle_sip(now, SipIn::Ack { cseq: 2, sdp: None });
    assert!(
        run_for(&mut call, &mut now, 200).is_empty(),
        "no RTP to a caller on hold (RFC 3264 §8.4)"
    );
    let unhold = request(
        "INVITE",
        3,
        Some("ourtag"),
        "Content-Type: application/sdp\r\n",
        OFFER,
    );
    let (tx, _rx) = ServerTx::detached(unhold);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    assert!(ok_body(&mut call).contains("a=sendrecv"));
    call.handle_sip(now, SipIn::Ack { cseq: 3, sdp: None });
    assert!(
        !run_for(&mut call, &mut now, 100).is_empty(),
        "media resumes after unhold"
    );
}

#[test]
fn reinvite_with_unusable_offer_gets_488_and_call_goes_on() {
    let mut now = Instant::now();
    let mut call = answered(now);
    let bad = request(
        "INVITE",
        2,
        Some("ourtag"),
        "Content-Type: application/sdp\r\n",
        "garbage",
    );
    let (tx, _rx) = ServerTx::detached(bad);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    assert_eq!(sip_out(&mut call), vec!["488"]);
    assert!(!run_for(&mut call, &mut now, 100).is_empty());
}

#[test]
fn request_with_old_cseq_gets_500() {
    let now = Instant::now();
    let mut call = answered(now);
    let info = request(
        "INFO",
        5,
        Some("ourtag"),
        "Content-Type: application/dtmf\r\n",
        "1",
    );
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(info).0,
        },
    );
    assert_eq!(sip_out(&mut call), vec!["200"]);
    let old = request(
        "INFO",
        4,
        Some("ourtag"),
        "Content-Type: application/dtmf\r\n",
        "2",
    );
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(old).0,
        },
    );
    assert_eq!(sip_out(&mut call), vec!["500"]);
}

#[test]
fn info_with_unknown_body_gets_415() {
    let now = Instant::now();
    let mut call = answered(now);
    let info = request(
        "INFO",
        2,
        Some("ourtag"),
        "Content-Type: application/x-foo\r\n",
        "hello",
    );
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(info).0,
        },
    );
    assert_eq!(sip_out(&mut call), vec!["415"]);
    assert!(!call.is_ended());
}

#[test]
fn shutdown_says_bye_to_answered_calls() {
    let now = Instant::now();
    let mut call = answered(now);
    call.handle_shutdown(now);
    assert_eq!(sip_out(&mut call), vec!["BYE"]);
    assert_eq!(call.poll_record().unwrap().outcome, Outcome::Shutdown);
}

#[test]
fn rfc4733_digit_from_caller_rtp_is_recorded_with_its_source() {
    let mut now = Instant::now();
    let mut call = answered(now);
    run_for(&mut call, &mut now, 300);
    let from: SocketAddr = CALLER_RTP.parse().unwrap();
    for (i, (marker, end)) in [(true, false), (false, false), (false, true), (false, true)]
        .iter()
        .enumerate()
    {
        let mut pkt = Vec::new();
        let duration: u16 = 160 * (i as u16 + 1);
        let payload = [
            1u8,
            if *end { 0x8a } else { 0x0a },
            (duration >> 8) as u8,
            duration as u8,
        ];
        rtp::write(
            &mut pkt,
            *marker,
            101,
            100 + i as u16,
            8000,
            0xabcd,
            &payload,
        );
        call.handle_rtp(now, LegId::Caller, from, &mut pkt.clone());
    }
    let after = run_for(&mut call, &mut now, 100);
    assert_eq!(heard(&after).first().map(String::as_str), Some("hours"));
    call.handle_shutdown(now);
    let rec = call.poll_record().unwrap();
    assert_eq!(
        rec.digits
            .iter()
            .map(|d| (d.digit, d.source.as_str()))
            .collect::<Vec<_>>(),
        vec![('1', "rfc4733")]
    );
}

#[test]
fn call_offered_on_hold_from_the_start_gets_no_media() {
    let mut now = Instant::now();
    let held = OFFER.replace("a=sendrecv", "a=inactive");
    let mut call = start(now, invite(Some(&held)), long_rtp_timeout());
    assert!(ok_body(&mut call).contains("a=inactive"));
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    assert!(
        run_for(&mut call, &mut now, 200).is_empty(),
        "RFC 3264 §6.1: inactive means no RTP"
    );
}

#[test]
fn keys_outside_menus_are_masked_in_the_record() {
    let mut now = Instant::now();
    let mut call = answered(now);
    // During the welcome `play` (not a menu) a key could be a PIN typed ahead.
    let info = request(
        "INFO",
        2,
        Some("ourtag"),
        "Content-Type: application/dtmf\r\n",
        "7",
    );
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(info).0,
        },
    );
    run_for(&mut call, &mut now, 400);
    // At the menu, the choice is navigation and stays visible.
    let info = request(
        "INFO",
        3,
        Some("ourtag"),
        "Content-Type: application/dtmf\r\n",
        "1",
    );
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(info).0,
        },
    );
    call.handle_shutdown(now);
    let rec = call.poll_record().unwrap();
    let keys: Vec<char> = rec.digits.iter().map(|d| d.digit).collect();
    assert_eq!(keys, vec!['x', '1']);
    assert!(!serde_json::to_string(&rec).unwrap().contains("\"7\""));
}

// ---- Two legs: a queued caller, an agent leg, the bridge -------------------------------

const QUEUE_FLOW: &str = r#"
routes:
  - number: ivr
    flow: main
flows:
  main:
    language: en
    start: wait
    nodes:
      wait:
        queue:
          name: support
          on: { overflow: bye, no_agents: bye }
      bye: { hangup: {} }
"#;

/// The demo prompts (hold music, queue announcements, whisper) with a queue-only flow.
fn queue_catalog() -> Arc<Catalog> {
    let prompts =
        PromptSet::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"))
            .expect("demo prompts load");
    let sources = vec![Source {
        path: "flows/q.yaml".into(),
        text: QUEUE_FLOW.to_string(),
    }];
    let (flows, warnings) = match flow::compile(&sources, &prompts, 3) {
        Ok(x) => x,
        Err(e) => panic!("queue flow must compile: {e:?}"),
    };
    Arc::new(Catalog {
        version: 3,
        flows: Arc::new(flows),
        prompts: Arc::new(prompts),
        warnings,
    })
}

const AGENT_RTP: &str = "127.0.0.1:41000";

fn queued_call(now: Instant) -> Call {
    let (tx, _rx) = ServerTx::detached(invite(Some(OFFER)));
    let mut call = Call::new(
        now,
        NewCall {
            id: 9,
            invite: tx,
            local_tag: "ourtag".into(),
            contact: "<sip:ivr@127.0.0.1:5060>".into(),
            media_ip: "127.0.0.1".parse().unwrap(),
            media_port: 20000,
            transport: "udp",
            catalog: queue_catalog(),
            started_unix_ms: 0,
            random: 0x0bad_cafe_f00d_1234,
            sip_local: "127.0.0.1:5060".parse().unwrap(),
            announce: None,
        },
        long_rtp_timeout(),
    );
    sip_out(&mut call);
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    call
}

fn agent_offer() -> Offer {
    Offer {
        agent: "agent1001".into(),
        queue: "support".into(),
        ring_timeout: Duration::from_secs(15),
        request_uri: "sip:1001@127.0.0.1:5099".into(),
        destination: "127.0.0.1:5099".parse().unwrap(),
        waited: Duration::from_secs(42),
    }
}

/// Runs the call until it asks to join the queue, and tells it it joined.
fn join(call: &mut Call, now: &mut Instant) {
    for _ in 0..100 {
        run_for(call, now, 20);
        if let Some(out) = call.poll_acd() {
            assert!(
                matches!(&out, AcdOut::Enqueue { queue, .. } if queue == "support"),
                "{out:?}"
            );
            call.handle_acd(
                *now,
                AcdIn::Joined {
                    position: 1,
                    ewt: None,
                },
            );
            return;
        }
    }
    panic!("the call never asked to join the queue");
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

/// Rings the agent and answers: returns the INVITE text and the client transaction.
fn ring_and_answer(call: &mut Call, now: &mut Instant) -> (String, TxId) {
    call.handle_acd(*now, AcdIn::Offer(agent_offer()));
    assert!(call.awaiting_outbound_socket());
    call.handle_outbound_socket(*now, Some(20002));
    let (tx, invite) = loop {
        match call.poll_sip() {
            Some(SipOut::Invite {
                tx,
                request,
                destination,
                ..
            }) => {
                assert_eq!(destination, Some("127.0.0.1:5099".parse().unwrap()));
                break (tx, request.to_string());
            }
            Some(_) => continue,
            None => panic!("no INVITE to the agent"),
        }
    };
    let field = |n: &str| header(&invite, n).unwrap_or_default().to_string();
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=agenttag\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        field("Via"),
        field("From"),
        field("To"),
        field("Call-ID"),
        field("CSeq")
    );
    call.handle_sip(
        *now,
        SipIn::Response {
            tx,
            response: Response::try_from(ringing.as_str()).unwrap(),
        },
    );
    run_for(call, now, 500);
    let sdp = "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=agenttag\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:1001@127.0.0.1:5099>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        field("Via"),
        field("From"),
        field("To"),
        field("Call-ID"),
        field("CSeq"),
        sdp.len()
    );
    call.handle_sip(
        *now,
        SipIn::Response {
            tx,
            response: Response::try_from(ok.as_str()).unwrap(),
        },
    );
    (invite, tx)
}

/// What the call wants sent, naming the leg of each request: `respond 200`, `Caller BYE`.
fn sip_out_with_legs(call: &mut Call) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(o) = call.poll_sip() {
        out.push(match o {
            SipOut::Respond { response, .. } => format!("respond {}", response.status_code.code()),
            SipOut::Request { leg, request, .. } => format!("{:?} {}", leg, request.method),
            other => format!("{other:?}"),
        });
    }
    out
}

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt, (seq >> 8) as u8, seq as u8];
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn queued_caller_is_bridged_to_the_agent_and_audio_flows_both_ways() {
    let mut now = Instant::now();
    let mut call = queued_call(now);
    join(&mut call, &mut now);
    let (invite, _tx) = ring_and_answer(&mut call, &mut now);
    // The screen pop: queue and wait so far travel in the INVITE.
    assert_eq!(header(&invite, "X-Phonetree-Queue"), Some("support"));
    assert_eq!(header(&invite, "X-Phonetree-Wait"), Some("42"));
    assert!(
        invite.contains("m=audio 20002 RTP/AVP 0"),
        "caller's codec offered first: {invite}"
    );
    assert!(matches!(
        call.poll_acd(),
        Some(AcdOut::OfferResult {
            result: OfferResult::Answered,
            ..
        })
    ));
    // The whisper plays to the agent while the caller keeps hearing music; then the bridge.
    let mut whisper = Vec::new();
    let mut t = 0;
    while !call.is_bridged() && t < 10_000 {
        let mut buf = Vec::new();
        now += Duration::from_millis(20);
        t += 20;
        if call.poll_timeout().is_some_and(|d| d <= now) {
            call.handle_timeout(now);
        }
        while let Some((leg, dest)) = call.poll_transmit(now, &mut buf) {
            if leg == LegId::Outbound {
                assert_eq!(dest, AGENT_RTP.parse::<SocketAddr>().unwrap());
                whisper.push(buf.clone());
            }
        }
    }
    assert!(call.is_bridged(), "bridged after the whisper");
    assert!(!whisper.is_empty(), "the agent heard the whisper");
    assert_eq!(
        rtp::parse(&whisper[0]).unwrap().payload_type,
        8,
        "whisper in the agent's PCMA"
    );

    // Caller → agent: PCMU in, PCMA out, to the agent's address, in the same call.
    let caller_from: SocketAddr = CALLER_RTP.parse().unwrap();
    let agent_from: SocketAddr = AGENT_RTP.parse().unwrap();
    let voice = [0x10u8; 160];
    let mut pkt = rtp_packet(0, 100, 16000, 0xCA11E7, &voice);
    let dest = call.handle_rtp(now, LegId::Caller, caller_from, &mut pkt);
    assert_eq!(dest, Some(agent_from));
    let relayed = rtp::parse(&pkt).unwrap();
    assert_eq!(relayed.payload_type, 8, "transcoded to the agent's PCMA");
    let whisper_ssrc = rtp::parse(&whisper[0]).unwrap().ssrc;
    assert_eq!(
        relayed.ssrc, whisper_ssrc,
        "one stream towards the agent: whisper, then voice"
    );
    // Agent → caller: PCMA in, PCMU out.
    let mut back = rtp_packet(8, 7, 800, 0xA6E47, &[0xd5u8; 160]);
    let dest = call.handle_rtp(now, LegId::Outbound, agent_from, &mut back);
    assert_eq!(dest, Some(caller_from));
    assert_eq!(rtp::parse(&back).unwrap().payload_type, 0);

    // The agent hangs up: 200 to the agent, BYE to the caller, the agent goes to wrap-up.
    let bye = format!(
        "BYE sip:phonetree@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKagentbye\r\nFrom: {};tag=agenttag\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "To").unwrap(),
        header(&invite, "From").unwrap(),
        header(&invite, "Call-ID").unwrap()
    );
    let (tx, _rx) = ServerTx::detached(Request::try_from(bye.as_str()).unwrap());
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Outbound,
            tx,
        },
    );
    let out = sip_out_with_legs(&mut call);
    assert_eq!(out, vec!["respond 200", "Caller BYE"]);
    assert!(matches!(
        call.poll_acd(),
        Some(AcdOut::BridgeEnded { call: 9 })
    ));
}

#[test]
fn caller_hangs_up_while_the_agent_rings_and_the_agent_gets_cancel() {
    let mut now = Instant::now();
    let mut call = queued_call(now);
    join(&mut call, &mut now);
    call.handle_acd(now, AcdIn::Offer(agent_offer()));
    call.handle_outbound_socket(now, Some(20002));
    assert!(matches!(call.poll_sip(), Some(SipOut::Invite { .. })));
    let bye = request("BYE", 2, Some("ourtag"), "", "");
    let (tx, _rx) = ServerTx::detached(bye);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    let out = sip_out(&mut call);
    assert!(out.contains(&"200".to_string()), "{out:?}");
    assert!(
        out.contains(&"CANCEL".to_string()),
        "the agent's INVITE is CANCELled: {out:?}"
    );
    // The ACD hears the caller left (no offer result: the Leave frees the agent).
    let acd: Vec<_> = std::iter::from_fn(|| call.poll_acd()).collect();
    assert!(
        acd.iter().any(|a| matches!(
            a,
            AcdOut::Leave {
                call: 9,
                keep_place: false
            }
        )),
        "{acd:?}"
    );
}

#[test]
fn agent_no_answer_within_ring_timeout_is_cancelled_and_reported() {
    let mut now = Instant::now();
    let mut call = queued_call(now);
    join(&mut call, &mut now);
    call.handle_acd(now, AcdIn::Offer(agent_offer()));
    call.handle_outbound_socket(now, Some(20002));
    assert!(matches!(call.poll_sip(), Some(SipOut::Invite { .. })));
    run_for(&mut call, &mut now, 15_100);
    let out = sip_out(&mut call);
    assert!(out.contains(&"CANCEL".to_string()), "{out:?}");
    let acd: Vec<_> = std::iter::from_fn(|| call.poll_acd()).collect();
    assert!(
        acd.iter().any(|a| matches!(
            a,
            AcdOut::OfferResult {
                result: OfferResult::NoAnswer,
                ..
            }
        )),
        "{acd:?}"
    );
    assert!(
        !call.is_ended(),
        "the caller keeps waiting for the next agent"
    );
}

#[test]
fn summary_follows_the_call_from_ringing_to_the_menu_to_the_end() {
    let mut now = Instant::now();
    let settings = CallSettings {
        answer_delay: Duration::from_millis(200),
        rtp_timeout: Duration::from_secs(3600),
        ..CallSettings::default()
    };
    let mut call = start(now, invite(Some(OFFER)), settings);
    let s = call.summary(now);
    assert_eq!((s.id, s.state, s.flow.as_str()), (1, "ringing", "main"));
    assert_eq!(s.dialled, "ivr");
    assert_eq!(s.caller, "alice");
    assert_eq!(s.queue, None);
    run_for(&mut call, &mut now, 300);
    assert_eq!(call.summary(now).state, "answering");
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    run_for(&mut call, &mut now, 600);
    let s = call.summary(now);
    assert_eq!(s.state, "ivr");
    assert_eq!(s.node, "menu");
    assert!(s.duration_ms >= 900, "{}", s.duration_ms);
}

// ---- Callbacks: the engine dials the customer -------------------------------------------

fn callback_call(now: Instant) -> Call {
    Call::new_callback(
        now,
        NewCallback {
            id: (1 << 63) + 5,
            queue: "support".into(),
            number: "+15557654321".into(),
            request_uri: callback_dial_uri("sip:{number}@127.0.0.1:5098", "+15557654321"),
            caller_id: "support".into(),
            local_tag: "cbtag".into(),
            contact: "<sip:phonetree@127.0.0.1:5060>".into(),
            media_ip: "127.0.0.1".parse().unwrap(),
            media_port: 20010,
            catalog: queue_catalog(),
            started_unix_ms: 0,
            random: 0x1357_9bdf_2468_ace0,
            sip_local: "127.0.0.1:5060".parse().unwrap(),
        },
        long_rtp_timeout(),
    )
}

fn dial_invite(call: &mut Call) -> (TxId, String) {
    match call.poll_sip() {
        Some(SipOut::Invite {
            leg: LegId::Caller,
            tx,
            request,
            destination: None,
        }) => (tx, request.to_string()),
        other => panic!("expected the callback INVITE, got {other:?}"),
    }
}

fn answer_of(invite: &str, status: u16, sdp: Option<&str>) -> Response {
    let field = |n: &str| header(invite, n).unwrap_or_default().to_string();
    let body = sdp.unwrap_or("");
    let ctype = if sdp.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    let text = format!(
        "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=cust\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:cust@127.0.0.1:5098>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        field("Via"),
        field("From"),
        field("To"),
        field("Call-ID"),
        field("CSeq"),
        body.len()
    );
    Response::try_from(text.as_str()).unwrap()
}

const CUSTOMER_SDP: &str = "v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

#[test]
fn callback_dials_the_customer_then_waits_for_the_agent_with_music() {
    let mut now = Instant::now();
    let mut call = callback_call(now);
    let (tx, invite) = dial_invite(&mut call);
    assert!(
        invite.starts_with("INVITE sip:+15557654321@127.0.0.1:5098 SIP/2.0"),
        "{invite}"
    );
    assert!(invite.contains("X-Phonetree-Callback: support"), "{invite}");
    assert!(invite.contains("m=audio 20010 RTP/AVP"), "{invite}");
    call.handle_sip(
        now,
        SipIn::Response {
            tx,
            response: answer_of(&invite, 180, None),
        },
    );
    assert!(call.poll_acd().is_none(), "ringing is not an answer");
    call.handle_sip(
        now,
        SipIn::Response {
            tx,
            response: answer_of(&invite, 200, Some(CUSTOMER_SDP)),
        },
    );
    let id = (1u64 << 63) + 5;
    assert_eq!(
        call.poll_acd(),
        Some(AcdOut::CallbackDialed {
            callback: id,
            reached: true
        })
    );
    // The customer hears the greeting, then music, at the address of their SDP.
    let sent = run_for(&mut call, &mut now, 500);
    assert!(!sent.is_empty());
    assert!(
        sent.iter()
            .all(|(d, _)| *d == "127.0.0.1:42000".parse::<SocketAddr>().unwrap())
    );
    // The agent's offer is taken like any queued caller's.
    call.handle_acd(now, AcdIn::Offer(agent_offer()));
    assert!(
        call.awaiting_outbound_socket(),
        "the callback rings the agent"
    );
    call.handle_outbound_socket(now, Some(20012));
    assert!(matches!(
        call.poll_sip(),
        Some(SipOut::Invite {
            leg: LegId::Outbound,
            ..
        })
    ));
}

#[test]
fn callback_busy_is_reported_unreached_and_ends() {
    let now = Instant::now();
    let mut call = callback_call(now);
    let (tx, invite) = dial_invite(&mut call);
    call.handle_sip(
        now,
        SipIn::Response {
            tx,
            response: answer_of(&invite, 486, None),
        },
    );
    assert!(matches!(
        call.poll_acd(),
        Some(AcdOut::CallbackDialed { reached: false, .. })
    ));
    assert!(call.is_ended());
    let record = call.poll_record().expect("a record");
    assert_eq!(record.outcome, Outcome::CallbackUnreached);
}

#[test]
fn callback_not_answered_in_time_is_cancelled() {
    let mut now = Instant::now();
    let mut call = callback_call(now);
    dial_invite(&mut call);
    run_for(&mut call, &mut now, 41_000);
    assert_eq!(sip_out(&mut call), vec!["CANCEL"]);
    assert!(matches!(
        call.poll_acd(),
        Some(AcdOut::CallbackDialed { reached: false, .. })
    ));
}

#[test]
fn caller_hangs_up_while_bridged_and_the_agent_gets_bye() {
    let mut now = Instant::now();
    let mut call = queued_call(now);
    join(&mut call, &mut now);
    ring_and_answer(&mut call, &mut now);
    let mut t = 0;
    while !call.is_bridged() && t < 10_000 {
        run_for(&mut call, &mut now, 20);
        t += 20;
    }
    assert!(call.is_bridged());
    std::iter::from_fn(|| call.poll_acd()).for_each(drop);
    sip_out(&mut call);
    let bye = request("BYE", 2, Some("ourtag"), "", "");
    let (tx, _rx) = ServerTx::detached(bye);
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx,
        },
    );
    let out = sip_out_with_legs(&mut call);
    assert_eq!(out, vec!["respond 200", "Outbound BYE"]);
    assert!(matches!(
        call.poll_acd(),
        Some(AcdOut::BridgeEnded { call: 9 })
    ));
    let record = call.poll_record().expect("record");
    assert_eq!(record.outcome, Outcome::CallerHangupBridged);
}

// ---- A survey's answer in the call record -----------------------------------------------

const SURVEY_FLOW: &str = r#"
routes:
  - number: ivr
    flow: main
flows:
  main:
    language: en
    start: rate
    nodes:
      rate:
        survey: { name: csat, prompt: [welcome], scale: 5, timeout: 1s, retries: 1 }
        next: goodbye
      goodbye: { play: [goodbye], next: end }
      end: { hangup: {} }
"#;

fn survey_call(now: Instant) -> Call {
    let prompts = PromptSet::from_prompts(vec![
        ("en/welcome".into(), tone(300.0, 200)),
        ("en/goodbye".into(), tone(1300.0, 100)),
    ]);
    let sources = vec![Source {
        path: "flows/s.yaml".into(),
        text: SURVEY_FLOW.to_string(),
    }];
    let (flows, warnings) = flow::compile(&sources, &prompts, 9).expect("survey flow compiles");
    let catalog = Arc::new(Catalog {
        version: 9,
        flows: Arc::new(flows),
        prompts: Arc::new(prompts),
        warnings,
    });
    let (tx, _rx) = ServerTx::detached(invite(Some(OFFER)));
    let mut call = Call::new(
        now,
        NewCall {
            id: 1,
            invite: tx,
            local_tag: "ourtag".into(),
            contact: "<sip:ivr@127.0.0.1:5060>".into(),
            media_ip: "127.0.0.1".parse().unwrap(),
            media_port: 20000,
            transport: "udp",
            catalog,
            started_unix_ms: 0,
            random: 0x1234_5678_9abc_def0,
            sip_local: "127.0.0.1:5060".parse().unwrap(),
            announce: None,
        },
        long_rtp_timeout(),
    );
    sip_out(&mut call);
    call.handle_sip(now, SipIn::Ack { cseq: 1, sdp: None });
    call
}

#[test]
fn survey_answer_is_kept_in_the_call_record() {
    let t0 = Instant::now();
    let mut now = t0;
    let mut call = survey_call(now);
    // The 200 ms prompt plays, then the survey listens.
    run_for(&mut call, &mut now, 400);
    let info = request(
        "INFO",
        2,
        Some("ourtag"),
        "Content-Type: application/dtmf\r\n",
        "4",
    );
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(info).0,
        },
    );
    let answered_at = now.saturating_duration_since(t0).as_millis() as u64;
    run_for(&mut call, &mut now, 400);
    let bye = request("BYE", 3, Some("ourtag"), "", "");
    call.handle_sip(
        now,
        SipIn::Request {
            leg: LegId::Caller,
            tx: ServerTx::detached(bye).0,
        },
    );
    let rec = call.poll_record().expect("one record");
    assert_eq!(
        rec.surveys,
        vec![SurveyRecord {
            survey: "csat".into(),
            scale: 5,
            score: Some(4),
            offered_at_ms: 0,
            answered_at_ms: Some(answered_at),
        }]
    );
    assert!(rec.path.iter().any(|p| p == "goodbye"), "{:?}", rec.path);
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["surveys"][0]["score"], 4);
    // The survey key is not a menu choice: masked with the other keys.
    assert_eq!(rec.digits[0].digit, 'x');
}

#[test]
fn survey_left_unanswered_is_recorded_without_a_score() {
    let mut now = Instant::now();
    let mut call = survey_call(now);
    // Prompt (200 ms), 1 s of silence with `retries: 1`, goodbye, BYE.
    run_for(&mut call, &mut now, 3_000);
    assert_eq!(sip_out(&mut call), vec!["BYE"]);
    let rec = call.poll_record().expect("one record");
    assert_eq!(rec.surveys.len(), 1);
    assert_eq!(
        (rec.surveys[0].score, rec.surveys[0].answered_at_ms),
        (None, None)
    );
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["surveys"][0]["score"], serde_json::Value::Null);
}

#[test]
fn record_without_survey_has_no_surveys_field() {
    let mut now = Instant::now();
    let mut call = answered(now);
    run_for(&mut call, &mut now, 100);
    call.handle_shutdown(now);
    let rec = call.poll_record().unwrap();
    let json = serde_json::to_value(&rec).unwrap();
    assert!(json.get("surveys").is_none(), "{json}");
}
