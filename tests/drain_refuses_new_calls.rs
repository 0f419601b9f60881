//! Drain over real SIP: a call in progress keeps going, a new INVITE gets 503 with
//! Retry-After, and the drain is over when the first call hangs up.

mod common;

use common::*;
use phonetree::runtime::DrainEnd;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn invite(me: SocketAddr, engine: SocketAddr, call_id: &str) -> String {
    format!(
        "INVITE sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551234567@{me}>;tag=c-{call_id}\r\nTo: <sip:ivr@{engine}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

/// The first final response for `call_id`, within 5 s.
fn final_response(sock: &UdpSocket, call_id: &str) -> SipResponse {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(r) = SipResponse::parse(&buf[..n])
            && r.header("call-id") == Some(call_id)
            && r.status >= 200
        {
            return r;
        }
    }
    panic!("no final response for {call_id}");
}

/// ACK or BYE in the dialog the 200 made.
fn in_dialog(
    method: &str,
    cseq: u32,
    me: SocketAddr,
    engine: SocketAddr,
    ok: &SipResponse,
    call_id: &str,
) -> String {
    let to = ok.header("to").unwrap();
    format!(
        "{method} sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551234567@{me}>;tag=c-{call_id}\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_invites_and_ends_with_the_last_call() {
    let engine = start_engine("drain").await;
    let sip = engine.sip;
    let shared = engine.engine().shared().clone();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();

    let a = format!("drain-a-{}", std::process::id());
    sock.send_to(invite(me, sip, &a).as_bytes(), sip).unwrap();
    let ok = tokio::task::block_in_place(|| final_response(&sock, &a));
    assert_eq!(ok.status, 200);
    sock.send_to(in_dialog("ACK", 1, me, sip, &ok, &a).as_bytes(), sip)
        .unwrap();

    shared.start_drain(Instant::now(), Duration::from_secs(60));
    let b = format!("drain-b-{}", std::process::id());
    sock.send_to(invite(me, sip, &b).as_bytes(), sip).unwrap();
    let refused = tokio::task::block_in_place(|| final_response(&sock, &b));
    assert_eq!(refused.status, 503);
    assert!(
        refused.header("retry-after").is_some(),
        "{:?}",
        refused.headers
    );

    // Call A is still up: the drain is not over.
    let early = tokio::time::timeout(Duration::from_millis(500), shared.drained()).await;
    assert!(early.is_err(), "drain ended with a call in progress");
    assert_eq!(shared.active_calls(), 1);

    sock.send_to(in_dialog("BYE", 2, me, sip, &ok, &a).as_bytes(), sip)
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), shared.drained())
        .await
        .expect("drain over once the last call ended");
    assert_eq!(end, DrainEnd::Idle);

    let metrics = shared.metrics.render(&Default::default());
    assert!(
        metrics.contains("phonetree_sip_responses_total{code=\"503\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phonetree_sip_requests_total{method=\"INVITE\"} 2"),
        "{metrics}"
    );
    engine.shutdown().await;
}
