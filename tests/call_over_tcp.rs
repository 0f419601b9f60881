//! A whole call over one TCP connection (`sipp -t t1`): INVITE, 200, ACK, key 1 by
//! RFC 4733, the hours prompt, BYE. RTP is UDP as always.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_over_tcp() {
    let mut engine = start_engine("tcp").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(
        &engine,
        "tcp_call.xml",
        SippOptions {
            tcp: true,
            ..Default::default()
        },
    )
    .await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    let (_stream, heard) = engine_audio(&packets, engine.rtp_ports);
    assert_heard_in_order(
        &heard,
        &[("welcome", Need::Complete), ("hours", Need::Complete)],
    );

    assert!(
        record.transport.eq_ignore_ascii_case("tcp"),
        "transport {:?} in {record:?}",
        record.transport
    );
    assert_eq!(
        digits(&record),
        vec![('1', "rfc4733".to_string())],
        "record: {record:?}"
    );
    assert_eq!(outcome(&record), "caller_hangup", "record: {record:?}");
    engine.shutdown().await;
}
