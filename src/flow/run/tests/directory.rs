//! `lookup`, `verify_pin` and `update` nodes on a fake clock: every branch,
//! the filler, the timeout and late answers; and their compile errors.

use super::*;
use crate::directory::{
    Account, Appointment, AppointmentStatus, Customer, CustomerRecord, DirectoryRequest,
    DirectoryResponse, LookupKey, Order, PinOutcome,
};

pub(super) fn alice() -> CustomerRecord {
    CustomerRecord {
        customer: Customer {
            id: "1001".into(),
            name: "Alice Smith".into(),
            language: "en".into(),
            tier: "gold".into(),
        },
        account: Some(Account {
            balance_minor: 12345,
            currency: "USD".into(),
        }),
        last_order: Some(Order {
            id: "A-5001".into(),
            status: "shipped".into(),
            placed_on: "2026-11-20".into(),
            shipped_on: Some("2026-11-24".into()),
            eta: None,
        }),
        next_appointment: Appointment::new(
            "AP-9001",
            "2027-12-03T14:30:00-05:00",
            AppointmentStatus::Scheduled,
        ),
    }
}

fn found() -> DirectoryResponse {
    DirectoryResponse::Found(Box::new(alice()))
}

const DIR: &str = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: find
    nodes:
      find:
        lookup:
          phone: $caller
          filler: [hours]
          on: { found: known, not_found: ask_id, error: err, timeout: slow }
      ask_id:
        collect: { prompt: [enter-pin], into: cid, max: 8 }
        next: find_id
      find_id:
        lookup:
          id: $cid
          timeout: 2s
          on: { found: known, not_found: goodbye, error: err, timeout: slow }
      known:
        say: { money: $account.amount, currency: $account.currency }
        next: ask_pin
      ask_pin:
        collect: { prompt: [enter-pin], into: pin, digits: 4 }
        next: check
      check:
        verify_pin:
          pin: $pin
          on: { ok: confirm, wrong: wrong, locked: locked, error: err, timeout: slow }
      wrong:
        branch:
          cases: [{ var: pin.attempts_left, gt: 0, goto: ask_pin }]
          else: locked
      confirm:
        update:
          status: confirmed
          on: { ok: done, not_found: err, error: err, timeout: slow }
      done: { say: { date: $appointment.date }, next: bye }
      locked: { play: [agents-busy], next: bye }
      err: { play: [support], next: bye }
      slow: { play: [no-input], next: bye }
      goodbye: { play: [goodbye], next: bye }
      bye: { hangup: {} }
"#;

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| format!("say/{s}")).collect()
}

fn says(words: &[&str]) -> Action {
    Action::Play {
        prompts: names(words).iter().map(|n| en(n)).collect(),
        barge_in: false,
    }
}

fn lookup_phone(id: u64) -> Action {
    Action::Directory {
        id,
        request: DirectoryRequest::Lookup {
            by: LookupKey::Phone("+15551234567".into()),
        },
    }
}

const BALANCE: &[&str] = &[
    "1", "hundred", "20", "3", "dollars", "and", "40", "5", "cents",
];

/// At `check`, waiting for the PIN answer (request 2), after a lookup and a
/// PIN typed at 10 s.
fn at_pin_check(t0: Instant) -> Run {
    let mut run = start(DIR, t0);
    assert_eq!(drain(&mut run), [lookup_phone(1)]);
    run.handle_directory_response(t0 + secs(0.2), 1, found());
    assert_eq!(drain(&mut run), [says(BALANCE)]);
    run.handle_playback_finished(t0 + secs(3.0));
    assert_eq!(drain(&mut run), [play(&["enter-pin"], true)]);
    for (i, d) in [Digit::D1, Digit::D2, Digit::D3, Digit::D4]
        .into_iter()
        .enumerate()
    {
        run.handle_digit(t0 + secs(4.0 + i as f64), d);
    }
    let acts = drain(&mut run);
    assert_eq!(
        acts.last(),
        Some(&Action::Directory {
            id: 2,
            request: DirectoryRequest::VerifyPin {
                customer_id: "1001".into(),
                pin: "1234".into(),
                origin: crate::directory::Origin {
                    caller: "+15551234567".into(),
                    source: None,
                },
            }
        })
    );
    run
}

