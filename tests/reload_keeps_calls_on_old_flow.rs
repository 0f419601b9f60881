//! Hot reload over real SIP: call A is in the menu when the flow file changes and is
//! reloaded; A finishes on version 1 (its key still leads to the hours) while call B,
//! started after the reload, hears version 2 (another welcome, key 1 to the agent).
//! Then a broken file is refused with located errors and call C still gets version 2.
//! Checked by the call records and by the audio each caller actually received.

mod common;

use common::*;
use phonetree::call::CallRecord;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The records of the calls whose Call-IDs start with `prefixes`, in that order.
async fn records_for(engine: &mut TestEngine, prefixes: &[&str]) -> Vec<CallRecord> {
    let mut found: HashMap<String, CallRecord> = HashMap::new();
    while found.len() < prefixes.len() {
        let r = engine.next_record(Duration::from_secs(15)).await;
        if let Some(p) = prefixes.iter().find(|p| r.call_id.contains(**p)) {
            found.insert(p.to_string(), r);
        }
    }
    prefixes.iter().map(|p| found.remove(*p).unwrap()).collect()
}

/// The decoded engine stream whose audio starts with `first` (a prompt name).
fn stream_starting_with(streams: &[Stream], first: &str) -> Vec<i16> {
    let all: Vec<(Vec<i16>, Vec<Heard>)> = streams
        .iter()
        .map(|s| {
            let pcm = s.decode();
            let t = transcript(&pcm);
            (pcm, t)
        })
        .collect();
    for (pcm, t) in &all {
        if t.first().is_some_and(|h| h.name == first) {
            return pcm.clone();
        }
    }
    panic!(
        "no engine stream starts with `{first}`; streams heard:\n{}",
        all.iter()
            .map(|(_, t)| describe(t))
            .collect::<Vec<_>>()
            .join("\n--\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_calls_on_old_flow() {
    // The engine serves a copy of the e2e flows that the test can edit.
    let flows = Scratch::new("reload-flows");
    let v1 = std::fs::read_to_string(repo().join("tests/data/flows-e2e/main.yaml")).unwrap();
    let flow_file = flows.file("main.yaml");
    std::fs::write(&flow_file, &v1).unwrap();
    let flows_dir = flows.path.clone();
    let mut engine = start_engine_with("reload", |c| c.flows_dir = flows_dir).await;
    assert_eq!(engine.engine().catalog().version, 1);

    // Version 2: another welcome prompt, and key 1 goes to the agent instead of the hours.
    let v2 = v1
        .replacen("play: [welcome]", "play: [support]", 1)
        .replacen("\"1\": hours", "\"1\": agent", 1);
    assert_eq!(v2.matches("[support]").count(), 2, "v2 edit applied");
    assert!(v2.contains("\"1\": agent"), "v2 edit applied");

    let capture = Capture::start(engine.rtp_ports, &engine.scratch);
    // dtmf_info.xml: answer, press 1 by SIP INFO 3.5 s later, hang up ~6 s after that.
    let opts = || SippOptions {
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let a_started = Instant::now();
    let call_a = run_sipp(&engine, "dtmf_info.xml", opts());
    let reload_then_b = async {
        // Call A is up (it holds the version-1 catalog) before the file changes.
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.engine().shared().active_calls() == 0 {
            assert!(Instant::now() < deadline, "call A never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::write(&flow_file, &v2).unwrap();
        let version = engine.engine().reload().await.expect("version 2 compiles");
        let reloaded_after = a_started.elapsed();
        assert_eq!(version, 2);
        assert_eq!(engine.engine().catalog().version, 2);
        let b = run_sipp(&engine, "dtmf_info.xml", opts()).await;
        (b, reloaded_after)
    };
    let (a, (b, reloaded_after)) = tokio::join!(call_a, reload_then_b);
    a.assert_success();
    b.assert_success();
    // A's key (3.5 s after its answer) came after the reload: A decided on version 1
    // while version 2 was already current.
    assert!(
        reloaded_after < Duration::from_millis(3000),
        "the reload took until {reloaded_after:?} after call A started: too late to be \
         before A's key at 3.5 s"
    );
    let recs = records_for(&mut engine, &[&a.call_id_prefix, &b.call_id_prefix]).await;
    let (rec_a, rec_b) = (&recs[0], &recs[1]);
    let packets = capture.stop();

    assert_eq!(rec_a.flow_version, 1, "A: {rec_a:?}");
    assert_eq!(
        rec_a.prompts.first().map(String::as_str),
        Some("en/welcome"),
        "A: {rec_a:?}"
    );
    assert!(
        rec_a.prompts.iter().any(|p| p == "en/hours"),
        "A: {rec_a:?}"
    );
    assert!(
        !rec_a
            .prompts
            .iter()
            .any(|p| p == "en/agents-busy" || p == "en/support"),
        "A: {rec_a:?}"
    );
    assert!(rec_a.path.iter().any(|n| n == "hours"), "A: {rec_a:?}");
    assert_eq!(digits(rec_a), [('1', "info".to_string())], "A: {rec_a:?}");

    assert_eq!(rec_b.flow_version, 2, "B: {rec_b:?}");
    assert_eq!(
        rec_b.prompts.first().map(String::as_str),
        Some("en/support"),
        "B: {rec_b:?}"
    );
    assert!(
        rec_b.prompts.iter().any(|p| p == "en/agents-busy"),
        "B: {rec_b:?}"
    );
    assert!(
        !rec_b
            .prompts
            .iter()
            .any(|p| p == "en/welcome" || p == "en/hours"),
        "B: {rec_b:?}"
    );
    assert!(rec_b.path.iter().any(|n| n == "agent"), "B: {rec_b:?}");

    // What each caller actually heard.
    let streams = engine_streams(&packets, engine.rtp_ports);
    assert_eq!(streams.len(), 2, "one RTP stream per call");
    let heard_a = stream_starting_with(&streams, "welcome");
    assert_heard_in_order(
        &heard_a,
        &[
            ("welcome", Need::Complete),
            ("main-menu", Need::AtLeast(Duration::from_millis(400))),
            ("hours", Need::Complete),
        ],
    );
    let heard_b = stream_starting_with(&streams, "support");
    // B's key came during the (no barge-in) welcome: type-ahead skips the menu prompt.
    assert_heard_in_order(
        &heard_b,
        &[
            ("support", Need::Complete),
            ("agents-busy", Need::AtLeast(Duration::from_secs(1))),
        ],
    );

    // A broken file is refused, located; version 2 keeps serving.
    let broken = v2.replacen("next: main_menu", "next: mian_menu", 1);
    let (line, col) = broken
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find("mian_menu").map(|c| (i + 1, c + 1)))
        .unwrap();
    std::fs::write(&flow_file, &broken).unwrap();
    let errors = engine
        .engine()
        .reload()
        .await
        .expect_err("a broken flow must be refused");
    let want = format!(
        "{}:{line}:{col}: error: unknown node `mian_menu`",
        flow_file.display()
    );
    assert!(
        errors.iter().any(|e| e.starts_with(&want)),
        "expected `{want}` in:\n{}",
        errors.join("\n")
    );
    assert_eq!(engine.engine().catalog().version, 2);

    let capture = Capture::start(engine.rtp_ports, &engine.scratch);
    let c = run_sipp(&engine, "dtmf_info.xml", opts()).await;
    c.assert_success();
    let rec_c = engine
        .record_for(&c.call_id_prefix, Duration::from_secs(15))
        .await;
    let packets = capture.stop();
    assert_eq!(rec_c.flow_version, 2, "C: {rec_c:?}");
    assert_eq!(
        rec_c.prompts.first().map(String::as_str),
        Some("en/support"),
        "C: {rec_c:?}"
    );
    assert!(rec_c.path.iter().any(|n| n == "agent"), "C: {rec_c:?}");
    let (_, heard_c) = engine_audio(&packets, engine.rtp_ports);
    assert_heard_in_order(
        &heard_c,
        &[
            ("support", Need::Complete),
            ("agents-busy", Need::AtLeast(Duration::from_secs(1))),
        ],
    );
    engine.shutdown().await;
}
