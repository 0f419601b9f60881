//! `phonetree test` in CI: the demo flows' own test cases (`flows/tests/`) must
//! pass, so a flow change that breaks them fails `cargo test`; and a suite with
//! failing cases must be reported as failing, with its diffs.

use phonetree::flow::testcase;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn demo_flow_test_cases_pass() {
    let suite = testcase::run_dir(&repo().join("flows"), &repo().join("prompts"), None);
    let out = suite.render();
    assert!(suite.success(), "flow test cases failed:\n{out}");
    assert!(
        suite.passed() >= 10,
        "only {} cases ran:\n{out}",
        suite.passed()
    );
    assert!(
        out.contains(&format!("{} passed, 0 failed", suite.passed())),
        "{out}"
    );
}

#[test]
fn failing_cases_are_reported() {
    let dir = repo().join("tests/data/flow-tests-failing");
    let suite = testcase::run_dir(&dir, &repo().join("prompts"), None);
    let out = suite.render();
    assert!(!suite.success(), "{out}");
    assert!(suite.errors.is_empty(), "{out}");
    assert_eq!((suite.passed(), suite.failed()), (2, 3), "{out}");
    assert!(
        out.contains("test result: FAILED. 2 passed, 3 failed"),
        "{out}"
    );
    for line in [
        "cases.yaml:6:5: passes - 9 transfers to sales ... ok",
        "cases.yaml:20:5: fails - wrong prompts and outcome ... FAILED",
        // The prompt diff: the same, missing, extra.
        "prompts differ (- expected, + actual):\n      welcome\n      main-menu\n    - support\n    + hours\n      goodbye\n",
        "outcome:\n    expected: transfer sip:sales@pbx.example.com\n    actual:   hangup\n",
        "path_in_order: `hours` not found after `goodbye` (position 4)",
        "vars.caller:\n    expected: \"+15550000000\"\n    actual:   \"+15551234567\"\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The transcript of a failed case: the key, then the node it led to, at the same time.
    let lines: Vec<&str> = out.lines().collect();
    let key = lines
        .iter()
        .position(|l| l.ends_with("s  key 1"))
        .expect("transcript shows the key");
    let at = |l: &str| l.split_whitespace().next().unwrap_or_default().to_string();
    assert!(lines[key + 1].ends_with("s  -> hours"), "{out}");
    assert_eq!(at(lines[key]), at(lines[key + 1]), "{out}");
    // Only the failing cases get a section.
    assert_eq!(out.matches("\n---- ").count(), 3, "{out}");
}

#[test]
fn only_matching_cases_run_with_a_filter() {
    let dir = repo().join("tests/data/flow-tests-failing");
    let suite = testcase::run_dir(&dir, &repo().join("prompts"), Some("passes"));
    assert!(suite.success(), "{}", suite.render());
    assert_eq!(suite.passed(), 2);
    let none = testcase::run_dir(&dir, &repo().join("prompts"), Some("no such case"));
    assert!(!none.success());
    assert!(
        none.render()
            .contains("no test case name contains `no such case`")
    );
}

#[test]
fn the_cli_exits_non_zero_on_failure() {
    let bin = env!("CARGO_BIN_EXE_phonetree");
    let run = |dir: &str| {
        std::process::Command::new(bin)
            .args(["test", dir, "--prompts", "prompts"])
            .current_dir(repo())
            .env("PHONETREE_CONFIG", "/nonexistent/phonetree.yaml")
            .output()
            .expect("run phonetree test")
    };
    let ok = run("flows");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let bad = run("tests/data/flow-tests-failing");
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("2 passed, 3 failed"), "{stdout}");
}
