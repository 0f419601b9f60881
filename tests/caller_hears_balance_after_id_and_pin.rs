//! Self-service end to end over real SIP: a caller whose number is not on file
//! (`+15550009999`) dials the demo flow (`flows/main.yaml`), presses 3 (account
//! services), types customer ID 1010 and `#`, the PIN 5555, then 1 for the balance, all
//! by RFC 4733 telephone-events (sipp replays
//! `tests/data/pcap/dtmf_selfservice_rfc4733.pcap`, see `tests/sipp/selfservice_balance.xml`
//! for the timing). The engine's customer store is the fresh SQLite database that
//! `Config::for_tests` loads from `data/customers.csv`.
//!
//! Checked on the RTP the engine sent (decoded, compared with the prompt WAVs): the
//! caller hears `balance-is` followed, back to back, by exactly the fragments that speak
//! that customer's balance as written in the CSV. The expected fragments are spelled here,
//! independently of `src/flow/say.rs`. And on the call record: the ID and PIN keys are
//! masked, the menu choices are not, the path goes through the balance nodes.

mod common;

use common::*;
use std::time::Duration;

/// The customer the pcap identifies as: ID typed as `1010#`, PIN typed as `5555`.
const CUSTOMER_ID: &str = "1010";
const PIN_TYPED: &str = "5555";

// ------------------------------------------------------------------ the customer file

struct Customer {
    phones: String,
    pin: String,
    balance: String,
    currency: String,
}

fn customer_from_csv(id: &str) -> Customer {
    let path = repo().join("data/customers.csv");
    let mut r =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let headers = r.headers().expect("header row").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{} has no `{name}` column", path.display()))
    };
    let (c_id, c_phones, c_pin, c_balance, c_currency) = (
        col("id"),
        col("phones"),
        col("pin"),
        col("balance"),
        col("currency"),
    );
    for row in r.records() {
        let row = row.expect("csv row");
        if &row[c_id] == id {
            return Customer {
                phones: row[c_phones].to_string(),
                pin: row[c_pin].to_string(),
                balance: row[c_balance].to_string(),
                currency: row[c_currency].to_string(),
            };
        }
    }
    panic!("customer {id} is not in {}", path.display());
}

// ------------------------------------------------------------------ spoken money, English

/// Fragments for a whole number below a billion, the English way:
/// 1_234_567 → 1 million 2 hundred 30 4 thousand 5 hundred 60 7.
fn spoken_number(n: u64) -> Vec<String> {
    assert!(
        n < 1_000_000_000,
        "the test speller stops below a billion: {n}"
    );
    fn below_1000(n: u64, out: &mut Vec<String>) {
        let (hundreds, rest) = (n / 100, n % 100);
        if hundreds > 0 {
            out.push(format!("say/{hundreds}"));
            out.push("say/hundred".into());
        }
        match rest {
            0 => {}
            1..=19 => out.push(format!("say/{rest}")),
            _ => {
                out.push(format!("say/{}", rest - rest % 10));
                if rest % 10 != 0 {
                    out.push(format!("say/{}", rest % 10));
                }
            }
        }
    }
    if n == 0 {
        return vec!["say/0".into()];
    }
    let mut out = Vec::new();
    let (millions, thousands, units) = (n / 1_000_000, n / 1000 % 1000, n % 1000);
    if millions > 0 {
        below_1000(millions, &mut out);
        out.push("say/million".into());
    }
    if thousands > 0 {
        below_1000(thousands, &mut out);
        out.push("say/thousand".into());
    }
    below_1000(units, &mut out);
    out
}

