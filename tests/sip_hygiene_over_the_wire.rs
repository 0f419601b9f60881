//! RFC 3261 hygiene seen from a plain UDP client against the running engine: a looping
//! INVITE (Max-Forwards 0) ends with 483 and takes no call, OPTIONS answers say what we
//! allow and support, and a BYE whose From-tag is not the caller's gets 481 while the
//! real call goes on (its own BYE still gets 200).

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_invite_gets_483_and_options_lists_allow_and_supported() {
    let engine = start_engine("sip-hygiene-483").await;
    let sip = engine.sip;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();

    let id = format!("loop-{}", std::process::id());
    sock.send_to(plain_invite(me, sip, &id, 0).as_bytes(), sip)
        .unwrap();
    let r = tokio::task::block_in_place(|| {
        final_response_to(&sock, &id, "INVITE", Duration::from_secs(5))
    });
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
    sock.send_to(plain_invite(me, sip, &id, 70).as_bytes(), sip)
        .unwrap();
    let ok = tokio::task::block_in_place(|| {
        final_response_to(&sock, &id, "INVITE", Duration::from_secs(5))
    });
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
        .send_to(
            plain_in_dialog("BYE", 2, fme, sip, &to, &id, "not-the-caller").as_bytes(),
            sip,
        )
        .unwrap();
    let r = tokio::task::block_in_place(|| {
        final_response_to(&forged, &id, "BYE", Duration::from_secs(5))
    });
    assert_eq!(r.status, 481, "forged BYE answered {}", r.status);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        engine.engine().shared().active_calls(),
        1,
        "the forged BYE ended the call"
    );

    sock.send_to(
        plain_in_dialog("BYE", 2, me, sip, &to, &id, &format!("c-{id}")).as_bytes(),
        sip,
    )
    .unwrap();
    let r = tokio::task::block_in_place(|| {
        final_response_to(&sock, &id, "BYE", Duration::from_secs(5))
    });
    assert_eq!(r.status, 200, "the caller's own BYE answered {}", r.status);
    engine.shutdown().await;
}
