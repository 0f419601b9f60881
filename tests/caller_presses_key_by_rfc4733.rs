//! A caller presses 1 with RFC 4733 telephone-events (sipp replays
//! `tests/data/pcap/dtmf_1_rfc4733.pcap`): they hear the welcome, the menu starts, the
//! key barges in and they hear the opening hours. Checked on the RTP the engine sent,
//! decoded and compared with the prompt WAVs, and on the call record.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_presses_key_by_rfc4733() {
    self_check();
    let mut engine = start_engine("rfc4733").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(&engine, "dtmf_rfc4733.xml", SippOptions::default()).await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    let (stream, heard) = engine_audio(&packets, engine.rtp_ports);
    // The key (sent 3.5 s after the ACK) cut the menu short.
    assert_key_1_took_the_hours_branch(&stream, &heard, &record, "rfc4733");
    assert!(
        played(&record, "welcome") && played(&record, "hours"),
        "prompts {:?}",
        record.prompts
    );
    engine.shutdown().await;
}