#[test]
fn lookup_by_caller_found_sets_the_variables() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    assert_eq!(drain(&mut run), [lookup_phone(1)]);
    assert_eq!(run.awaiting_directory(), Some(1));
    // The first timer is the filler's.
    assert_eq!(run.poll_timeout(), Some(t0 + secs(0.8)));
    run.handle_directory_response(t0 + secs(0.2), 1, found());
    assert_eq!(drain(&mut run), [says(BALANCE)]);
    assert_eq!(run.awaiting_directory(), None);
    for (var, want) in [
        ("customer.id", "1001"),
        ("customer.name", "Alice Smith"),
        ("customer.tier", "gold"),
        ("account.balance", "12345"),
        ("account.amount", "123.45"),
        ("account.currency", "USD"),
        ("order.status", "shipped"),
        ("order.shipped_on", "2026-11-24"),
        ("appointment.id", "AP-9001"),
        ("appointment.date", "2027-12-03"),
        ("appointment.time", "14:30"),
        ("appointment.status", "scheduled"),
    ] {
        assert_eq!(run.var(var), Some(want), "{var}");
    }
    assert_eq!(run.var("order.eta"), None);
    assert_eq!(run.path(), ["find", "known"]);
}

#[test]
fn lookup_not_found_asks_for_the_id_and_looks_it_up() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    run.handle_directory_response(t0 + secs(0.1), 1, DirectoryResponse::NotFound);
    assert_eq!(drain(&mut run), [play(&["enter-pin"], true)]);
    assert_eq!(run.var("customer.id"), None);
    for d in [Digit::D1, Digit::D0, Digit::D0, Digit::D1, Digit::Pound] {
        run.handle_digit(t0 + secs(1.0), d);
    }
    assert_eq!(
        drain(&mut run),
        [
            Action::StopPlayback,
            Action::Directory {
                id: 2,
                request: DirectoryRequest::Lookup {
                    by: LookupKey::Id("1001".into())
                }
            }
        ]
    );
    // No filler on this node: the only timer is its 2 s timeout.
    assert_eq!(run.poll_timeout(), Some(t0 + secs(3.0)));
    run.handle_directory_response(t0 + secs(1.5), 2, DirectoryResponse::NotFound);
    assert_eq!(drain(&mut run), [play(&["goodbye"], false)]);
    assert_eq!(run.path(), ["find", "ask_id", "find_id", "goodbye"]);
}

#[test]
fn the_filler_plays_while_waiting_and_stops_at_the_answer() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    run.handle_timeout(t0 + secs(0.5));
    assert_eq!(drain(&mut run), [], "too early for the filler");
    run.handle_timeout(t0 + secs(0.8));
    assert_eq!(drain(&mut run), [play(&["hours"], false)]);
    // Now only the 3 s deadline remains.
    assert_eq!(run.poll_timeout(), Some(t0 + secs(3.0)));
    run.handle_directory_response(t0 + secs(1.2), 1, found());
    assert_eq!(drain(&mut run), [Action::StopPlayback, says(BALANCE)]);
}

#[test]
fn a_filler_that_ends_before_the_answer_leaves_silence() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    run.handle_timeout(t0 + secs(0.8));
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(1.5));
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.awaiting_directory(), Some(1));
    run.handle_directory_response(t0 + secs(2.0), 1, found());
    assert_eq!(drain(&mut run), [says(BALANCE)], "no stop: nothing plays");
}

#[test]
fn no_answer_in_time_takes_the_timeout_branch_and_a_late_answer_is_ignored() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    run.handle_timeout(t0 + secs(0.8));
    drain(&mut run);
    run.handle_timeout(t0 + secs(2.9));
    assert_eq!(drain(&mut run), []);
    run.handle_timeout(t0 + secs(3.0));
    assert_eq!(
        drain(&mut run),
        [Action::StopPlayback, play(&["no-input"], false)]
    );
    assert_eq!(run.path(), ["find", "slow"]);
    run.handle_directory_response(t0 + secs(3.5), 1, found());
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.var("customer.id"), None, "late data is not used");
    assert_eq!(run.path(), ["find", "slow"]);
}

#[test]
fn an_answer_to_an_older_request_is_ignored_while_a_newer_one_waits() {
    let t0 = Instant::now();
    let yaml = DIR.replace(
        "on: { found: known, not_found: ask_id, error: err, timeout: slow }",
        "on: { found: known, not_found: ask_id, error: err, timeout: find_id }",
    );
    let mut run = start(&yaml, t0);
    drain(&mut run);
    run.handle_timeout(t0 + secs(0.8));
    drain(&mut run);
    run.handle_timeout(t0 + secs(3.0));
    let acts = drain(&mut run);
    assert_eq!(acts.first(), Some(&Action::StopPlayback));
    assert!(
        matches!(acts.last(), Some(Action::Directory { id: 2, .. })),
        "{acts:?}"
    );
    // The first request's answer arrives now: too late, ignored.
    run.handle_directory_response(t0 + secs(3.1), 1, DirectoryResponse::NotFound);
    assert_eq!(drain(&mut run), []);
    assert_eq!(run.awaiting_directory(), Some(2));
    run.handle_directory_response(t0 + secs(3.2), 2, found());
    assert_eq!(drain(&mut run), [says(BALANCE)]);
}

