//! RFC 3261 hygiene seen from a plain UDP client against the running engine: a looping
//! INVITE (Max-Forwards 0) ends with 483 and takes no call, OPTIONS answers say what we
//! allow and support, and a BYE whose From-tag is not the caller's gets 481 while the
//! real call goes on (its own BYE still gets 200).

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn invite(me: SocketAddr, engine: SocketAddr, call_id: &str, max_forwards: u32) -> String {
    format!(
        "INVITE sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: {max_forwards}\r\nFrom: <sip:+15551234567@{me}>;tag=c-{call_id}\r\nTo: <sip:ivr@{engine}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn bye(me: SocketAddr, engine: SocketAddr, call_id: &str, from_tag: &str, to: &str) -> String {
    format!(
        "BYE sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-bye-{from_tag}-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551234567@{me}>;tag={from_tag}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The first final response for `call_id` to `method`, within 5 s.
fn final_response(sock: &UdpSocket, call_id: &str, method: &str) -> SipResponse {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(r) = SipResponse::parse(&buf[..n])
            && r.header("call-id") == Some(call_id)
            && r.cseq().is_some_and(|(_, m)| m == method)
            && r.status >= 200
        {
            return r;
        }
    }
    panic!("no final response to {method} for {call_id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_invite_gets_483_and_options_lists_allow_and_supported() {
    let engine = start_engine("sip-hygiene-483").await;
    let sip = engine.sip;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();

    let id = format!("loop-{}", std::process::id());
    sock.send_to(invite(me, sip, &id, 0).as_bytes(), sip)
        .unwrap();
    let r = tokio::task::block_in_place(|| final_response(&sock, &id, "INVITE"));
    assert_eq!(r.status, 483, "Max-Forwards 0 answered {}", r.status);
    assert_eq!(engine.engine().shared().active_calls(), 0);

    let ok = tokio::task::block_in_place(|| options_ping(&sock, sip, "hygiene")).unwrap();
    assert_eq!(ok.status, 200);
    let allow = ok.header("allow").unwrap_or_default().to_ascii_uppercase();
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"] {
        assert!(allow.contains(m), "Allow: {allow:?} lacks {m}");
    }
    assert!(ok.header("supported").is_some(), "no Supported header");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bye_from_a_third_party_gets_481_and_the_call_goes_on() {
    let engine = start_engine("sip-hygiene-481").await;
    let sip = engine.sip;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let id = format!("bye481-{}", std::process::id());
    sock.send_to(invite(me, sip, &id, 70).as_bytes(), sip)
        .unwrap();
    let ok = tokio::task::block_in_place(|| final_response(&sock, &id, "INVITE"));
    assert_eq!(ok.status, 200);
    let allow = ok.header("allow").unwrap_or_default().to_ascii_uppercase();
    assert!(allow.contains("BYE"), "200 to INVITE: Allow {allow:?}");
    let to = ok.header("to").unwrap().to_string();
    let ack = format!(
        "ACK sip:ivr@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ack-{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551234567@{me}>;tag=c-{id}\r\nTo: {to}\r\n\
         Call-ID: {id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), sip).unwrap();

    // Someone who learnt the Call-ID but not the caller's tag.
    let forged = UdpSocket::bind("127.0.0.1:0").unwrap();
    let fme = forged.local_addr().unwrap();
    forged
        .send_to(bye(fme, sip, &id, "not-the-caller", &to).as_bytes(), sip)
        .unwrap();
    let r = tokio::task::block_in_place(|| final_response(&forged, &id, "BYE"));
    assert_eq!(r.status, 481, "forged BYE answered {}", r.status);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        engine.engine().shared().active_calls(),
        1,
        "the forged BYE ended the call"
    );

    sock.send_to(bye(me, sip, &id, &format!("c-{id}"), &to).as_bytes(), sip)
        .unwrap();
    let r = tokio::task::block_in_place(|| final_response(&sock, &id, "BYE"));
    assert_eq!(r.status, 200, "the caller's own BYE answered {}", r.status);
    engine.shutdown().await;
}
