use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::flow::{Source, compile};

const DEMO: &str = include_str!("../../../flows/main.yaml");

/// The demo prompts (shared with the compiler tests) plus two French translations.
fn catalog() -> HashMap<String, PromptId> {
    let mut m = crate::flow::compile::tests::demo_catalog();
    for n in ["welcome", "main-menu"] {
        let id = PromptId(m.len() as u32);
        m.insert(format!("fr/{n}"), id);
    }
    m
}

fn p(name: &str) -> PromptId {
    catalog()[name]
}

fn en(name: &str) -> PromptId {
    p(&format!("en/{name}"))
}

fn set_of(yaml: &str) -> Arc<FlowSet> {
    let src = Source {
        path: PathBuf::from("test.yaml"),
        text: yaml.to_string(),
    };
    match compile(&[src], &catalog(), 1) {
        Ok((s, _)) => Arc::new(s),
        Err(e) => panic!("{}", crate::flow::diagnostic::render_all(&e)),
    }
}

fn start(yaml: &str, t0: Instant) -> Run {
    let set = set_of(yaml);
    let flow = set.route("ivr").expect("route");
    Run::new(
        set,
        flow,
        CallInfo {
            caller: "+15551234567".into(),
            dialled: "ivr".into(),
        },
        t0,
    )
}

fn drain(run: &mut Run) -> Vec<Action> {
    std::iter::from_fn(|| run.poll_action()).collect()
}

fn play(names: &[&str], barge_in: bool) -> Action {
    Action::Play {
        prompts: names.iter().map(|n| en(n)).collect(),
        barge_in,
    }
}

fn d(c: char) -> Digit {
    Digit::from_char(c).unwrap()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Demo flow, welcome played, menu prompt played: listening since `t0 + 4s`.
fn at_menu(t0: Instant) -> Run {
    let mut run = start(DEMO, t0);
    assert_eq!(drain(&mut run), [play(&["welcome"], false)]);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["main-menu"], true)]);
    assert_eq!(run.poll_timeout(), None, "no timer while the prompt plays");
    run.handle_playback_finished(t0 + secs(4.0));
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.poll_timeout(), Some(t0 + secs(9.0)));
    run
}

// -- play / goto / hangup ------------------------------------------------------

#[test]
fn play_goto_hangup() {
    let t0 = Instant::now();
    let mut run = start(
        "routes: [{ number: default, flow: f }]\nflows:\n  f:\n    start: a\n    nodes:\n      a: { play: [welcome, hours], next: b }\n      b: { goto: c }\n      c: { hangup: {} }\n",
        t0,
    );
    assert_eq!(drain(&mut run), [play(&["welcome", "hours"], false)]);
    assert!(!run.is_finished());
    run.handle_playback_finished(t0 + secs(3.0));
    assert_eq!(drain(&mut run), [Action::Hangup]);
    assert!(run.is_finished());
    assert_eq!(run.path(), ["a", "b", "c"]);
    // Everything after the end is ignored.
    run.handle_digit(t0 + secs(4.0), Digit::D1);
    run.handle_playback_finished(t0 + secs(4.0));
    run.handle_timeout(t0 + secs(40.0));
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.poll_timeout(), None);
}

#[test]
fn spurious_playback_finished_is_ignored() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    run.handle_playback_finished(t0 + secs(5.0));
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.poll_timeout(), Some(t0 + secs(9.0)));
}

#[test]
fn unknown_flow_id_hangs_up() {
    let t0 = Instant::now();
    let set = set_of(DEMO);
    let mut run = Run::new(set, FlowId(42), CallInfo::default(), t0);
    assert_eq!(drain(&mut run), [Action::Hangup]);
    assert!(run.is_finished());
}

// -- menu ------------------------------------------------------------------------

#[test]
fn menu_key_after_prompt_takes_option() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    run.handle_digit(t0 + secs(5.0), Digit::D1);
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    assert_eq!(run.poll_timeout(), None);
    run.handle_playback_finished(t0 + secs(8.0));
    assert_eq!(drain(&mut run), [play(&["main-menu"], true)]);
    assert_eq!(run.path(), ["welcome", "main_menu", "hours", "main_menu"]);
    assert_eq!(run.current_node(), "main_menu");
}

#[test]
fn barge_in_stops_menu_prompt_and_evaluates_key() {
    let t0 = Instant::now();
    let mut run = start(DEMO, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["main-menu"], true)]);
    run.handle_digit(t0 + secs(2.5), Digit::D2);
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["support"], false)]
    );
}