#[test]
fn store_errors_and_store_timeouts_take_their_branches() {
    let t0 = Instant::now();
    for (answer, prompt, node) in [
        (DirectoryResponse::Failed("down".into()), "support", "err"),
        (DirectoryResponse::TimedOut, "no-input", "slow"),
        // An answer of the wrong kind is an error, not a crash.
        (DirectoryResponse::Updated, "support", "err"),
    ] {
        let mut run = start(DIR, t0);
        drain(&mut run);
        run.handle_directory_response(t0 + secs(0.1), 1, answer);
        assert_eq!(drain(&mut run), [play(&[prompt], false)]);
        assert_eq!(run.path(), ["find", node]);
    }
}

#[test]
fn keys_pressed_while_waiting_are_typed_ahead() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    run.handle_digit(t0 + secs(0.1), Digit::D4);
    run.handle_digit(t0 + secs(0.2), Digit::D2);
    assert_eq!(drain(&mut run), []);
    run.handle_directory_response(t0 + secs(0.3), 1, DirectoryResponse::NotFound);
    // The collect uses the keys at once: its prompt is skipped.
    assert_eq!(drain(&mut run), []);
    run.handle_digit(t0 + secs(1.0), Digit::Pound);
    assert_eq!(
        drain(&mut run),
        [Action::Directory {
            id: 2,
            request: DirectoryRequest::Lookup {
                by: LookupKey::Id("42".into())
            }
        }]
    );
}

#[test]
fn right_pin_then_confirm_updates_the_appointment() {
    let t0 = Instant::now();
    let mut run = at_pin_check(t0);
    run.handle_directory_response(t0 + secs(8.0), 2, DirectoryResponse::Pin(PinOutcome::Ok));
    assert_eq!(
        drain(&mut run),
        [Action::Directory {
            id: 3,
            request: DirectoryRequest::SetAppointmentStatus {
                customer_id: "1001".into(),
                appointment_id: "AP-9001".into(),
                status: AppointmentStatus::Confirmed
            }
        }]
    );
    run.handle_directory_response(t0 + secs(8.5), 3, DirectoryResponse::Updated);
    assert_eq!(run.var("appointment.status"), Some("confirmed"));
    assert_eq!(
        drain(&mut run),
        [says(&[
            "friday", "december", "ord-3", "2", "thousand", "20", "7"
        ])]
    );
    assert_eq!(
        run.path(),
        ["find", "known", "ask_pin", "check", "confirm", "done"]
    );
}

#[test]
fn an_update_of_a_missing_appointment_takes_not_found() {
    let t0 = Instant::now();
    let mut run = at_pin_check(t0);
    run.handle_directory_response(t0 + secs(8.0), 2, DirectoryResponse::Pin(PinOutcome::Ok));
    drain(&mut run);
    run.handle_directory_response(t0 + secs(8.5), 3, DirectoryResponse::NotFound);
    assert_eq!(drain(&mut run), [play(&["support"], false)]);
    assert_eq!(run.var("appointment.status"), Some("scheduled"));
}

#[test]
fn a_wrong_pin_asks_again_until_the_store_locks() {
    let t0 = Instant::now();
    let mut run = at_pin_check(t0);
    run.handle_directory_response(
        t0 + secs(8.0),
        2,
        DirectoryResponse::Pin(PinOutcome::Wrong { attempts_left: 2 }),
    );
    assert_eq!(run.var("pin.attempts_left"), Some("2"));
    assert_eq!(drain(&mut run), [play(&["enter-pin"], true)]);
    for d in [Digit::D9, Digit::D9, Digit::D9, Digit::D9] {
        run.handle_digit(t0 + secs(9.0), d);
    }
    let acts = drain(&mut run);
    assert!(matches!(acts.last(), Some(Action::Directory { id: 3, .. })));
    run.handle_directory_response(
        t0 + secs(9.5),
        3,
        DirectoryResponse::Pin(PinOutcome::Locked {
            until_unix_ms: 1_000,
        }),
    );
    assert_eq!(drain(&mut run), [play(&["agents-busy"], false)]);
    assert_eq!(run.var("pin.attempts_left"), Some("0"));
    assert_eq!(run.path().last().map(String::as_str), Some("locked"));
}

