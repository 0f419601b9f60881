//! CANCEL before the answer (RFC 3261 §9.2): the engine rings (answer_delay), the caller
//! cancels after the 100, gets 200 for the CANCEL and 487 for the INVITE, ACKs it.
//! No media is ever sent and the record says `cancelled`.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_before_answer() {
    let mut engine = start_engine_with("cancel", |c| {
        c.call.answer_delay = Duration::from_secs(3);
    })
    .await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(
        &engine,
        "cancel.xml",
        SippOptions {
            timeout: Duration::from_secs(20),
            ..Default::default()
        },
    )
    .await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    // Past the answer delay: a late 200 or stray RTP would show now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let packets = capture.stop();
    sipp.assert_success();

    assert_eq!(outcome(&record), "cancelled", "record: {record:?}");
    assert_eq!(record.status, 487, "record: {record:?}");
    assert!(record.digits.is_empty(), "record: {record:?}");
    let streams = engine_streams(&packets, engine.rtp_ports);
    assert!(
        streams.is_empty(),
        "the engine sent RTP on a cancelled call: {} streams",
        streams.len()
    );
    // A 200 to the INVITE would have failed the sipp scenario (unexpected message).
    engine.shutdown().await;
}