#[test]
fn type_ahead_during_play_is_used_by_the_menu() {
    let t0 = Instant::now();
    let mut run = start(DEMO, t0);
    drain(&mut run);
    // The welcome has no barge-in: the key is kept, the prompt goes on.
    run.handle_digit(t0 + secs(1.0), Digit::D0);
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.typeahead().collect::<Vec<_>>(), [Digit::D0]);
    run.handle_playback_finished(t0 + secs(2.0));
    // The menu consumes the key at once: no menu prompt, straight to the agent queue.
    assert_eq!(
        drain(&mut run),
        [Action::Enqueue {
            queue: "support".into(),
            priority: 0,
            resume: false
        }]
    );
    assert_eq!(run.typeahead().count(), 0);
    assert_eq!(run.path(), ["welcome", "main_menu", "agent", "agent_queue"]);
}

#[test]
fn play_with_barge_in_skips_and_passes_the_key_on() {
    let t0 = Instant::now();
    let yaml = DEMO.replace(
        "        play: [welcome]\n        next: main_menu",
        "        play: [welcome]\n        barge_in: true\n        next: main_menu",
    );
    let mut run = start(&yaml, t0);
    assert_eq!(drain(&mut run), [play(&["welcome"], true)]);
    run.handle_digit(t0 + secs(0.5), Digit::D1);
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["hours"], false)]
    );
}

#[test]
fn flush_discards_type_ahead() {
    let t0 = Instant::now();
    let yaml = DEMO.replace(
        "      main_menu:\n        menu:",
        "      main_menu:\n        flush: true\n        menu:",
    );
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_digit(t0 + secs(1.0), Digit::D1);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["main-menu"], true)]);
}

#[test]
fn invalid_key_plays_invalid_then_menu_again() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    run.handle_digit(t0 + secs(5.0), Digit::D9);
    assert_eq!(drain(&mut run), [play(&["invalid", "main-menu"], true)]);
    assert_eq!(run.poll_timeout(), None);
    run.handle_playback_finished(t0 + secs(8.0));
    assert_eq!(run.poll_timeout(), Some(t0 + secs(13.0)));
    run.handle_digit(t0 + secs(9.0), Digit::D2);
    assert_eq!(drain(&mut run), [play(&["support"], false)]);
}

#[test]
fn key_during_feedback_prompt_barges_in() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    run.handle_digit(t0 + secs(5.0), Digit::D9);
    drain(&mut run);
    run.handle_digit(t0 + secs(5.5), Digit::D1);
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["hours"], false)]
    );
}

#[test]
fn no_input_timeout_plays_no_input_then_menu() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    // Early or spurious timer events change nothing.
    run.handle_timeout(t0 + secs(8.9));
    assert_eq!(drain(&mut run), []);
    run.handle_timeout(t0 + secs(9.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "main-menu"], true)]);
    assert_eq!(run.poll_timeout(), None);
    run.handle_playback_finished(t0 + secs(12.0));
    assert_eq!(run.poll_timeout(), Some(t0 + secs(17.0)));
}

#[test]
fn max_failures_goes_to_its_target() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    // 1: invalid, 2: no input, 3: invalid -> goodbye node (retries: 3).
    run.handle_digit(t0 + secs(5.0), Digit::D9);
    assert_eq!(drain(&mut run), [play(&["invalid", "main-menu"], true)]);
    run.handle_playback_finished(t0 + secs(8.0));
    run.handle_timeout(t0 + secs(13.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "main-menu"], true)]);
    run.handle_playback_finished(t0 + secs(16.0));
    run.handle_digit(t0 + secs(17.0), Digit::Pound);
    // Last failure: the feedback plays in full (no barge-in), then the target.
    assert_eq!(drain(&mut run), [play(&["invalid"], false)]);
    run.handle_digit(t0 + secs(17.5), Digit::D1);
    assert_eq!(drain(&mut run), []);
    run.handle_playback_finished(t0 + secs(18.0));
    // The key typed during the feedback stays buffered; `goodbye` is a play node.
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
    run.handle_playback_finished(t0 + secs(20.0));
    assert_eq!(drain(&mut run), [Action::Hangup]);
    assert!(run.is_finished());
    assert_eq!(run.path(), ["welcome", "main_menu", "goodbye", "end"]);
}

