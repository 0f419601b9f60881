//! Callers reach people: an agent's phone (sipp) registers with digest auth, a caller
//! (sipp) presses 0 and joins the `support` queue, the engine INVITEs the agent with the
//! caller's data in headers, the agent answers, hears the whisper, and then caller and
//! agent hear each other (checked on the decoded RTP against the voice files each side
//! sent). The agent hangs up; the caller gets BYE; the call record shows the queue, the
//! wait and the agent; the agent goes wrap-up → available.
//!
//! Also: two agents and a ring timeout (the first never answers, the second rings), and a
//! caller who hangs up while the agent rings (the agent gets CANCEL).

mod common;

use common::*;
use phonetree::config::Config;
use std::path::Path;
use std::time::Duration;

/// Queues and agents for these tests, read through the real config parser.
fn agents_config(config: &mut Config, ring_timeout: &str, agents: &[(&str, &str)]) {
    let mut yaml = format!(
        "queues:\n  support:\n    strategy: longest_idle\n    ring_timeout: {ring_timeout}\n    wrap_up: 2s\n    max_wait: 2m\n    announce_every: 30s\nagents:\n"
    );
    for (user, password) in agents {
        yaml.push_str(&format!(
            "  agent{user}:\n    name: Agent {user}\n    username: \"{user}\"\n    password: {password}\n    queues: {{ support: 0 }}\n    auto_login: true\n"
        ));
    }
    let parsed = Config::parse(&yaml, Path::new("<agents test>")).expect("agents config parses");
    config.acd = parsed.acd;
    config.flows_dir = repo().join("tests/data/flows-agents");
}

async fn register(engine: &TestEngine, user: &str, password: &str, port: u16) {
    let reg = run_sipp(
        engine,
        "agent_register.xml",
        SippOptions {
            service: user,
            local_port: Some(port),
            timeout: Duration::from_secs(10),
            extra: vec!["-au".into(), user.into(), "-ap".into(), password.into()],
            ..SippOptions::default()
        },
    )
    .await;
    reg.assert_success();
}

