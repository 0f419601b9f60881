//! A caller presses 1 as an in-band tone: sipp replays PCMU audio with 100 ms of
//! 697 Hz + 1209 Hz at -10 dBm0 each (`tests/data/pcap/dtmf_1_inband.pcap`); the
//! Goertzel detector finds it, the key barges into the menu and the caller hears the hours.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_presses_key_inband() {
    let mut engine = start_engine("inband").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(&engine, "dtmf_inband.xml", SippOptions::default()).await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    let (stream, heard) = engine_audio(&packets, engine.rtp_ports);
    // Exactly one digit: the 300 ms of silence around the tone must not add any.
    assert_key_1_took_the_hours_branch(&stream, &heard, &record, "inband");
    engine.shutdown().await;
}