#[test]
fn max_failures_without_target_says_goodbye_and_hangs_up() {
    let t0 = Instant::now();
    let mut run = start(
        "routes: [{ number: default, flow: f }]\nflows:\n  f:\n    start: m\n    nodes:\n      m:\n        menu:\n          prompt: [main-menu]\n          retries: 1\n          timeout: 2s\n          no_input: [no-input]\n          options: { \"1\": h }\n      h: { play: [hours], next: m }\n",
        t0,
    );
    assert_eq!(drain(&mut run), [play(&["main-menu"], true)]);
    run.handle_playback_finished(t0 + secs(1.0));
    run.handle_timeout(t0 + secs(3.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "goodbye"], false)]);
    run.handle_playback_finished(t0 + secs(6.0));
    assert_eq!(drain(&mut run), [Action::Hangup]);
}

#[test]
fn max_failures_without_prompts_hangs_up_at_once() {
    let t0 = Instant::now();
    let set = {
        let src = Source {
            path: PathBuf::from("t.yaml"),
            text: "routes: [{ number: default, flow: f }]\nflows:\n  f:\n    start: m\n    nodes:\n      m:\n        menu:\n          prompt: [main-menu]\n          retries: 1\n          options: { \"1\": m }\n".into(),
        };
        let mut cat = catalog();
        cat.remove("en/goodbye");
        Arc::new(compile(&[src], &cat, 1).unwrap().0)
    };
    let mut run = Run::new(set, FlowId(0), CallInfo::default(), t0);
    drain(&mut run);
    run.handle_digit(t0, Digit::D5);
    assert_eq!(drain(&mut run), [Action::StopPlayback, Action::Hangup]);
}

#[test]
fn star_option_replays_the_menu_and_resets_failures() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    run.handle_digit(t0 + secs(5.0), Digit::D9);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(8.0));
    run.handle_digit(t0 + secs(9.0), Digit::Star);
    assert_eq!(drain(&mut run), [play(&["main-menu"], true)]);
    run.handle_playback_finished(t0 + secs(11.0));
    // Two more failures are allowed before max_failures (count restarted).
    run.handle_timeout(t0 + secs(16.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "main-menu"], true)]);
    run.handle_playback_finished(t0 + secs(19.0));
    run.handle_timeout(t0 + secs(24.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "main-menu"], true)]);
}

#[test]
fn fast_keys_after_an_invalid_one_skip_the_feedback() {
    let t0 = Instant::now();
    let mut run = start(DEMO, t0);
    drain(&mut run);
    run.handle_digit(t0 + secs(0.5), Digit::D9);
    run.handle_digit(t0 + secs(0.7), Digit::D2);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["support"], false)]);
}

#[test]
fn multi_digit_menu_waits_for_inter_digit_timeout() {
    let t0 = Instant::now();
    let mut run = start(
        "routes: [{ number: default, flow: f }]\nflows:\n  f:\n    start: m\n    nodes:\n      m:\n        menu:\n          prompt: [main-menu]\n          max_digits: 2\n          inter_digit_timeout: 2s\n          invalid: [invalid]\n          options: { \"1\": a, \"12\": b, \"3\": c }\n      a: { play: [hours], next: m }\n      b: { play: [support], next: m }\n      c: { play: [goodbye], next: m }\n",
        t0,
    );
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(1.0));
    // "1" could become "12": wait.
    run.handle_digit(t0 + secs(2.0), Digit::D1);
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.poll_timeout(), Some(t0 + secs(4.0)));
    run.handle_timeout(t0 + secs(4.0));
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    run.handle_playback_finished(t0 + secs(5.0));
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(6.0));
    // "12" is complete at once.
    run.handle_digit(t0 + secs(7.0), Digit::D1);
    run.handle_digit(t0 + secs(7.5), Digit::D2);
    assert_eq!(drain(&mut run), [play(&["support"], false)]);
    run.handle_playback_finished(t0 + secs(8.0));
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(9.0));
    // "1#" ends the entry early.
    run.handle_digit(t0 + secs(10.0), Digit::D1);
    run.handle_digit(t0 + secs(10.2), Digit::Pound);
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
}