/// Waits until the agents task reports `agent` in `state` (the snapshot ticks every second).
async fn wait_agent_state(engine: &TestEngine, agent: &str, state: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let view = engine.engine().shared().agents.borrow().clone();
        let json = serde_json::to_value(&view).unwrap_or_default();
        if let Some(agents) = json.pointer("/acd/agents").and_then(|a| a.as_array()) {
            for a in agents {
                if a.get("id").and_then(|v| v.as_str()) == Some(agent) {
                    last = a.get("state").map(|s| s.to_string()).unwrap_or_default();
                    if last.to_ascii_lowercase().contains(state) {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("agent {agent} not {state} within {within:?} (last state {last})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_answers_caller_from_queue_and_both_hear_each_other() {
    self_check();
    let mut engine = start_engine_with("agent-bridge", |c| {
        agents_config(c, "10s", &[("1001", "demo1001")])
    })
    .await;
    let agent_port = free_port();
    let agent_media = free_port_block(4).0;
    register(&engine, "1001", "demo1001", agent_port).await;
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(5)).await;

    let capture = Capture::start(engine.rtp_ports, &engine.scratch);
    let agent = run_sipp(
        &engine,
        "agent_answers.xml",
        SippOptions {
            service: "1001",
            local_port: Some(agent_port),
            media_port: Some(agent_media),
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let caller = run_sipp(
        &engine,
        "caller_to_agent.xml",
        SippOptions {
            service: "agents",
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let (agent, caller) = tokio::join!(agent, caller);
    let record = engine
        .record_for(&caller.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    agent.assert_success();
    caller.assert_success();

    // The agent's INVITE carried the screen-pop headers.
    assert!(
        agent.messages.contains("X-Phonetree-Queue: support"),
        "agent INVITE headers:\n{}",
        agent.report()
    );
    assert!(
        agent.messages.contains("X-Phonetree-Wait:"),
        "{}",
        agent.report()
    );

    let streams = engine_streams(&packets, engine.rtp_ports);
    let to_agent: Vec<_> = streams
        .iter()
        .filter(|s| s.dst.port() == agent_media)
        .collect();
    let to_caller: Vec<_> = streams
        .iter()
        .filter(|s| s.dst.port() != agent_media)
        .collect();
    assert_eq!(to_agent.len(), 1, "one stream to the agent: {streams:?}");
    assert_eq!(to_caller.len(), 1, "one stream to the caller");
    let agent_heard = packet_audio(to_agent[0]);
    let caller_heard = packet_audio(to_caller[0]);
    assert!(
        hears(&agent_heard, "whisper-support"),
        "the agent hears the whisper"
    );
    assert!(
        hears(&agent_heard, "order-delivered"),
        "the agent hears the caller's voice: {}",
        describe(&transcript(&agent_heard))
    );
    assert!(
        hears(&caller_heard, "appointment-confirmed"),
        "the caller hears the agent's voice: {}",
        describe(&transcript(&caller_heard))
    );
    // One SSRC and continuous sequence numbers to the caller across prompt → agent.
    let seqs: Vec<u16> = to_caller[0].packets.iter().map(|(_, r)| r.seq).collect();
    let jumps = seqs
        .windows(2)
        .filter(|w| w[1] != w[0].wrapping_add(1))
        .count();
    assert!(jumps <= 2, "caller stream sequence jumps {jumps}");

    let q = record.queue.as_ref().expect("record has the queue part");
    assert_eq!(q.queue, "support");
    assert_eq!(q.answered_by.as_deref(), Some("agent1001"));
    assert_eq!(q.ring_attempts, 1);
    assert!(q.wait_ms < 5_000, "waited {} ms", q.wait_ms);
    assert!(q.agent_talk_ms > 3_000, "talked {} ms", q.agent_talk_ms);
    assert_eq!(q.result, "answered");
    assert_eq!(outcome(&record), "agent_hangup");

    wait_agent_state(&engine, "agent1001", "wrap", Duration::from_secs(2)).await;
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(5)).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_no_answer_rings_the_next_agent() {
    self_check();
    let mut engine = start_engine_with("agent-ring-timeout", |c| {
        agents_config(c, "3s", &[("1001", "demo1001"), ("1002", "demo1002")])
    })
    .await;
    let (p1, p2) = (free_port(), free_port());
    register(&engine, "1001", "demo1001", p1).await;
    // 1001 has been idle longest, so it rings first; it never answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    register(&engine, "1002", "demo1002", p2).await;
    wait_agent_state(&engine, "agent1002", "available", Duration::from_secs(5)).await;

    let silent = run_sipp(
        &engine,
        "agent_ignores.xml",
        SippOptions {
            service: "1001",
            local_port: Some(p1),
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let answering = run_sipp(
        &engine,
        "agent_answers.xml",
        SippOptions {
            service: "1002",
            local_port: Some(p2),
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let caller = run_sipp(
        &engine,
        "caller_to_agent.xml",
        SippOptions {
            service: "agents",
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let (silent, answering, caller) = tokio::join!(silent, answering, caller);
    let record = engine
        .record_for(&caller.call_id_prefix, Duration::from_secs(10))
        .await;
    silent.assert_success();
    answering.assert_success();
    caller.assert_success();
    assert!(
        silent.messages.contains("CANCEL sip:"),
        "the first agent got CANCEL at the ring timeout\n{}",
        silent.report()
    );
    let q = record.queue.as_ref().expect("queue part");
    assert_eq!(q.answered_by.as_deref(), Some("agent1002"));
    assert_eq!(q.ring_attempts, 2);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_abandons_while_the_agent_rings() {
    self_check();
    let mut engine = start_engine_with("agent-abandon", |c| {
        agents_config(c, "20s", &[("1001", "demo1001")])
    })
    .await;
    let port = free_port();
    register(&engine, "1001", "demo1001", port).await;
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(5)).await;
    let agent = run_sipp(
        &engine,
        "agent_ignores.xml",
        SippOptions {
            service: "1001",
            local_port: Some(port),
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let caller = run_sipp(
        &engine,
        "caller_hangs_up_in_queue.xml",
        SippOptions {
            service: "agents",
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let (agent, caller) = tokio::join!(agent, caller);
    let record = engine
        .record_for(&caller.call_id_prefix, Duration::from_secs(10))
        .await;
    agent.assert_success();
    caller.assert_success();
    assert!(agent.messages.contains("CANCEL sip:"), "{}", agent.report());
    assert_eq!(outcome(&record), "abandoned");
    let q = record.queue.as_ref().expect("queue part");
    assert_eq!(q.result, "abandoned");
    assert!(q.abandoned_at_ms.is_some());
    assert_eq!(q.answered_by, None);
    // Not a no-answer: the agent is straight back to available, not paused.
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(3)).await;
    engine.shutdown().await;
}

/// baresip is the agent's softphone: it REGISTERs with digest auth (its own
/// implementation), answers the queue's INVITE by itself (`answermode=auto`), takes PCMA
/// (so the bridge transcodes the caller's PCMU), says `appointment-confirmed` from its
/// microphone file, and hangs up; the caller (sipp) gets BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_agent_registers_answers_and_talks_with_the_caller() {
    use common::baresip::*;
    self_check();
    baresip_path();
    let modules = baresip_module_dir();
    let mut engine = start_engine_with("agent-baresip", |c| {
        agents_config(c, "10s", &[("1001", "demo1001")])
    })
    .await;
    let dir = engine.scratch.file("baresip-agent");
    std::fs::create_dir_all(&dir).expect("baresip dir");
    // The agent's microphone: 3 s of silence (the whisper plays meanwhile), the voice,
    // then silence.
    let mut mic = vec![0i16; 8000 * 3];
    mic.extend(load_prompt("appointment-confirmed"));
    mic.resize(8000 * 30, 0);
    let mic_path = dir.join("agent-voice.wav");
    write_wav(&mic_path, &mic);
    let ctrl_port = free_port();
    write_config(
        &dir,
        &modules,
        ctrl_port,
        Some(&mic_path),
        &format!(
            "<sip:1001@{};transport=udp>;auth_pass=demo1001;regint=600;answermode=auto;audio_codecs=PCMA",
            engine.sip
        ),
    );
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);
    let mut phone = tokio::task::spawn_blocking({
        let dir = dir.clone();
        // It registers right after start, possibly before ctrl_tcp is connected: the
        // engine's agent state (below) tells when the registration worked.
        move || Baresip::start(&dir, ctrl_port)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(5)).await;

    let caller = run_sipp(
        &engine,
        "caller_to_agent.xml",
        SippOptions {
            service: "agents",
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    let agent_side = tokio::task::spawn_blocking(move || {
        phone.expect_event("CALL_ESTABLISHED", Duration::from_secs(10));
        // Talk for 9 s (whisper, then the caller's voice and ours), then hang up.
        phone.stay_up(Duration::from_secs(9), "while the agent talked");
        phone.command("hangup", "");
        phone.expect_event("CALL_CLOSED", Duration::from_secs(5));
        phone
    });
    let caller = caller.await;
    let phone = agent_side
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let record = engine
        .record_for(&caller.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    caller.assert_success();

    // The caller heard the agent's voice (relayed and transcoded PCMA → PCMU).
    let streams = engine_streams(&packets, engine.rtp_ports);
    let to_caller: Vec<_> = streams
        .iter()
        .filter(|s| s.packets.iter().all(|(_, r)| r.pt == 0 || r.pt == 101))
        .collect();
    assert!(
        to_caller
            .iter()
            .any(|s| hears(&packet_audio(s), "appointment-confirmed")),
        "the caller hears the agent: {streams:?}\n{}",
        phone.report()
    );
    // The agent heard the whisper and the caller's voice (what baresip decoded).
    let decoded = baresip_heard(&dir);
    assert!(
        hears(&decoded, "whisper-support"),
        "the agent hears the whisper: {}",
        describe(&transcript(&decoded))
    );
    assert!(
        hears(&decoded, "order-delivered"),
        "the agent hears the caller: {}",
        describe(&transcript(&decoded))
    );
    let q = record.queue.as_ref().expect("record has the queue part");
    assert_eq!(q.answered_by.as_deref(), Some("agent1001"));
    assert_eq!(outcome(&record), "agent_hangup");
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(5)).await;
    // Quitting un-REGISTERs the phone: the agent is logged out with it.
    let mut phone = phone;
    tokio::task::spawn_blocking(move || phone.quit())
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    wait_agent_state(&engine, "agent1001", "loggedout", Duration::from_secs(5)).await;
    engine.shutdown().await;
}

/// A caller books a callback while nobody serves the queue; when an agent's phone
/// registers, the engine dials the customer through the queue's `callback.dial` URI
/// (sipp as the customer's phone), and once they answer rings the agent (sipp) and bridges
/// them; the agent hangs up and the customer gets BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_rings_the_customer_when_an_agent_is_free_and_bridges_them() {
    self_check();
    let customer_port = free_port();
    let mut engine = start_engine_with("agent-callback", |c| {
        let yaml = format!(
            "queues:\n  support:\n    ring_timeout: 10s\n    wrap_up: 1s\n    announce_every: 0s\n    join_when_empty: true\n    leave_when_empty: false\n    callback:\n      dial: \"sip:{{number}}@127.0.0.1:{customer_port}\"\n      caller_id: support\nagents:\n  agent1001:\n    username: \"1001\"\n    password: demo1001\n    queues: {{ support: 0 }}\n    auto_login: true\n"
        );
        let parsed = Config::parse(&yaml, Path::new("<callback test>")).expect("config parses");
        c.acd = parsed.acd;
        c.flows_dir = repo().join("tests/data/flows-agents");
    })
    .await;
    // Nobody is logged in: the caller waits, presses 1 and books a callback.
    let caller = run_sipp(
        &engine,
        "caller_books_callback.xml",
        SippOptions {
            service: "callback",
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    )
    .await;
    caller.assert_success();
    let booking = engine
        .record_for(&caller.call_id_prefix, Duration::from_secs(10))
        .await;
    let q = booking.queue.as_ref().expect("queue part");
    assert!(q.callback, "the record shows the callback request: {q:?}");

    // The customer's phone waits; the agent registers and so becomes free.
    let customer = run_sipp(
        &engine,
        "customer_answers_callback.xml",
        SippOptions {
            local_port: Some(customer_port),
            media_port: Some(free_port_block(4).0),
            timeout: Duration::from_secs(40),
            ..SippOptions::default()
        },
    );
    let agent_port = free_port();
    register(&engine, "1001", "demo1001", agent_port).await;
    let agent = run_sipp(
        &engine,
        "agent_answers.xml",
        SippOptions {
            service: "1001",
            local_port: Some(agent_port),
            media_port: Some(free_port_block(4).0),
            timeout: Duration::from_secs(40),
            ..SippOptions::default()
        },
    );
    let (customer, agent) = tokio::join!(customer, agent);
    customer.assert_success();
    agent.assert_success();
    assert!(
        customer
            .messages
            .contains("INVITE sip:+15557654321@127.0.0.1"),
        "the callback dials the number the caller left\n{}",
        customer.report()
    );
    assert!(
        customer.messages.contains("X-Phonetree-Callback: support"),
        "{}",
        customer.report()
    );
    assert!(
        agent.messages.contains("X-Phonetree-Queue: support"),
        "{}",
        agent.report()
    );
    let record = engine
        .record_for("@phonetree", Duration::from_secs(10))
        .await;
    let q = record
        .queue
        .as_ref()
        .expect("queue part of the callback's record");
    assert!(q.callback);
    assert_eq!(q.answered_by.as_deref(), Some("agent1001"));
    assert_eq!(outcome(&record), "agent_hangup");
    engine.shutdown().await;
}

/// Reloading `phonetree.yaml` applies new queues and agents without logging anyone out;
/// a configuration with a mistake is refused and the running queues stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_queue_changes_and_keeps_agents_logged_in() {
    self_check();
    let scratch_conf = std::env::temp_dir().join(format!(
        "phonetree-reload-conf-{}-{}.yaml",
        std::process::id(),
        free_port()
    ));
    let base = "queues:\n  support:\n    ring_timeout: 10s\nagents:\n  agent1001:\n    username: \"1001\"\n    password: demo1001\n    queues: { support: 0 }\n    auto_login: true\n";
    std::fs::write(&scratch_conf, base).expect("write config");
    let conf = scratch_conf.clone();
    let engine = start_engine_with("agent-reload", move |c| {
        let parsed = Config::load(&conf, true).expect("config parses");
        c.acd = parsed.acd;
        c.source = parsed.source;
        c.flows_dir = repo().join("tests/data/flows-agents");
    })
    .await;
    register(&engine, "1001", "demo1001", free_port()).await;
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(5)).await;

    // A new queue and a new agent; agent1001 joins both.
    let grown = "queues:\n  support:\n    ring_timeout: 20s\n  sales: {}\nagents:\n  agent1001:\n    username: \"1001\"\n    password: demo1001\n    queues: { support: 0, sales: 1 }\n    auto_login: true\n  agent1002:\n    username: \"1002\"\n    password: demo1002\n    queues: { sales: 0 }\n";
    std::fs::write(&scratch_conf, grown).expect("rewrite config");
    let version = engine
        .engine()
        .reload()
        .await
        .expect("the reload is accepted");
    assert!(version >= 2);
    let queues_of = |engine: &TestEngine| -> Vec<String> {
        let view = serde_json::to_value(engine.engine().shared().agents.borrow().clone()).unwrap();
        view.pointer("/acd/queues")
            .and_then(|q| q.as_array())
            .map(|qs| {
                qs.iter()
                    .filter_map(|q| q["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !queues_of(&engine).contains(&"sales".to_string()) && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        queues_of(&engine).contains(&"sales".to_string()),
        "{:?}",
        queues_of(&engine)
    );
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(2)).await;
    wait_agent_state(&engine, "agent1002", "loggedout", Duration::from_secs(2)).await;

    // A mistake: refused with its location; the queues stay.
    std::fs::write(
        &scratch_conf,
        "queues:\n  support:\n    ring_timeout: soon\n",
    )
    .expect("rewrite");
    let errors = engine
        .engine()
        .reload()
        .await
        .expect_err("a bad configuration is refused");
    assert!(
        errors.iter().any(|e| e.contains("ring_timeout")),
        "{errors:?}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(queues_of(&engine).contains(&"sales".to_string()));
    wait_agent_state(&engine, "agent1001", "available", Duration::from_secs(2)).await;
    let _ = std::fs::remove_file(&scratch_conf);
    engine.shutdown().await;
}

/// Agents log in, pause and log out by dialling codes from their registered phone; the
/// same codes from a phone that is not registered for that agent are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_feature_codes_log_in_pause_and_log_out_from_the_registered_phone() {
    self_check();
    let mut engine = start_engine_with("agent-codes", |c| {
        let yaml = "queues:\n  support: {}\nagents:\n  agent1001:\n    username: \"1001\"\n    password: demo1001\n    queues: { support: 0 }\n  agent1002:\n    username: \"1002\"\n    password: demo1002\n    queues: { support: 0 }\n";
        let parsed = Config::parse(yaml, Path::new("<codes test>")).expect("config parses");
        c.acd = parsed.acd;
        c.flows_dir = repo().join("tests/data/flows-agents");
    })
    .await;
    let port = free_port();
    register(&engine, "1001", "demo1001", port).await;
    // No auto_login: registered, but not taking calls yet.
    wait_agent_state(&engine, "agent1001", "loggedout", Duration::from_secs(3)).await;
    for (code, agent, local_port, prompt, state) in [
        ("*45", "1001", Some(port), "agent-logged-in", "available"),
        ("*47", "1001", Some(port), "agent-paused", "paused"),
        ("*48", "1001", Some(port), "agent-unpaused", "available"),
        // 1002 has no registered phone: refused, nothing changes.
        ("*45", "1002", None, "agent-refused", "loggedout"),
        ("*46", "1001", Some(port), "agent-logged-out", "loggedout"),
    ] {
        let run = run_sipp(
            &engine,
            "agent_dials_code.xml",
            SippOptions {
                service: code,
                local_port,
                timeout: Duration::from_secs(25),
                extra: vec!["-set".into(), "agent".into(), agent.into()],
                ..SippOptions::default()
            },
        )
        .await;
        run.assert_success();
        let record = engine
            .record_for(&run.call_id_prefix, Duration::from_secs(10))
            .await;
        assert!(
            played(&record, prompt),
            "{code} from {agent}: prompts {:?}",
            record.prompts
        );
        assert_eq!(outcome(&record), "engine_hangup");
        let who = if agent == "1001" {
            "agent1001"
        } else {
            "agent1002"
        };
        wait_agent_state(&engine, who, state, Duration::from_secs(3)).await;
    }
    engine.shutdown().await;
}
