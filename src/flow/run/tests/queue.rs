//! `queue`, `callback` and `transfer` nodes on a fake clock: what the caller
//! hears while queued, leave keys, every way out of a queue, callbacks,
//! transfer targets with variables; and their compile errors.

use std::collections::BTreeSet;

use super::*;
use crate::flow::compile::{CompileOptions, compile_with};

const Q: &str = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: ask
    nodes:
      ask:
        collect: { prompt: [enter-pin], into: prio, min: 1, max: 4, retries: 1, max_failures: wait }
        next: wait
      wait:
        queue:
          name: support
          priority: $prio
          leave: { "1": cb, "9": menu }
          announce: { prompts: [queue-leave-hint] }
          on: { overflow: over, no_agents: none, failed: oops }
      menu:
        menu: { prompt: [main-menu], options: { "0": wait }, max_failures: end }
      cb:
        callback: { queue: support, number: $caller, on: { registered: thanks, duplicate: again, failed: oops } }
      thanks: { play: [callback-registered], next: end }
      again: { play: [callback-duplicate], next: end }
      over: { play: [queue-overflow], next: end }
      none: { play: [queue-no-agents], next: end }
      oops: { play: [transfer-failed], next: end }
      end: { hangup: {} }
"#;

fn queues() -> BTreeSet<String> {
    ["support", "sales"].map(String::from).into()
}

fn errors_with(yaml: &str, queues: Option<&BTreeSet<String>>) -> Vec<String> {
    let src = Source {
        path: PathBuf::from("q.yaml"),
        text: yaml.to_string(),
    };
    match compile_with(&[src], &catalog(), 1, &CompileOptions { queues }) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.headline())
            .collect(),
    }
}

fn frag(name: &str) -> PromptId {
    p(&format!("en/say/{name}"))
}

fn enqueue(priority: i32, resume: bool) -> Action {
    Action::Enqueue {
        queue: "support".into(),
        priority,
        resume,
    }
}

/// The run of `Q`, in the queue with `prio` typed as its priority (nothing joined yet).
fn queued(t0: Instant, prio: &str) -> Run {
    let mut run = start(Q, t0);
    assert_eq!(drain(&mut run), [play(&["enter-pin"], true)]);
    for c in prio.chars() {
        run.handle_digit(t0 + secs(1.0), d(c));
    }
    run.handle_digit(t0 + secs(1.0), Digit::Pound);
    run
}

fn music() -> Action {
    play(&["hold-music"], true)
}

fn announcement(position: &[&str], wait: &[PromptId]) -> Action {
    let mut prompts = vec![en("queue-position")];
    prompts.extend(position.iter().map(|n| frag(n)));
    prompts.push(en("queue-position-end"));
    prompts.extend_from_slice(wait);
    prompts.push(en("queue-leave-hint"));
    Action::Play {
        prompts,
        barge_in: true,
    }
}

#[test]
fn the_queue_is_joined_with_the_typed_priority() {
    let t0 = Instant::now();
    let mut run = queued(t0, "10");
    assert_eq!(drain(&mut run), [Action::StopPlayback, enqueue(10, false)]);
    assert!(run.is_queued());
    assert_eq!(run.queue(), Some("support"));
    assert_eq!(run.poll_timeout(), None, "the ACD owns the wait timing");
    assert_eq!(run.path(), ["ask", "wait"]);
}

#[test]
fn a_priority_that_is_no_number_is_zero_and_a_huge_one_is_capped() {
    let t0 = Instant::now();
    // No digits: `prio` stays unset after the collect fails.
    let mut run = start(Q, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(1.0));
    run.handle_timeout(t0 + secs(6.0));
    assert_eq!(drain(&mut run), [enqueue(0, false)]);
    let mut run = queued(t0, "9999");
    assert_eq!(drain(&mut run)[1], enqueue(1000, false));
}