#[test]
fn repeat_key_replays_short_prompt_without_failure() {
    let t0 = Instant::now();
    let mut run = start(
        "routes: [{ number: default, flow: f }]\nflows:\n  f:\n    start: m\n    nodes:\n      m:\n        menu:\n          prompt: [welcome, main-menu]\n          short_prompt: [main-menu]\n          repeat: \"*\"\n          retries: 1\n          options: { \"1\": m }\n",
        t0,
    );
    assert_eq!(drain(&mut run), [play(&["welcome", "main-menu"], true)]);
    run.handle_digit(t0 + secs(1.0), Digit::Star);
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["main-menu"], true)]
    );
    run.handle_digit(t0 + secs(2.0), Digit::Star);
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["main-menu"], true)]
    );
    assert!(!run.is_finished());
}

#[test]
fn menu_without_barge_in_buffers_keys_until_prompt_ends() {
    let t0 = Instant::now();
    let yaml = DEMO.replace(
        "          prompt: [main-menu]\n",
        "          prompt: [main-menu]\n          barge_in: false\n",
    );
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["main-menu"], false)]);
    run.handle_digit(t0 + secs(3.0), Digit::D1);
    assert_eq!(drain(&mut run), []);
    run.handle_playback_finished(t0 + secs(4.0));
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
}

// -- robustness ----------------------------------------------------------------

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn random_queue_event(r: u64) -> QueueEvent {
    let position = (r >> 8) as usize % 5;
    let ewt = (r & 1 == 0).then(|| Duration::from_secs((r >> 16) % 900));
    match r % 16 {
        0 => QueueEvent::Joined { position, ewt },
        1 => QueueEvent::Refused(QueueRefusal::UnknownQueue),
        2 => QueueEvent::Refused(QueueRefusal::Full),
        3 => QueueEvent::Refused(QueueRefusal::NoAgents),
        4 => QueueEvent::Refused(QueueRefusal::Draining),
        5 | 6 => QueueEvent::Announce { position, ewt },
        7 => QueueEvent::Overflow,
        8 => QueueEvent::NoAgents,
        9 => QueueEvent::AgentRinging,
        10 => QueueEvent::Bridged,
        11 => QueueEvent::BridgeFailed,
        12 => QueueEvent::CallbackRegistered,
        13 => QueueEvent::CallbackDuplicate,
        14 => QueueEvent::CallbackFailed,
        _ => QueueEvent::TransferFailed,
    }
}

/// Random events never panic and the run is always either finished, playing
/// something, or waiting on a timer: it can never get stuck.
pub(crate) fn fuzz_flow(yaml: &str, seed: u64, runs: usize) {
    let set = set_of(yaml);
    let mut rng = Lcg(seed);
    for _ in 0..runs {
        let t0 = Instant::now();
        let mut now = t0;
        let flow = set.route("ivr").unwrap();
        let mut run = Run::new(set.clone(), flow, CallInfo::default(), now);
        let mut playing = false;
        let mut asked: Vec<u64> = Vec::new();
        // Waiting on the ACD or a transfer leg: the run needs no timer then.
        let mut outside = false;
        for _ in 0..300 {
            for a in std::iter::from_fn(|| run.poll_action()) {
                match a {
                    Action::Play { prompts, .. } => {
                        assert!(!prompts.is_empty());
                        playing = true;
                    }
                    Action::StopPlayback => playing = false,
                    Action::Hangup => playing = false,
                    Action::Transfer { .. } => {
                        playing = false;
                        outside = true;
                    }
                    Action::Directory { id, .. } => asked.push(id),
                    Action::Enqueue { priority, .. } => {
                        assert!(priority.abs() <= crate::flow::compile::MAX_PRIORITY);
                        outside = true;
                    }
                    Action::LeaveQueue { keep_place } => assert!(keep_place),
                    Action::RequestCallback { number, .. } => {
                        assert!(!number.is_empty());
                    }
                }
            }
            if run.is_finished() {
                assert!(run.poll_timeout().is_none());
                break;
            }
            if !run.is_queued() && !run.is_bridged() {
                outside = outside && !playing && run.poll_timeout().is_none();
            }
            assert!(
                playing || run.poll_timeout().is_some() || outside,
                "stuck at {} ({:?})",
                run.current_node(),
                run.path()
            );
            if run.is_bridged() {
                assert!(run.poll_timeout().is_none(), "no timers while bridged");
            }
            now += Duration::from_millis(rng.next() % 3000);
            match rng.next() % 7 {
                6 => run.handle_queue_event(now, random_queue_event(rng.next())),
                0 | 1 => run.handle_digit(now, Digit::ALL[(rng.next() % 16) as usize]),
                2 => {
                    if playing {
                        playing = false;
                        run.handle_playback_finished(now)
                    }
                }
                3 => {
                    if let Some(t) = run.poll_timeout() {
                        now = now.max(t);
                        run.handle_timeout(now);
                    }
                }
                4 => run.handle_timeout(now),
                5 if !asked.is_empty() => {
                    // Any answer to any request, in time or late, of any kind.
                    let id = asked[(rng.next() % asked.len() as u64) as usize];
                    let answer = random_answer(rng.next());
                    run.handle_directory_response(now, id, answer);
                }
                _ => run.handle_playback_finished(now),
            }
        }
        assert!(run.path().len() <= MAX_PATH + 1);
    }
}