#[test]
fn an_unknown_customer_at_the_pin_check_is_a_wrong_pin() {
    let t0 = Instant::now();
    let mut run = at_pin_check(t0);
    run.handle_directory_response(t0 + secs(8.0), 2, DirectoryResponse::NotFound);
    // `pin.attempts_left` is unset, so the branch goes to `locked`.
    assert_eq!(drain(&mut run), [play(&["agents-busy"], false)]);
    assert_eq!(
        run.path(),
        ["find", "known", "ask_pin", "check", "wrong", "locked"]
    );
}

#[test]
fn the_pin_never_shows_in_debug_output() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    run.handle_directory_response(t0, 1, found());
    drain(&mut run);
    run.handle_playback_finished(t0 + secs(1.0));
    drain(&mut run);
    for d in [Digit::D8, Digit::D6, Digit::D4, Digit::D2] {
        run.handle_digit(t0 + secs(2.0), d);
    }
    let text = format!("{:?}", drain(&mut run));
    assert!(text.contains("VerifyPin"), "{text}");
    assert!(!text.contains("8642") && !text.contains("1001"), "{text}");
}

#[test]
fn money_in_the_customers_currency() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    let mut rec = alice();
    rec.account = Some(Account {
        balance_minor: 199_999,
        currency: "EUR".into(),
    });
    run.handle_directory_response(t0, 1, DirectoryResponse::Found(Box::new(rec)));
    assert_eq!(
        drain(&mut run),
        [says(&[
            "1", "thousand", "9", "hundred", "90", "9", "euros", "and", "90", "9", "cents"
        ])]
    );
    // A currency nobody can say: silence, the flow goes on.
    let mut run = start(DIR, t0);
    drain(&mut run);
    let mut rec = alice();
    rec.account = Some(Account {
        balance_minor: 100,
        currency: "XTS".into(),
    });
    run.handle_directory_response(t0, 1, DirectoryResponse::Found(Box::new(rec)));
    assert_eq!(drain(&mut run), [play(&["enter-pin"], true)]);
}

#[test]
fn missing_parts_of_a_record_leave_their_variables_unset() {
    let t0 = Instant::now();
    let mut run = start(DIR, t0);
    drain(&mut run);
    let mut rec = alice();
    rec.last_order = None;
    rec.next_appointment = None;
    run.handle_directory_response(t0, 1, DirectoryResponse::Found(Box::new(rec)));
    assert_eq!(run.var("order.status"), None);
    assert_eq!(run.var("appointment.date"), None);
    assert_eq!(run.var("customer.name"), Some("Alice Smith"));
}

// -- the demo --------------------------------------------------------------------

#[test]
fn demo_account_services_starts_with_a_lookup_by_caller() {
    let t0 = Instant::now();
    let mut run = at_menu(t0);
    run.handle_digit(t0 + secs(5.0), Digit::D3);
    assert_eq!(drain(&mut run), [lookup_phone(1)]);
    run.handle_directory_response(t0 + secs(5.2), 1, found());
    assert_eq!(drain(&mut run), [play(&["greeting-known"], false)]);
}

#[test]
fn demo_runs_with_random_directory_answers() {
    fuzz_flow(DEMO, 11, 400);
    fuzz_flow(DIR, 12, 400);
}

// -- compile errors -------------------------------------------------------------

fn errors(yaml: &str) -> Vec<String> {
    let src = Source {
        path: PathBuf::from("d.yaml"),
        text: yaml.to_string(),
    };
    match compile(&[src], &catalog(), 1) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.headline())
            .collect(),
    }
}

#[test]
fn the_directory_fixture_compiles() {
    assert_eq!(errors(DIR), Vec::<String>::new());
}

#[test]
fn a_missing_branch_is_a_located_error() {
    let yaml = DIR.replace(
        "on: { ok: done, not_found: err, error: err, timeout: slow }",
        "on: { ok: done, not_found: err }",
    );
    assert_eq!(
        errors(&yaml),
        ["d.yaml:37:15: error: `update` does not handle `error`, `timeout`"]
    );
    let yaml = DIR.replace(
        "on: { ok: confirm, wrong: wrong, locked: locked, error: err, timeout: slow }",
        "on: { ok: confirm, wrong: wrong, error: err, timeout: slow }",
    );
    assert_eq!(
        errors(&yaml),
        ["d.yaml:29:15: error: `verify_pin` does not handle `locked`"]
    );
}

