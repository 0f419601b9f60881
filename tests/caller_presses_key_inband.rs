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

    // Exactly one digit: the 300 ms of silence around the tone must not add any.
    assert_eq!(
        digits(&record),
        vec![('1', "inband".to_string())],
        "record: {record:?}"
    );
    assert_eq!(outcome(&record), "caller_hangup", "record: {record:?}");
    assert!(
        record.path.iter().any(|n| n == "hours"),
        "path {:?} does not reach `hours`",
        record.path
    );
    engine.shutdown().await;
}