/// A directory answer of any kind, picked by `r`.
fn random_answer(r: u64) -> crate::directory::DirectoryResponse {
    use crate::directory::{DirectoryResponse as R, PinOutcome};
    match r % 8 {
        0 => R::Found(Box::new(directory::alice())),
        1 => R::NotFound,
        2 => R::Pin(PinOutcome::Ok),
        3 => R::Pin(PinOutcome::Wrong { attempts_left: 1 }),
        4 => R::Pin(PinOutcome::Locked { until_unix_ms: 5 }),
        5 => R::Updated,
        6 => R::TimedOut,
        _ => R::Failed("boom".into()),
    }
}

#[test]
fn random_events_never_panic_or_stall_demo() {
    fuzz_flow(DEMO, 1, 300);
    fuzz_flow(
        include_str!("../../../tests/data/flows-e2e/main.yaml"),
        2,
        300,
    );
}

// -- milestone 2 nodes -----------------------------------------------------------

const COLLECT: &str = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: ask
    nodes:
      ask:
        collect:
          prompt: [enter-pin]
          into: pin
          min: 4
          max: 6
          timeout: 5s
          inter_digit_timeout: 2s
          total_timeout: 20s
          pattern: "[1-9]XXX!"
          retries: 2
          invalid: [invalid]
          no_input: [no-input]
          max_failures: bye
        next: check
      check:
        branch:
          cases:
            - { var: pin, equals: "1234", goto: ok }
            - { var: pin, pattern: "9.", goto: nines }
          else: bye
      ok: { play: [hours], next: bye }
      nines: { play: [support], next: bye }
      bye: { hangup: {} }
"#;

fn at_collect(t0: Instant) -> Run {
    let mut run = start(COLLECT, t0);
    assert_eq!(drain(&mut run), [play(&["enter-pin"], true)]);
    run.handle_playback_finished(t0 + secs(1.0));
    assert_eq!(run.poll_timeout(), Some(t0 + secs(6.0)));
    run
}

fn keys(run: &mut Run, at: Instant, s: &str) {
    for (i, c) in s.chars().enumerate() {
        run.handle_digit(at + Duration::from_millis(100 * i as u64), d(c));
    }
}

#[test]
fn collect_terminator_ends_input() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    keys(&mut run, t0 + secs(2.0), "1234#");
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    assert_eq!(run.var("pin"), Some("1234"));
    assert_eq!(run.path(), ["ask", "check", "ok"]);
}

#[test]
fn collect_max_digits_ends_input() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    keys(&mut run, t0 + secs(2.0), "99999");
    assert_eq!(drain(&mut run), []);
    run.handle_digit(t0 + secs(3.0), Digit::D9);
    assert_eq!(drain(&mut run), [play(&["support"], false)]);
    assert_eq!(run.var("pin"), Some("999999"));
}

#[test]
fn collect_inter_digit_timeout_ends_input() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    keys(&mut run, t0 + secs(2.0), "1234");
    // First-digit timer gone; inter-digit runs from the last key.
    assert_eq!(run.poll_timeout(), Some(t0 + secs(2.3) + secs(2.0)));
    run.handle_timeout(t0 + secs(4.3));
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
}

#[test]
fn collect_too_short_is_invalid_then_retry() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    keys(&mut run, t0 + secs(2.0), "12#");
    assert_eq!(drain(&mut run), [play(&["invalid", "enter-pin"], true)]);
    run.handle_playback_finished(t0 + secs(4.0));
    keys(&mut run, t0 + secs(5.0), "1234#");
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
}