/// "123.45" in `currency` → 1 hundred 20 3 dollars and 40 5 cents.
fn spoken_money(amount: &str, currency: &str) -> Vec<String> {
    let [one, many, one_minor, many_minor] = match currency {
        "USD" => ["dollar", "dollars", "cent", "cents"],
        "EUR" => ["euro", "euros", "cent", "cents"],
        "GBP" => ["pound-sterling", "pounds-sterling", "penny", "pence"],
        other => panic!("no spelling for currency {other}"),
    };
    let (negative, amount) = match amount.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, amount),
    };
    let (whole, frac) = amount.split_once('.').unwrap_or((amount, ""));
    let major: u64 = whole.parse().unwrap_or_else(|_| panic!("amount {amount}"));
    let minor: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().expect("cents") * 10,
        2 => frac.parse().expect("cents"),
        _ => panic!("amount {amount} has more than 2 decimals"),
    };
    let mut out = Vec::new();
    if negative {
        out.push("say/minus".to_string());
    }
    if major > 0 || minor == 0 {
        out.extend(spoken_number(major));
        out.push(format!("say/{}", if major == 1 { one } else { many }));
    }
    if minor > 0 {
        if major > 0 {
            out.push("say/and".into());
        }
        out.extend(spoken_number(minor));
        out.push(format!(
            "say/{}",
            if minor == 1 { one_minor } else { many_minor }
        ));
    }
    out
}

fn say(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| format!("say/{w}")).collect()
}

/// The test's own speller, checked by hand against the example and a few edges.
#[test]
fn the_test_speller_is_right() {
    assert_eq!(
        spoken_money("123.45", "USD"),
        say(&[
            "1", "hundred", "20", "3", "dollars", "and", "40", "5", "cents"
        ])
    );
    assert_eq!(
        spoken_money("1234567.89", "USD"),
        say(&[
            "1", "million", "2", "hundred", "30", "4", "thousand", "5", "hundred", "60", "7",
            "dollars", "and", "80", "9", "cents"
        ])
    );
    assert_eq!(spoken_money("1.00", "USD"), say(&["1", "dollar"]));
    assert_eq!(spoken_money("0.99", "USD"), say(&["90", "9", "cents"]));
    assert_eq!(
        spoken_money("310.07", "USD"),
        say(&["3", "hundred", "10", "dollars", "and", "7", "cents"])
    );
    assert_eq!(
        spoken_money("-42.10", "USD"),
        say(&["minus", "40", "2", "dollars", "and", "10", "cents"])
    );
    assert_eq!(
        spoken_money("25000.00", "USD"),
        say(&["20", "5", "thousand", "dollars"])
    );
    assert_eq!(spoken_money("0", "USD"), say(&["0", "dollars"]));
}

