//! `phonetree simulate` runs the demo flow with no phone and no network, as an operator would:
//! pressing 1 at the main menu reaches the opening hours, and a silent caller is asked again;
//! with the configured directory (a real SQLite file) the caller hears their real balance.

use std::process::Command;

fn simulate(args: &[&str]) -> (bool, String) {
    // Independent of the deployment's phonetree.yaml (as `flow_tests_pass` does): without
    // a config file the queue names of the demo are not checked.
    let out = Command::new(env!("CARGO_BIN_EXE_phonetree"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PHONETREE_CONFIG", "/nonexistent/phonetree.yaml")
        .arg("simulate")
        .args(args)
        .args(["--prompts", "prompts", "--directory", "none"])
        .output()
        .expect("phonetree runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn key_1_at_the_main_menu_plays_the_opening_hours() {
    let (ok, out) = simulate(&[
        "flows/main.yaml",
        "--caller",
        "+15550001111",
        "--digits",
        "1",
        "--limit",
        "25s",
    ]);
    assert!(ok, "{out}");
    let menu = out.find("play en/main-menu").expect("the menu plays");
    let key = out.find("key 1").expect("the key is typed");
    let hours = out.find("play en/hours").expect("the hours play");
    assert!(menu < key && key < hours, "{out}");
    assert!(out.contains("path: welcome -> main_menu -> hours"), "{out}");
}

#[test]
fn silent_caller_hears_no_input_then_the_menu_again() {
    let (ok, out) = simulate(&["flows/main.yaml", "--limit", "40s"]);
    assert!(ok, "{out}");
    assert!(out.contains("timeout"), "{out}");
    assert!(out.contains("play en/no-input, en/main-menu"), "{out}");
}

#[test]
fn unknown_flow_is_an_error() {
    let (ok, _) = simulate(&["flows/main.yaml", "--flow", "no_such_flow"]);
    assert!(!ok);
}

/// A scratch directory with a configuration of the demo flows and prompts and a fresh
/// SQLite directory loaded from data/customers.csv: (directory, configuration file).
fn demo_config_with_directory(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("phonetree-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let repo = env!("CARGO_MANIFEST_DIR");
    let config = dir.join("phonetree.yaml");
    std::fs::write(
        &config,
        format!(
            "flows_dir: {repo}/flows\nprompts_dir: {repo}/prompts\ndirectory:\n  path: {db}\n  import: {repo}/data/customers.csv\nqueues:\n  support: {{}}\n",
            db = dir.join("customers.db").display()
        ),
    )
    .expect("write config");
    (dir, config)
}

#[test]
fn simulated_caller_hears_the_balance_from_the_configured_directory() {
    let (dir, config) = demo_config_with_directory("sim-dir");
    let out = Command::new(env!("CARGO_BIN_EXE_phonetree"))
        .env("PHONETREE_CONFIG", &config)
        .args([
            "simulate",
            "--caller",
            "+15551234567",
            "--digits",
            "3,1234#,1",
            "--limit",
            "50s",
        ])
        .output()
        .expect("phonetree runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same answer a real call gets: Alice's balance, $123.45, read from SQLite.
    assert!(text.contains("play en/balance-is"), "{text}");
    assert!(
        text.contains("en/say/1, en/say/hundred, en/say/20, en/say/3, en/say/dollars"),
        "{text}"
    );
    assert!(text.contains("customer.name=\"Alice Smith\""), "{text}");
}

#[test]
fn simulated_caller_rates_the_call_after_the_balance() {
    let (dir, config) = demo_config_with_directory("sim-survey");
    let mut child = Command::new(env!("CARGO_BIN_EXE_phonetree"))
        .env("PHONETREE_CONFIG", &config)
        .args([
            "simulate",
            "--caller",
            "+15551234567",
            "--interactive",
            "--limit",
            "5m",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("phonetree runs");
    // Account services, the PIN, the balance; silent three times at the account
    // menu; then 4 when the survey listens.
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"3\n1234#\n1\n\n\n\n4\n")
        .expect("keys");
    let out = child.wait_with_output().expect("phonetree ends");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{text}");
    let survey = text
        .find("play en/survey-rate")
        .expect("the survey is offered");
    let answer = text.find("survey csat: 4").expect("the answer is shown");
    let thanks = text.find("play en/survey-thanks").expect("thanks");
    assert!(survey < answer && answer < thanks, "{text}");
    assert!(text.contains("surveys: csat=4"), "{text}");
}
