//! A caller who never presses a key (their phone keeps sending silence, so this is the
//! menu's no-input path, not the RTP timeout): welcome, the menu, "no input" and the
//! menu again until the retries are used up, then goodbye, then the engine's BYE.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_caller_gets_retries_then_bye() {
    let mut engine = start_engine("silent").await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(
        &engine,
        "silent.xml",
        SippOptions {
            timeout: Duration::from_secs(110),
            ..Default::default()
        },
    )
    .await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    // flows-e2e: main_menu has `retries: 2`, `no_input: [no-input]`, `max_failures: goodbye`.
    // First silence: "no input" and the menu again; second: "no input", then goodbye.
    let (stream, heard) = engine_audio(&packets, engine.rtp_ports);
    let found = assert_heard_in_order(
        &heard,
        &[
            ("welcome", Need::Complete),
            ("main-menu", Need::Complete),
            ("no-input", Need::Complete),
            ("main-menu", Need::Complete),
            ("no-input", Need::Complete),
            ("goodbye", Need::Complete),
        ],
    );
    // A marker starts each play run; the re-prompt queued right after "no input" is part
    // of the same talkspurt, so it carries none.
    let run_starts: Vec<Heard> = [0, 1, 2, 4, 5].iter().map(|&i| found[i].clone()).collect();
    assert_markers(&stream, &run_starts);
    let t = transcript(&heard);
    assert_eq!(
        t.iter().filter(|h| h.name == "main-menu").count(),
        2,
        "the menu should play once plus one re-prompt:\n{}",
        describe(&t)
    );
    // goodbye is the last thing heard.
    assert_eq!(
        t.last().map(|h| h.name.as_str()),
        Some("goodbye"),
        "heard:\n{}",
        describe(&t)
    );

    assert_eq!(outcome(&record), "engine_hangup", "record: {record:?}");
    assert!(record.digits.is_empty(), "record: {record:?}");
    assert!(
        record.path.iter().any(|n| n == "goodbye"),
        "path {:?}",
        record.path
    );
    engine.shutdown().await;
}