#[test]
fn joining_announces_position_and_wait_then_loops_the_music() {
    let t0 = Instant::now();
    let mut run = queued(t0, "1");
    drain(&mut run);
    run.handle_queue_event(
        t0 + secs(1.1),
        QueueEvent::Joined {
            position: 3,
            ewt: Some(Duration::from_secs(240)),
        },
    );
    assert_eq!(
        drain(&mut run),
        [announcement(
            &["3"],
            &[en("queue-wait"), frag("about"), frag("4"), frag("minutes")]
        )]
    );
    run.handle_playback_finished(t0 + secs(8.0));
    assert_eq!(drain(&mut run), [music()]);
    // The music comes round: played again, back to back.
    run.handle_playback_finished(t0 + secs(28.0));
    assert_eq!(drain(&mut run), [music()]);
    assert_eq!(run.poll_timeout(), None);
}

#[test]
fn the_wait_is_rounded_up_to_whole_minutes() {
    let t0 = Instant::now();
    let said = |ewt: Option<Duration>| {
        let mut run = queued(t0, "1");
        drain(&mut run);
        run.handle_queue_event(t0 + secs(2.0), QueueEvent::Announce { position: 1, ewt });
        match drain(&mut run).pop() {
            Some(Action::Play { prompts, .. }) => prompts[3..prompts.len() - 1].to_vec(),
            other => panic!("{other:?}"),
        }
    };
    let wait = en("queue-wait");
    assert_eq!(
        said(Some(Duration::from_secs(61))),
        [wait, frag("about"), frag("2"), frag("minutes")]
    );
    assert_eq!(
        said(Some(Duration::from_secs(60))),
        [wait, frag("about"), frag("1"), frag("minute")]
    );
    assert_eq!(
        said(Some(Duration::from_millis(59_999))),
        [wait, frag("less-than-a-minute")]
    );
    assert_eq!(said(None), [en("queue-shortly")]);
}

#[test]
fn an_announcement_replaces_the_music_which_then_resumes() {
    let t0 = Instant::now();
    let mut run = queued(t0, "1");
    drain(&mut run);
    run.handle_queue_event(
        t0 + secs(2.0),
        QueueEvent::Joined {
            position: 2,
            ewt: None,
        },
    );
    run.handle_playback_finished(t0 + secs(6.0));
    assert_eq!(drain(&mut run)[1..], [music()]);
    run.handle_queue_event(t0 + secs(30.0), QueueEvent::AgentRinging);
    assert_eq!(
        drain(&mut run),
        [],
        "ringing changes nothing the caller hears"
    );
    run.handle_queue_event(
        t0 + secs(36.0),
        QueueEvent::Announce {
            position: 1,
            ewt: None,
        },
    );
    assert_eq!(
        drain(&mut run),
        [announcement(&["1"], &[en("queue-shortly")])]
    );
    run.handle_playback_finished(t0 + secs(40.0));
    assert_eq!(drain(&mut run), [music()]);
}

#[test]
fn a_leave_key_leaves_the_queue_keeping_the_place_and_other_keys_are_dropped() {
    let t0 = Instant::now();
    let mut run = queued(t0, "1");
    drain(&mut run);
    run.handle_queue_event(
        t0 + secs(2.0),
        QueueEvent::Joined {
            position: 2,
            ewt: None,
        },
    );
    drain(&mut run);
    for k in ['5', '#', '0'] {
        run.handle_digit(t0 + secs(3.0), d(k));
    }
    assert_eq!(drain(&mut run), []);
    assert_eq!(
        run.typeahead().count(),
        0,
        "not typed ahead into later menus"
    );
    run.handle_digit(t0 + secs(4.0), Digit::D9);
    assert_eq!(
        drain(&mut run),
        [
            Action::StopPlayback,
            Action::LeaveQueue { keep_place: true },
            play(&["main-menu"], true)
        ]
    );
    assert!(!run.is_queued());
    // A late event of the queue left behind changes nothing.
    run.handle_queue_event(t0 + secs(5.0), QueueEvent::Bridged);
    run.handle_queue_event(t0 + secs(5.0), QueueEvent::Overflow);
    assert_eq!(drain(&mut run), []);
    // Back in: the run asks for its place back.
    run.handle_digit(t0 + secs(6.0), Digit::D0);
    assert_eq!(drain(&mut run), [Action::StopPlayback, enqueue(1, true)]);
    assert_eq!(run.path(), ["ask", "wait", "menu", "wait"]);
}

