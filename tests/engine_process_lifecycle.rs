//! SIGTERM drains, as `systemctl stop` or `docker stop` expect: with a call in progress
//! the real binary refuses a new INVITE with 503 and Retry-After, lets the call go on
//! (it still answers in-dialog requests), and exits 0 by itself once the caller hangs up.
//! A second SIGTERM ends the calls at once (second test). And a second engine started on
//! the same data directory refuses to run, with a message saying why (third test).

mod common;

use common::*;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

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
    sock.send_to(plain_invite(me, engine.sip, &id, 70).as_bytes(), engine.sip)
        .unwrap();
    let ok = final_response_to(&sock, &id, "INVITE", Duration::from_secs(5));
    assert_eq!(ok.status, 200);
    let to = ok.header("to").unwrap().to_string();
    sock.send_to(
        plain_in_dialog("ACK", 1, me, engine.sip, &to, &id, &format!("c-{id}")).as_bytes(),
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
            plain_invite(other.local_addr().unwrap(), engine.sip, &b, 70).as_bytes(),
            engine.sip,
        )
        .unwrap();
    let refused = final_response_to(&other, &b, "INVITE", Duration::from_secs(5));
    assert_eq!(refused.status, 503, "a new INVITE while draining");
    assert!(
        refused.header("retry-after").is_some(),
        "503 without Retry-After"
    );

    // The call in progress still works: it answers OPTIONS in the dialog, and the caller
    // hangs up when they are done.
    std::thread::sleep(Duration::from_secs(1));
    sock.send_to(
        plain_in_dialog("OPTIONS", 2, me, engine.sip, &to, &id, &format!("c-{id}")).as_bytes(),
        engine.sip,
    )
    .unwrap();
    assert_eq!(
        final_response_to(&sock, &id, "OPTIONS", Duration::from_secs(5)).status,
        200
    );
    assert!(exit_within(&mut engine, Duration::from_millis(10)).is_none());
    sock.send_to(
        plain_in_dialog("BYE", 3, me, engine.sip, &to, &id, &format!("c-{id}")).as_bytes(),
        engine.sip,
    )
    .unwrap();
    assert_eq!(
        final_response_to(&sock, &id, "BYE", Duration::from_secs(5)).status,
        200
    );

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