#[test]
fn wrong_outcomes_and_settings_are_located_errors() {
    let yaml = DIR
        .replace(
            "on: { found: known, not_found: ask_id, error: err, timeout: slow }",
            "on: { found: known, not_fund: ask_id, error: err, timeout: slow, wrong: err, error: slow }",
        )
        .replace("          timeout: 2s\n", "          timeout: 2x\n")
        .replace("status: confirmed", "status: maybe");
    assert_eq!(
        errors(&yaml),
        [
            "d.yaml:11:15: error: `lookup` does not handle `not_found`",
            "d.yaml:11:31: error: `lookup` has no outcome `not_fund` (did you mean `not_found`?)",
            "d.yaml:11:76: error: `lookup` has no outcome `wrong` (its outcomes: found, not_found, error, timeout)",
            "d.yaml:11:88: error: outcome `error` is handled twice (first at d.yaml:11:49)",
            "d.yaml:18:20: error: bad duration `2x`: unknown unit `x` (use ms, s, m or h)",
            "d.yaml:36:19: error: `status` must be `confirmed` or `cancelled`, found `maybe`",
        ]
    );
}

#[test]
fn lookup_needs_exactly_one_key_and_on() {
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: a
    nodes:
      a:
        lookup: { filler_after: 1s }
      b:
        lookup: { id: "1", phone: $caller, on: { found: c, not_found: c, error: c, timeout: c } }
      c: { hangup: {} }
"#;
    let e = errors(yaml);
    assert!(
        e.iter()
            .any(|m| m == "d.yaml:8:17: error: `lookup` needs `id:` (e.g. `$customer_id`) or `phone:` (e.g. `$caller`)"),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m == "d.yaml:8:17: error: `lookup` needs `on:` with a node for each outcome"),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m == "d.yaml:8:33: error: `filler_after` without `filler:`"),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with("d.yaml:10:")
            && m.ends_with("`lookup` takes `id:` or `phone:`, not both")),
        "{e:#?}"
    );
}

#[test]
fn looked_up_variables_need_a_lookup() {
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: a
    nodes:
      a: { say: { money: $account.amount, currency: $account.currency }, next: b }
      b:
        verify_pin: { pin: "1234", on: { ok: c, wrong: c, locked: c, error: c, timeout: c } }
      c: { hangup: {} }
"#;
    let e = errors(yaml);
    assert!(
        e.iter()
            .any(|m| m.contains("unknown variable `account.amount`")),
        "{e:#?}"
    );
    assert!(
        e.iter().any(|m| m.contains(
            "`verify_pin` needs `customer:`, or a `lookup` node that sets `customer.id`"
        )),
        "{e:#?}"
    );
    // Flow variables cannot pose as looked-up ones.
    let e = errors(
        r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: a
    nodes:
      a: { set: { customer.name: Eve }, next: b }
      b: { hangup: {} }
"#,
    );
    assert!(
        e.iter()
            .any(|m| m.contains("invalid variable name `customer.name`")),
        "{e:#?}"
    );
}

#[test]
fn currency_goes_with_money_and_must_be_known() {
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: a
    nodes:
      a: { say: { money: "1.50", currency: JPY }, next: b }
      b: { say: { number: "7", currency: USD }, next: c }
      c: { say: { money: "2", currency: gbp }, next: d }
      d: { hangup: {} }
"#;
    assert_eq!(
        errors(yaml),
        [
            "d.yaml:7:44: error: cannot say currency `JPY` (known: USD, EUR, GBP)",
            "d.yaml:8:42: error: `currency` only goes with `money:`",
        ]
    );
}

#[test]
fn missing_currency_fragments_are_reported() {
    let yaml = r#"
routes: [{ number: default, flow: f }]
flows:
  f:
    start: a
    nodes:
      a: { say: { money: "1.50", currency: EUR }, next: d }
      d: { hangup: {} }
"#;
    let mut cat = catalog();
    cat.remove("en/say/euros");
    let src = Source {
        path: PathBuf::from("d.yaml"),
        text: yaml.to_string(),
    };
    let e = compile(&[src], &cat, 1).unwrap_err();
    assert!(
        e.iter()
            .any(|d| d.message.contains("missing for `en`: say/euros")),
        "{e:?}"
    );
}
