//! Late offer (RFC 3261 §13.2.1): the INVITE has no SDP, the engine's 200 carries the
//! offer (PCMU and telephone-event), sipp's ACK carries the answer. The call then
//! works as usual: welcome, key 1 by RFC 4733, hours.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_offer_call() {
    let mut engine = start_engine("late-offer").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(&engine, "late_offer.xml", SippOptions::default()).await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    // The offer in the 200 (from sipp's message trace) uses PT 101 for telephone-event,
    // which is what the replayed pcap carries.
    assert!(
        sipp.messages.contains("telephone-event/8000"),
        "engine's offer has no telephone-event\n{}",
        sipp.report()
    );

    let (_stream, heard) = engine_audio(&packets, engine.rtp_ports);
    assert_heard_in_order(
        &heard,
        &[("welcome", Need::Complete), ("hours", Need::Complete)],
    );

    assert_eq!(
        digits(&record),
        vec![('1', "rfc4733".to_string())],
        "record: {record:?}"
    );
    assert_eq!(outcome(&record), "caller_hangup", "record: {record:?}");
    engine.shutdown().await;
}
