//! SIGTERM drains, as `systemctl stop` or `docker stop` expect: with a call in progress
//! the real binary refuses a new INVITE with 503 and Retry-After, lets the call go on
//! (it still answers in-dialog requests), and exits 0 by itself once the caller hangs up.
//! A second SIGTERM ends the calls at once (second test). And a second engine started on
//! the same data directory refuses to run, with a message saying why (third test).

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
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

fn in_dialog(
    method: &str,
    cseq: u32,
    me: SocketAddr,
    engine: SocketAddr,
    to: &str,
    id: &str,
) -> String {
    format!(
        "{method} sip:ivr@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}-{cseq}-{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15551234567@{me}>;tag=c-{id}\r\nTo: {to}\r\n\
         Call-ID: {id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

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

fn sigterm(engine: &EngineProcess) {
    let ok = Command::new("kill")
        .args(["-TERM", &engine.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Its exit status within `within`, or None while it still runs.
fn exit_within(engine: &mut EngineProcess, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = engine.child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A call answered and acknowledged: (socket, To with the engine's tag, Call-ID).
fn call_in_progress(engine: &EngineProcess, name: &str) -> (UdpSocket, String, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = sock.local_addr().unwrap();
    let id = format!("{name}-{}", std::process::id());
    sock.send_to(invite(me, engine.sip, &id).as_bytes(), engine.sip)
        .unwrap();
    let ok = final_response(&sock, &id, "INVITE");
    assert_eq!(ok.status, 200);
    let to = ok.header("to").unwrap().to_string();
    sock.send_to(
        in_dialog("ACK", 1, me, engine.sip, &to, &id).as_bytes(),
        engine.sip,
    )
    .unwrap();
    (sock, to, id)
}

#[test]
fn sigterm_refuses_new_calls_lets_the_call_finish_and_exits_0() {
    let scratch = Scratch::new("sigterm-drain");
    let mut engine = EngineProcess::spawn(&scratch, &[("RUST_LOG", "info")]);
    let (sock, to, id) = call_in_progress(&engine, "sigterm-a");
    let me = sock.local_addr().unwrap();
    std::thread::sleep(Duration::from_millis(500));

    sigterm(&engine);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        exit_within(&mut engine, Duration::from_millis(10)).is_none(),
        "SIGTERM ended the engine with a call in progress"
    );
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = format!("sigterm-b-{}", std::process::id());
    other
        .send_to(
            invite(other.local_addr().unwrap(), engine.sip, &b).as_bytes(),
            engine.sip,
        )
        .unwrap();
    let refused = final_response(&other, &b, "INVITE");
    assert_eq!(refused.status, 503, "a new INVITE while draining");
    assert!(
        refused.header("retry-after").is_some(),
        "503 without Retry-After"
    );

    // The call in progress still works: it answers OPTIONS in the dialog, and the caller
    // hangs up when they are done.
    std::thread::sleep(Duration::from_secs(1));
    sock.send_to(
        in_dialog("OPTIONS", 2, me, engine.sip, &to, &id).as_bytes(),
        engine.sip,
    )
    .unwrap();
    assert_eq!(final_response(&sock, &id, "OPTIONS").status, 200);
    assert!(exit_within(&mut engine, Duration::from_millis(10)).is_none());
    sock.send_to(
        in_dialog("BYE", 3, me, engine.sip, &to, &id).as_bytes(),
        engine.sip,
    )
    .unwrap();
    assert_eq!(final_response(&sock, &id, "BYE").status, 200);

    let status = exit_within(&mut engine, Duration::from_secs(10))
        .expect("the engine did not exit after its last call ended");
    let log = std::fs::read_to_string(&engine.log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("draining"), "{log}");
}

#[test]
fn second_sigterm_ends_the_calls_at_once() {
    let scratch = Scratch::new("sigterm-twice");
    let mut engine = EngineProcess::spawn(&scratch, &[("RUST_LOG", "info")]);
    let (sock, _to, id) = call_in_progress(&engine, "sigterm-twice");
    sigterm(&engine);
    std::thread::sleep(Duration::from_millis(300));
    assert!(exit_within(&mut engine, Duration::from_millis(10)).is_none());
    sigterm(&engine);
    // The engine hangs up on the caller on its way out.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    let mut bye = false;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < deadline && !bye {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            bye = text.starts_with("BYE ") && text.contains(&id);
        }
    }
    assert!(bye, "no BYE to the caller after the second SIGTERM");
    let status = exit_within(&mut engine, Duration::from_secs(10))
        .expect("the engine did not exit after the second SIGTERM");
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn second_engine_on_the_same_data_directory_exits_with_a_clear_message() {
    let scratch = Scratch::new("data-dir-lock");
    let _first = EngineProcess::spawn(&scratch, &[("RUST_LOG", "warn")]);
    // Same configuration (same data_dir), other SIP and HTTP ports, so only the data
    // directory is shared.
    let out = Command::new(env!("CARGO_BIN_EXE_phonetree"))
        .args(["serve", "--config"])
        .arg(scratch.file("phonetree.yaml"))
        .args(["--sip", &format!("127.0.0.1:{}", free_port())])
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .env_remove("PHONETREE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second engine ran: {stderr}");
    assert!(
        stderr.contains("another phonetree is running on the data directory"),
        "{stderr}"
    );
}
