//! A real softphone we did not write calls the IVR: **baresip** (Debian `baresip-core`),
//! headless. It dials `sip:ivr@<engine>`, negotiates G.711 and telephone-event from its own
//! SDP offer (`m=audio … RTP/AVP 0 8 101`), hears the welcome, sends the key 1 as an RFC 4733
//! event (its default DTMF mode) 3.5 s after the call is established, so the key barges into
//! the main menu, hears the opening hours and hangs up.
//!
//! baresip runs without any audio device: the microphone is `aufile` (a silent WAV), the
//! speaker is an `aubridge` device nothing reads, and the `sndfile` filter dumps what baresip
//! decoded to a WAV. It is driven over its `ctrl_tcp` interface (JSON in netstrings:
//! `dial`, `sndcode`, `hangup`, `quit`), whose events (`CALL_ESTABLISHED`, `CALL_CLOSED`)
//! pace the test and give the Call-ID. Everything listens on 127.0.0.1 only; no STUN, ICE or
//! registration (`regint=0`).
//!
//! Checked on the engine's RTP captured with tcpdump (decoded and matched against the prompt
//! WAVs), on the call record (digit 1 from `rfc4733`), and on the audio baresip itself decoded.

mod common;

use common::baresip::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Key sent after the call is established: the welcome (2.67 s) is over and the menu
/// has played for ~0.8 s.
const KEY_AFTER: Duration = Duration::from_millis(3500);
/// Listening after the key: the hours prompt is 3.81 s.
const LISTEN_AFTER_KEY: Duration = Duration::from_millis(4800);

/// A config for `baresip -f`: one local account that never registers.
fn write_baresip_config(dir: &Path, modules: &Path, ctrl_port: u16) {
    write_config(
        dir,
        modules,
        ctrl_port,
        None,
        "<sip:tester@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA",
    );
}

/// What one baresip call produced.
struct BaresipCall {
    call_id: String,
    said: Vec<(f64, Value)>,
    report: String,
}

/// baresip dials `target`, waits `KEY_AFTER`, sends 1 (RFC 4733), listens, hangs up, quits.
fn baresip_call(dir: &Path, target: &str) -> BaresipCall {
    let ctrl_port = free_port();
    write_baresip_config(dir, &baresip_module_dir(), ctrl_port);
    let mut b = Baresip::start(dir, ctrl_port);

    b.command("dial", target);
    b.expect_ok("dial");
    let established = b.expect_event("CALL_ESTABLISHED", Duration::from_secs(10));
    let call_id = established["id"]
        .as_str()
        .unwrap_or_else(|| panic!("CALL_ESTABLISHED without an id: {established}"))
        .to_string();
    b.stay_up(KEY_AFTER, "before the key was sent");
    b.command("sndcode", "1");
    b.expect_ok("sndcode");
    b.stay_up(LISTEN_AFTER_KEY, "while the caller listened after the key");
    b.command("hangup", "");
    b.expect_event("CALL_CLOSED", Duration::from_secs(5));
    b.quit();
    BaresipCall {
        call_id,
        said: b.said.clone(),
        report: b.report(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_calls_the_ivr() {
    self_check();
    // Fail (never skip) when baresip or its modules are missing, before anything starts.
    baresip_path();
    baresip_module_dir();

    let mut engine = start_engine("baresip").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let dir = engine.scratch.file("baresip");
    let target = format!("sip:ivr@{}", engine.sip);
    let call = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || baresip_call(&dir, &target)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    let record = engine
        .record_for(&call.call_id, Duration::from_secs(10))
        .await;
    let packets = capture.stop();

    // What the engine sent, captured on the wire.
    let (stream, heard) = engine_audio(&packets, engine.rtp_ports);
    assert!(
        stream.packets.iter().all(|(_, r)| r.pt == 0 || r.pt == 8),
        "engine sent payload types other than PCMU/PCMA: {:?}\n{}",
        stream
            .packets
            .iter()
            .map(|(_, r)| r.pt)
            .collect::<std::collections::BTreeSet<_>>(),
        call.report
    );
    let found = assert_heard_in_order(
        &heard,
        &[
            ("welcome", Need::Complete),
            ("main-menu", Need::AtLeast(Duration::from_millis(300))),
            ("hours", Need::Complete),
        ],
    );
    assert!(
        !found[1].complete(),
        "the menu should have been cut by the key: {}",
        found[1]
    );
    assert_markers(&stream, &found);
    let pacing = stream.pacing_problems();
    assert!(pacing.is_empty(), "RTP pacing problems: {pacing:?}");

    // What the engine understood.
    assert_eq!(
        digits(&record),
        vec![('1', "rfc4733".to_string())],
        "record: {record:?}\n{}",
        call.report
    );
    assert_eq!(outcome(&record), "caller_hangup", "record: {record:?}");
    assert!(
        record.path.iter().any(|n| n == "hours"),
        "path {:?} does not reach `hours`",
        record.path
    );
    assert!(
        played(&record, "welcome") && played(&record, "hours"),
        "prompts {:?}",
        record.prompts
    );
    assert!(
        call.said.iter().any(|(_, v)| v["type"] == "CALL_RTPESTAB"),
        "baresip never reported incoming RTP\n{}",
        call.report
    );

    // What baresip itself decoded: the welcome, then the hours, each for at least a
    // second (not frame-exact to the end: its jitter buffer may conceal a late packet).
    let decoded = baresip_heard(&dir);
    let second = RATE as usize / FRAME;
    let welcome = find_prompt("welcome", &decoded, &load_prompt("welcome"), 0, second);
    let hours = welcome.as_ref().and_then(|w| {
        find_prompt(
            "hours",
            &decoded,
            &load_prompt("hours"),
            w.start_frame + 1,
            second,
        )
    });
    let in_baresip = transcript(&decoded);
    assert!(
        welcome.is_some() && hours.is_some(),
        "baresip's decoded audio ({:.2}s) should hold the welcome, then the hours; it holds:\n{}",
        decoded.len() as f64 / RATE as f64,
        describe(&in_baresip)
    );
    eprintln!(
        "engine sent (captured):\n{}\nbaresip decoded:\n{}",
        describe(&transcript(&heard)),
        describe(&in_baresip)
    );

    engine.shutdown().await;
}