// ------------------------------------------------------------------ the call

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hears_balance_after_id_and_pin() {
    self_check();
    let customer = customer_from_csv(CUSTOMER_ID);
    assert_eq!(
        customer.pin, PIN_TYPED,
        "the pcap types PIN {PIN_TYPED} for customer {CUSTOMER_ID}; data/customers.csv changed: \
         regenerate the pcap (tests/sipp/make_pcaps.py) for the new PIN"
    );
    let digits_only: String = customer
        .phones
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    assert!(
        !digits_only.contains("15550009999"),
        "the sipp caller's number +15550009999 must not be on file (customer {CUSTOMER_ID} has it)"
    );
    let amount_words = spoken_money(&customer.balance, &customer.currency);
    assert!(
        amount_words.len() >= 8,
        "pick a customer with a non-trivial balance: {} → {amount_words:?}",
        customer.balance
    );

    // The demo flows (flows/main.yaml, with its self-service branch), not the e2e ones.
    let mut engine = start_engine_with("selfservice", |c| {
        c.flows_dir = repo().join("flows");
    })
    .await;
    let capture = Capture::start(engine.rtp_ports, &engine.scratch);

    let sipp = run_sipp(
        &engine,
        "selfservice_balance.xml",
        SippOptions {
            timeout: Duration::from_secs(60),
            ..SippOptions::default()
        },
    )
    .await;
    let record = engine
        .record_for(&sipp.call_id_prefix, Duration::from_secs(10))
        .await;
    let packets = capture.stop();
    sipp.assert_success();

    // ---- what the caller heard
    let (stream, heard) = engine_audio(&packets, engine.rtp_ports);
    let found = assert_heard_in_order(
        &heard,
        &[
            ("welcome", Need::Complete),
            ("main-menu", Need::AtLeast(Duration::from_millis(300))),
            ("enter-customer-id", Need::AtLeast(Duration::from_secs(1))),
            ("enter-pin", Need::AtLeast(Duration::from_secs(1))),
            ("account-menu", Need::AtLeast(Duration::from_millis(300))),
            ("balance-is", Need::Complete),
        ],
    );
    let balance_is = &found[5];
    let account_menu = &found[4];
    assert!(
        !account_menu.complete(),
        "the key 1 should have cut the account menu short: {account_menu}"
    );
    // The amount follows the `balance-is` prompt at once (next node), fragment after
    // fragment with nothing between them (one `say`).
    let spoken = assert_fragments_back_to_back(&heard, balance_is.end_frame(), 3, &amount_words);
    // Then the account menu again (the caller hangs up while it plays).
    let after = spoken.last().expect("fragments").end_frame();
    let again = find_prompt(
        "account-menu",
        &heard,
        &load_prompt("account-menu"),
        after,
        50,
    )
    .unwrap_or_else(|| {
        panic!(
            "account-menu not heard again after the balance ({:.2}s); heard:\n{}",
            (after * FRAME) as f64 / RATE as f64,
            describe(&transcript(&heard))
        )
    });
    assert!(
        again.start_frame <= after + 3,
        "account-menu came {:.2}s after the amount",
        ((again.start_frame - after) * FRAME) as f64 / RATE as f64
    );
    // Nothing went wrong on the way: no retry, wrong-PIN or not-found prompt.
    let whole = transcript(&heard);
    for bad in [
        "invalid",
        "no-input",
        "customer-not-found",
        "details-mismatch",
        "pin-wrong",
        "pin-locked",
        "directory-unavailable",
        "greeting-known",
    ] {
        assert!(
            whole.iter().all(|h| h.name != bad),
            "caller heard `{bad}`:\n{}",
            describe(&whole)
        );
    }
    // Every play starts a talkspurt: the prompts above and the first fragment.
    let mut starts = found.clone();
    starts.push(spoken[0].clone());
    starts.push(again);
    assert_markers(&stream, &starts);
    let pacing = stream.pacing_problems();
    assert!(pacing.is_empty(), "RTP pacing problems: {pacing:?}");

    // ---- the call record
    let rfc = |c: char| (c, "rfc4733".to_string());
    let mut want_digits = vec![rfc('3')];
    want_digits.extend(std::iter::repeat_n(
        rfc('x'),
        "1010#".len() + PIN_TYPED.len(),
    ));
    want_digits.push(rfc('1'));
    assert_eq!(
        digits(&record),
        want_digits,
        "menu keys in clear, ID and PIN keys masked; record: {record:?}"
    );
    assert_eq!(outcome(&record), "caller_hangup", "record: {record:?}");
    assert_eq!(
        record.path,
        [
            "welcome",
            "main_menu",
            "account",
            "ask_id",
            "ask_id_pin",
            "check_id_pin",
            "find_id",
            "account_menu",
            "balance",
            "balance_is",
            "balance_amount",
            "balance_served",
            "account_menu",
        ],
        "record: {record:?}"
    );
    // Prompts started, in order (a `one-moment` filler may come during a slow lookup).
    let mut want_prompts: Vec<String> = [
        "welcome",
        "main-menu",
        "enter-customer-id",
        "enter-pin",
        "account-menu",
        "balance-is",
    ]
    .map(String::from)
    .to_vec();
    want_prompts.extend(amount_words.iter().cloned());
    want_prompts.push("account-menu".into());
    let got_prompts: Vec<String> = record
        .prompts
        .iter()
        .map(|p| p.strip_prefix("en/").unwrap_or(p).to_string())
        .filter(|p| p != "one-moment")
        .collect();
    assert_eq!(got_prompts, want_prompts, "record: {record:?}");
    engine.shutdown().await;
}