#[test]
fn collect_pattern_mismatch_is_invalid() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    keys(&mut run, t0 + secs(2.0), "0123#");
    assert_eq!(drain(&mut run), [play(&["invalid", "enter-pin"], true)]);
    assert_eq!(run.var("pin"), None);
}

#[test]
fn collect_no_input_then_max_failures() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    run.handle_timeout(t0 + secs(6.0));
    assert_eq!(drain(&mut run), [play(&["no-input", "enter-pin"], true)]);
    run.handle_playback_finished(t0 + secs(8.0));
    run.handle_timeout(t0 + secs(13.0));
    assert_eq!(drain(&mut run), [play(&["no-input"], false)]);
    run.handle_playback_finished(t0 + secs(14.0));
    assert_eq!(drain(&mut run), [Action::Hangup]);
    assert_eq!(run.path(), ["ask", "bye"]);
}

#[test]
fn collect_total_timeout_cuts_a_slow_caller() {
    let t0 = Instant::now();
    let mut run = at_collect(t0);
    // A key every 1.9 s keeps the inter-digit timer alive...
    for i in 0..5 {
        run.handle_digit(t0 + secs(2.0 + 1.9 * i as f64), Digit::D1);
    }
    // ...5 digits by 9.6 s; total timer (from 1 s) fires at 21 s, but the
    // inter-digit one fires first at 11.6 s with a valid 5-digit entry.
    assert_eq!(run.poll_timeout(), Some(t0 + secs(9.6) + secs(2.0)));
    let mut slow = at_collect(t0);
    for i in 0..3 {
        slow.handle_digit(t0 + secs(15.0 + 1.9 * i as f64), Digit::D1);
    }
    // 3 digits, last at 18.8 s; total deadline at 21 s comes before 20.8+...
    assert_eq!(slow.poll_timeout(), Some(t0 + secs(18.8) + secs(2.0)));
    slow.handle_digit(t0 + secs(20.7), Digit::D1);
    assert_eq!(slow.poll_timeout(), Some(t0 + secs(21.0)));
    slow.handle_timeout(t0 + secs(21.0));
    // 4 digits "1111" is valid at the total timeout: taken.
    assert_eq!(slow.var("pin"), Some("1111"));
}

#[test]
fn collect_uses_type_ahead() {
    let t0 = Instant::now();
    let yaml = COLLECT
        .replace("    start: ask\n", "    start: hello\n")
        .replace(
            "    nodes:\n",
            "    nodes:\n      hello: { play: [welcome], next: ask }\n",
        );
    let mut run = start(&yaml, t0);
    assert_eq!(drain(&mut run), [play(&["welcome"], false)]);
    keys(&mut run, t0 + secs(0.5), "1234#");
    assert_eq!(drain(&mut run), []);
    run.handle_playback_finished(t0 + secs(2.0));
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
}

#[test]
fn set_branch_and_builtin_variables() {
    let t0 = Instant::now();
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: s
    nodes:
      s:
        set: { tier: gold, who: $caller, amount: "150" }
        next: b1
      b1:
        branch:
          cases:
            - { var: nothing, is_set: true, goto: bad }
            - { var: amount, lt: 100, goto: bad }
            - { var: dialled, not_equals: ivr, goto: bad }
            - { var: tier, in: [silver, bronze], goto: bad }
            - { var: who, equals: $caller, goto: b2 }
          else: bad
      b2:
        branch:
          cases:
            - { var: amount, ge: 150, goto: good }
          else: bad
      good: { play: [hours], next: end }
      bad: { play: [invalid], next: end }
      end: { hangup: {} }
      unused: { set: { nothing: "x" }, next: end }
"#;
    let mut run = start(yaml, t0);
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    assert_eq!(run.var("who"), Some("+15551234567"));
    assert_eq!(run.var("dialled"), Some("ivr"));
    assert_eq!(run.path(), ["s", "b1", "b2", "good"]);
}

