//! A caller presses 1 with a SIP INFO (`application/dtmf-relay`, `Signal=1`) inside the
//! dialog: the INFO gets 200, the key barges into the menu and the caller hears the hours.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_presses_key_by_sip_info() {
    let mut engine = start_engine("info").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(&engine, "dtmf_info.xml", SippOptions::default()).await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    let (stream, heard) = engine_audio(&packets, engine.rtp_ports);
    assert_key_1_took_the_hours_branch(&stream, &heard, &record, "info");
    engine.shutdown().await;
}