#[test]
fn every_way_out_of_the_queue_takes_its_branch() {
    let t0 = Instant::now();
    let cases = [
        (QueueEvent::Overflow, "queue-overflow"),
        (QueueEvent::NoAgents, "queue-no-agents"),
        (
            QueueEvent::Refused(QueueRefusal::NoAgents),
            "queue-no-agents",
        ),
        (
            QueueEvent::Refused(QueueRefusal::Draining),
            "queue-no-agents",
        ),
        // No `full` branch: the `no_agents` one.
        (QueueEvent::Refused(QueueRefusal::Full), "queue-no-agents"),
        (
            QueueEvent::Refused(QueueRefusal::UnknownQueue),
            "transfer-failed",
        ),
        (QueueEvent::BridgeFailed, "transfer-failed"),
    ];
    for (ev, heard) in cases {
        let mut run = queued(t0, "1");
        drain(&mut run);
        if !matches!(ev, QueueEvent::Refused(_)) {
            run.handle_queue_event(
                t0 + secs(2.0),
                QueueEvent::Joined {
                    position: 1,
                    ewt: None,
                },
            );
            drain(&mut run);
        }
        run.handle_queue_event(t0 + secs(9.0), ev.clone());
        let actions = drain(&mut run);
        assert_eq!(
            actions.last(),
            Some(&play(&[heard], false)),
            "{ev:?}: {actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::LeaveQueue { .. }))
        );
        assert!(!run.is_queued(), "{ev:?}");
    }
}

#[test]
fn bridged_means_no_prompts_no_timers_and_keys_ignored() {
    let t0 = Instant::now();
    let mut run = queued(t0, "1");
    drain(&mut run);
    run.handle_queue_event(
        t0 + secs(2.0),
        QueueEvent::Joined {
            position: 1,
            ewt: None,
        },
    );
    drain(&mut run);
    run.handle_queue_event(t0 + secs(12.0), QueueEvent::Bridged);
    assert_eq!(drain(&mut run), [Action::StopPlayback]);
    assert!(run.is_bridged() && !run.is_queued() && !run.is_finished());
    assert_eq!(run.queue(), Some("support"));
    run.handle_digit(t0 + secs(13.0), Digit::D1);
    run.handle_playback_finished(t0 + secs(13.0));
    run.handle_timeout(t0 + secs(99.0));
    run.handle_queue_event(
        t0 + secs(14.0),
        QueueEvent::Announce {
            position: 1,
            ewt: None,
        },
    );
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.poll_timeout(), None);
    assert_eq!(run.typeahead().count(), 0);
    // The bridge breaks down: the `failed` branch.
    run.handle_queue_event(t0 + secs(15.0), QueueEvent::BridgeFailed);
    assert_eq!(drain(&mut run), [play(&["transfer-failed"], false)]);
}

#[test]
fn a_queue_without_failed_branch_hangs_up_when_the_bridge_fails() {
    let t0 = Instant::now();
    let yaml = Q.replace(", failed: oops }\n      menu:", " }\n      menu:");
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_digit(t0 + secs(1.0), Digit::D1);
    run.handle_digit(t0 + secs(1.0), Digit::Pound);
    drain(&mut run);
    run.handle_queue_event(
        t0 + secs(2.0),
        QueueEvent::Refused(QueueRefusal::UnknownQueue),
    );
    assert_eq!(drain(&mut run), [Action::Hangup]);
}

#[test]
fn a_callback_is_requested_for_the_caller_and_each_answer_has_its_branch() {
    let t0 = Instant::now();
    for (answer, heard) in [
        (QueueEvent::CallbackRegistered, "callback-registered"),
        (QueueEvent::CallbackDuplicate, "callback-duplicate"),
        (QueueEvent::CallbackFailed, "transfer-failed"),
    ] {
        let mut run = queued(t0, "1");
        drain(&mut run);
        run.handle_digit(t0 + secs(3.0), Digit::D1);
        assert_eq!(
            drain(&mut run),
            [
                Action::LeaveQueue { keep_place: true },
                Action::RequestCallback {
                    queue: "support".into(),
                    number: "+15551234567".into()
                }
            ]
        );
        assert_eq!(run.poll_timeout(), Some(t0 + secs(3.0) + CALLBACK_TIMEOUT));
        run.handle_queue_event(t0 + secs(3.5), answer);
        assert_eq!(drain(&mut run), [play(&[heard], false)]);
        assert_eq!(run.path(), ["ask", "wait", "cb", &run.path()[3]]);
    }
}