#[test]
fn say_digits_and_numbers() {
    let t0 = Instant::now();
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: a
    nodes:
      a: { set: { n: "-1234567" }, next: b }
      b: { say: { number: $n }, next: c }
      c: { say: { digits: "40*#" }, next: d }
      d: { say: { number: "0" }, next: e }
      e: { say: { money: "3.50" }, next: f }
      f: { say: { date: "20260329" }, next: g }
      g: { say: { time: "$t" }, barge_in: true, next: h }
      h: { set: { t: "1705" }, next: g }
"#;
    let mut run = start(yaml, t0);
    let names =
        |v: &[&str]| -> Vec<PromptId> { v.iter().map(|n| en(&format!("say/{n}"))).collect() };
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: names(&[
                "minus", "1", "million", "2", "hundred", "30", "4", "thousand", "5", "hundred",
                "60", "7"
            ]),
            barge_in: false
        }]
    );
    run.handle_playback_finished(t0 + secs(3.0));
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: names(&["4", "0", "star", "pound"]),
            barge_in: false
        }]
    );
    run.handle_playback_finished(t0 + secs(4.0));
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: names(&["0"]),
            barge_in: false
        }]
    );
    run.handle_playback_finished(t0 + secs(5.0));
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: names(&["3", "dollars", "and", "50", "cents"]),
            barge_in: false
        }]
    );
    run.handle_playback_finished(t0 + secs(6.0));
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: names(&["sunday", "march", "ord-29", "2", "thousand", "20", "6"]),
            barge_in: false
        }]
    );
    // `$t` is not set yet: nothing to say, straight on to `h`, then `g` again.
    run.handle_playback_finished(t0 + secs(7.0));
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: names(&["5", "0", "5", "pm"]),
            barge_in: true
        }]
    );
    assert_eq!(run.path()[run.path().len() - 3..], ["g", "h", "g"]);
}

#[test]
fn subflow_returns_and_transfer_ends() {
    let t0 = Instant::now();
    let yaml = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: call
    nodes:
      call: { subflow: greet, next: after }
      after: { transfer: "sip:agent@example.com" }
  greet:
    start: hi
    nodes:
      hi: { play: [welcome], next: done }
      done: { return: {} }
"#;
    let mut run = start(yaml, t0);
    assert_eq!(drain(&mut run), [play(&["welcome"], false)]);
    assert_eq!(run.current_node(), "hi");
    run.handle_playback_finished(t0 + secs(1.0));
    assert_eq!(
        drain(&mut run),
        [Action::Transfer {
            target: "sip:agent@example.com".into()
        }]
    );
    assert!(run.is_finished());
    assert_eq!(run.path(), ["call", "greet.hi", "greet.done", "after"]);
}

#[test]
fn recursive_subflow_is_cut_at_max_depth() {
    let t0 = Instant::now();
    let yaml = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: again
    nodes:
      again: { subflow: main, next: again }
"#;
    let mut run = start(yaml, t0);
    assert_eq!(drain(&mut run), [Action::Hangup]);
    assert_eq!(run.path().len(), MAX_SUBFLOW_DEPTH + 1);
}

#[test]
fn return_outside_subflow_hangs_up() {
    let t0 = Instant::now();
    let mut run = start(
        "routes: [{ number: default, flow: f }]\nflows:\n  f:\n    start: r\n    nodes:\n      r: { return: {} }\n",
        t0,
    );
    assert_eq!(drain(&mut run), [Action::Hangup]);
}

#[test]
fn language_switch_uses_translations_with_fallback() {
    let t0 = Instant::now();
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: fr
    nodes:
      fr: { language: fr, next: hello }
      hello: { play: [welcome, hours], next: end }
      end: { hangup: {} }
"#;
    let src = Source {
        path: PathBuf::from("t.yaml"),
        text: yaml.into(),
    };
    let (set, warnings) = compile(&[src], &catalog(), 1).unwrap();
    // `fr/hours` is missing: a warning, and the English prompt is used.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .message
            .contains("missing translation `fr/hours`")
    );
    let mut run = Run::new(Arc::new(set), FlowId(0), CallInfo::default(), t0);
    assert_eq!(
        drain(&mut run),
        [Action::Play {
            prompts: vec![p("fr/welcome"), p("en/hours")],
            barge_in: false
        }]
    );
    assert_eq!(run.language(), "fr");
}

const ALL_NODES: &str = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: hello
    nodes:
      hello: { play: [welcome], barge_in: true, next: menu }
      menu:
        menu:
          prompt: [main-menu]
          timeout: 1s
          retries: 2
          max_digits: 2
          invalid: [invalid]
          no_input: [no-input]
          repeat: "*"
          options: { "1": pin, "2": sub, "3": fr, "45": xfer, "0": bye, "9": menu, "7": q, "8": cb, "6": xfer2 }
          max_failures: bye
      pin:
        collect:
          prompt: [enter-pin]
          into: pin
          digits: 4
          timeout: 1s
          inter_digit_timeout: 1s
          retries: 2
        next: check
      check:
        branch:
          cases: [{ var: pin, equals: "1234", goto: readback }]
          else: menu
      readback: { say: { digits: $pin }, barge_in: true, next: menu }
      sub: { subflow: other, next: menu }
      fr: { language: fr, next: menu }
      xfer: { transfer: "sip:agent@example.com" }
      xfer2: { transfer: { to: "sip:$pin@example.com", on: { failed: menu } } }
      q:
        queue:
          name: support
          priority: $pin
          leave: { "1": cb, "9": menu }
          on: { overflow: menu, no_agents: bye, failed: menu }
      cb:
        callback: { queue: support, number: $caller, on: { registered: bye, failed: menu } }
      bye: { play: [goodbye], next: end }
      end: { hangup: {} }
  other:
    start: s
    nodes:
      s: { set: { visited: "yes" }, next: p }
      p: { play: [hours], next: r }
      r: { return: {} }
"#;

#[test]
fn random_events_never_panic_or_stall_all_nodes() {
    fuzz_flow(ALL_NODES, 3, 1500);
    fuzz_flow(COLLECT, 4, 500);
}

const HOURS: &str = r#"
routes: [{ number: default, flow: f }]
calendars:
  office:
    timezone: Europe/Berlin
    weekly:
      mon-fri: ["09:00-12:30", "13:30-17:00"]
      sat: "10:00-14:00"
      sun: closed
    holidays: ["2026-12-25"]
    overrides:
      "2026-12-24": "09:00-12:00"
flows:
  f:
    start: check
    nodes:
      check:
        hours: { calendar: office, open: open, closed: closed, holiday: holiday }
      open: { play: [hours], next: end }
      closed: { play: [goodbye], next: end }
      holiday: { play: [support], next: end }
      end: { hangup: {} }
"#;

fn hours_at(utc: &str) -> Vec<Action> {
    let t0 = Instant::now();
    let set = set_of(HOURS);
    let wall = SystemTime::from(utc.parse::<jiff::Timestamp>().unwrap());
    let mut run = Run::new_at(set, FlowId(0), CallInfo::default(), t0, wall);
    drain(&mut run)
}

#[test]
fn hours_node_follows_calendar_across_dst() {
    let open = [play(&["hours"], false)];
    let closed = [play(&["goodbye"], false)];
    // Mon 2026-03-30 (CEST, UTC+2): 09:30 local = 07:30Z.
    assert_eq!(hours_at("2026-03-30T07:30:00Z"), open);
    // Mon 2026-03-23 (CET, UTC+1): 07:30Z is 08:30 local, before opening.
    assert_eq!(hours_at("2026-03-23T07:30:00Z"), closed);
    // Lunch break.
    assert_eq!(hours_at("2026-03-30T11:00:00Z"), closed);
    // Saturday, Sunday.
    assert_eq!(hours_at("2026-03-28T10:00:00Z"), open);
    assert_eq!(hours_at("2026-03-29T10:00:00Z"), closed);
    // Holiday and override.
    assert_eq!(
        hours_at("2026-12-25T10:00:00Z"),
        [play(&["support"], false)]
    );
    assert_eq!(hours_at("2026-12-24T10:00:00Z"), open);
    assert_eq!(hours_at("2026-12-24T11:30:00Z"), closed);
}

#[test]
fn hours_uses_time_elapsed_since_the_call_started() {
    // Call starts 16:59:30 local (CEST) on a Monday; the hours node is
    // reached 40 s later, after a prompt: the office has closed by then.
    let yaml = HOURS
        .replace("    start: check\n", "    start: hi\n")
        .replace(
            "    nodes:\n",
            "    nodes:\n      hi: { play: [welcome], next: check }\n",
        );
    let t0 = Instant::now();
    let wall = SystemTime::from("2026-03-30T14:59:30Z".parse::<jiff::Timestamp>().unwrap());
    let mut run = Run::new_at(set_of(&yaml), FlowId(0), CallInfo::default(), t0, wall);
    assert_eq!(drain(&mut run), [play(&["welcome"], false)]);
    run.handle_playback_finished(t0 + secs(40.0));
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
}

#[test]
fn hours_without_wall_clock_is_closed() {
    let t0 = Instant::now();
    let mut run = Run::new(set_of(HOURS), FlowId(0), CallInfo::default(), t0);
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
}

mod directory;
mod queue;
mod survey;