#[test]
fn a_callback_without_answer_or_without_a_number_fails() {
    let t0 = Instant::now();
    let mut run = queued(t0, "1");
    drain(&mut run);
    run.handle_digit(t0 + secs(3.0), Digit::D1);
    drain(&mut run);
    run.handle_timeout(t0 + secs(4.0));
    assert_eq!(drain(&mut run), [], "early timeout ignored");
    run.handle_timeout(t0 + secs(3.0) + CALLBACK_TIMEOUT);
    assert_eq!(drain(&mut run), [play(&["transfer-failed"], false)]);
    // A late answer finds the run elsewhere.
    run.handle_queue_event(t0 + secs(9.0), QueueEvent::CallbackRegistered);
    assert_eq!(drain(&mut run), []);

    let set = set_of(Q);
    let flow = set.route("ivr").unwrap();
    let mut run = Run::new(
        set,
        flow,
        CallInfo {
            caller: "anonymous".into(),
            dialled: "ivr".into(),
        },
        t0,
    );
    drain(&mut run);
    run.handle_digit(t0 + secs(1.0), Digit::D1);
    run.handle_digit(t0 + secs(1.0), Digit::Pound);
    drain(&mut run);
    run.handle_digit(t0 + secs(2.0), Digit::D1);
    assert_eq!(
        drain(&mut run),
        [
            Action::LeaveQueue { keep_place: true },
            play(&["transfer-failed"], false)
        ],
        "nothing to call back: no request"
    );
}

const XFER: &str = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: ext
    nodes:
      ext:
        collect: { prompt: [enter-pin], into: ext, min: 1, max: 4, retries: 1, max_failures: go }
        next: go
      go: { transfer: { to: "sip:$ext@pbx.example.com", on: { failed: sorry } } }
      sorry: { play: [transfer-failed], next: plain }
      plain: { transfer: "tel:+1555${ext}0" }
"#;

#[test]
fn a_transfer_target_takes_variables_and_a_failure_its_branch() {
    let t0 = Instant::now();
    let mut run = start(XFER, t0);
    drain(&mut run);
    for c in "42#".chars() {
        run.handle_digit(t0 + secs(1.0), d(c));
    }
    assert_eq!(
        drain(&mut run),
        [
            Action::StopPlayback,
            Action::Transfer {
                target: "sip:42@pbx.example.com".into()
            }
        ]
    );
    assert!(!run.is_finished(), "a failed transfer has somewhere to go");
    assert_eq!(run.poll_timeout(), None);
    run.handle_digit(t0 + secs(2.0), Digit::D5);
    run.handle_queue_event(t0 + secs(3.0), QueueEvent::TransferFailed);
    assert_eq!(drain(&mut run), [play(&["transfer-failed"], false)]);
    run.handle_playback_finished(t0 + secs(5.0));
    assert_eq!(
        drain(&mut run),
        [Action::Transfer {
            target: "tel:+1555420".into()
        }]
    );
    // No `failed` branch: the flow is over, and a failure only hangs up.
    assert!(run.is_finished());
    run.handle_queue_event(t0 + secs(6.0), QueueEvent::TransferFailed);
    assert_eq!(drain(&mut run), [Action::Hangup]);
    run.handle_queue_event(t0 + secs(7.0), QueueEvent::TransferFailed);
    assert_eq!(drain(&mut run), []);
}

#[test]
fn an_empty_variable_in_a_transfer_target_takes_failed_without_transferring() {
    let t0 = Instant::now();
    let mut run = start(XFER, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(1.0));
    run.handle_timeout(t0 + secs(6.0));
    // `ext` never set: nothing is dialled; `plain` then has no `failed`: hang up.
    assert_eq!(drain(&mut run), [play(&["transfer-failed"], false)]);
    run.handle_playback_finished(t0 + secs(8.0));
    assert_eq!(drain(&mut run), [Action::Hangup]);
}

// -- compile errors ---------------------------------------------------------------

#[test]
fn the_queue_fixtures_compile_against_the_configured_queues() {
    assert_eq!(errors_with(Q, Some(&queues())), Vec::<String>::new());
    assert_eq!(errors_with(XFER, Some(&queues())), Vec::<String>::new());
    assert_eq!(errors_with(DEMO, Some(&queues())), Vec::<String>::new());
}

#[test]
fn an_unknown_queue_is_located_with_a_suggestion() {
    let yaml = Q.replace("name: support", "name: suport");
    assert_eq!(
        errors_with(&yaml, Some(&queues())),
        [
            "q.yaml:12:17: error: queue `suport` is not defined in phonetree.yaml `queues:` (did you mean `support`?)"
        ]
    );
    // Not checked without the configuration.
    assert_eq!(errors_with(&yaml, None), Vec::<String>::new());
    let none = BTreeSet::new();
    assert_eq!(
        errors_with(Q, Some(&none)),
        [
            "q.yaml:12:17: error: queue `support` is not defined in phonetree.yaml `queues:` (it has none)",
            "q.yaml:20:28: error: queue `support` is not defined in phonetree.yaml `queues:` (it has none)",
        ]
    );
}

#[test]
fn a_queue_must_handle_overflow_and_no_agents_and_only_its_outcomes() {
    let yaml = Q.replace(
        "on: { overflow: over, no_agents: none, failed: oops }",
        "on: { overflw: over, failed: oops, failed: none }",
    );
    assert_eq!(
        errors_with(&yaml, Some(&queues())),
        [
            "q.yaml:16:15: error: `queue` does not handle `overflow`, `no_agents`",
            "q.yaml:16:17: error: `queue` has no outcome `overflw` (did you mean `overflow`?)",
            "q.yaml:16:46: error: outcome `failed` is handled twice (first at q.yaml:16:32)",
        ]
    );
}

#[test]
fn queue_settings_are_checked() {
    let yaml = Q
        .replace("priority: $prio", "priority: high")
        .replace(
            r#"leave: { "1": cb, "9": menu }"#,
            r#"leave: { "1": cb, "12": menu, "1": over }"#,
        )
        .replace(
            "announce: { prompts: [queue-leave-hint] }",
            "announce: { position: maybe }\n          music: [jazz]",
        );
    assert_eq!(
        errors_with(&yaml, Some(&queues())),
        [
            "q.yaml:13:21: error: `priority` must be a whole number from -1000 to 1000 or a `$variable`, found `high`",
            "q.yaml:14:29: error: leave key `12` is not one DTMF key",
            "q.yaml:14:41: error: duplicate leave key `1` (first at q.yaml:14:20)",
            "q.yaml:15:33: error: expected `true` or `false`, found `maybe`",
            "q.yaml:16:19: error: unknown prompt `jazz` (looked for `en/jazz`, `jazz`)",
        ]
    );
}

#[test]
fn a_callback_needs_its_queue_number_and_branches() {
    let yaml = Q.replace(
        "callback: { queue: support, number: $caller, on: { registered: thanks, duplicate: again, failed: oops } }",
        "callback: { queue: sales, on: { registered: thanks, busy: again } }",
    );
    assert_eq!(
        errors_with(&yaml, Some(&queues())),
        [
            "q.yaml:20:19: error: `callback` needs `number:` (e.g. `$caller`, or a collected number)",
            "q.yaml:20:39: error: `callback` does not handle `failed`",
            "q.yaml:20:61: error: `callback` has no outcome `busy` (its outcomes: registered, duplicate, failed)",
        ]
    );
}

#[test]
fn transfer_targets_are_checked_at_compile_time() {
    let yaml = XFER
        .replace("sip:$ext@pbx.example.com", "http://$ext")
        .replace("tel:+1555${ext}0", "tel:+1555$extn");
    assert_eq!(
        errors_with(&yaml, None),
        [
            "q.yaml:10:29: error: transfer target `http://$ext` must be a `sip:`, `sips:` or `tel:` URI",
            "q.yaml:12:26: error: unknown variable `extn` (did you mean `ext`?)",
        ]
    );
}
