use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::flow::diagnostic::Severity;

/// The demo prompts in `en`, plus the `say` fragments.
pub(crate) fn demo_catalog() -> HashMap<String, PromptId> {
    let mut names: Vec<String> = [
        "welcome",
        "main-menu",
        "hours",
        "support",
        "agents-busy",
        "invalid",
        "no-input",
        "goodbye",
        // Account services (option 3).
        "enter-customer-id",
        "enter-pin",
        "one-moment",
        "greeting-known",
        "customer-not-found",
        "details-mismatch",
        "pin-wrong",
        "pin-locked",
        "account-menu",
        "balance-is",
        "order-shipped-on",
        "order-placed",
        "order-delivered",
        "order-cancelled",
        "no-order",
        "appointment-at",
        "appointment-menu",
        "appointment-confirmed",
        "appointment-cancelled",
        "no-appointment",
        "directory-unavailable",
        "agent-transfer",
        // The support queue (option 0).
        "hold-music",
        "queue-position",
        "queue-position-end",
        "queue-wait",
        "queue-shortly",
        "queue-leave-hint",
        "queue-no-agents",
        "queue-overflow",
        "callback-offer",
        "callback-registered",
        "callback-duplicate",
        "callback-failed",
        "transfer-failed",
        // The satisfaction survey after self-service.
        "survey-rate",
        "survey-invalid",
        "survey-thanks",
    ]
    .iter()
    .map(|n| format!("en/{n}"))
    .collect();
    names.extend(
        crate::flow::say::all_fragments()
            .iter()
            .map(|f| format!("en/{f}")),
    );
    names.sort();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n, PromptId(i as u32)))
        .collect()
}

fn src(path: &str, text: &str) -> Source {
    Source {
        path: PathBuf::from(path),
        text: text.to_string(),
    }
}

fn compile_one(text: &str) -> Result<(FlowSet, Vec<Diagnostic>), Vec<Diagnostic>> {
    compile(&[src("flows/main.yaml", text)], &demo_catalog(), 1)
}

fn errors(text: &str) -> Vec<String> {
    match compile_one(text) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .filter(|d| d.is_error())
            .map(Diagnostic::headline)
            .collect(),
    }
}

/// `manifest/tests/data/flows`, also when built from the scratch crate.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flows")
}

struct Expect {
    severity: Severity,
    file: PathBuf,
    line: usize,
    column: usize,
    text: String,
}

fn expectations(s: &Source) -> Vec<Expect> {
    s.text
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let (sev, rest) = e.split_once(' ').expect("severity");
            let (lc, text) = rest.split_once(": ").expect("line:col: text");
            let (l, c) = lc.split_once(':').expect("line:col");
            Expect {
                severity: if sev == "warning" {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                file: s.path.clone(),
                line: l.parse().expect("line"),
                column: c.parse().expect("column"),
                text: text.to_string(),
            }
        })
        .collect()
}

fn check_set(name: &str, sources: Vec<Source>, failures: &mut Vec<String>) {
    let expects: Vec<Expect> = sources.iter().flat_map(expectations).collect();
    // The corpus is checked against two configured queues.
    let queues: BTreeSet<String> = ["support", "sales"].map(String::from).into();
    let options = CompileOptions {
        queues: Some(&queues),
    };
    let diags = match compile_with(&sources, &demo_catalog(), 1, &options) {
        Ok((_, w)) => w,
        Err(d) => d,
    };
    for e in &expects {
        let found = diags.iter().any(|d| {
            d.severity == e.severity
                && d.file == e.file
                && d.line == e.line
                && d.column == e.column
                && d.message.contains(&e.text)
        });
        if !found {
            failures.push(format!(
                "{name}: missing {} at {}:{}:{}: {}",
                e.severity,
                e.file.display(),
                e.line,
                e.column,
                e.text
            ));
        }
    }
    for d in diags.iter().filter(|d| d.is_error()) {
        let expected = expects.iter().any(|e| {
            e.severity == d.severity
                && e.file == d.file
                && e.line == d.line
                && e.column == d.column
                && d.message.contains(&e.text)
        });
        if !expected {
            failures.push(format!("{name}: unexpected {d}"));
        }
    }
    if expects.is_empty() {
        failures.push(format!("{name}: no `# expect:` lines"));
    }
}

/// Every broken flow in `tests/data/flows/` gives exactly its expected errors.
#[test]
fn broken_flow_corpus() {
    let dir = corpus_dir();
    let rel = Path::new("tests/data/flows");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            let sources = files
                .iter()
                .map(|f| Source {
                    path: rel.join(&name).join(f.file_name().unwrap()),
                    text: std::fs::read_to_string(f).unwrap(),
                })
                .collect();
            check_set(&name, sources, &mut failures);
        } else if name.ends_with(".yaml") {
            let s = Source {
                path: rel.join(&name),
                text: std::fs::read_to_string(&path).unwrap(),
            };
            check_set(&name, vec![s], &mut failures);
        } else {
            continue;
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} corpus entries");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn demo_flows_compile_without_warnings() {
    for dir in ["flows", "tests/data/flows-e2e"] {
        let sources =
            crate::flow::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).expect("load");
        assert!(!sources.is_empty(), "{dir}");
        let (set, warnings) = compile(&sources, &demo_catalog(), 7)
            .unwrap_or_else(|e| panic!("{dir}:\n{}", crate::flow::diagnostic::render_all(&e)));
        assert!(warnings.is_empty(), "{dir}: {warnings:?}");
        assert_eq!(set.version(), 7);
        let main = set.flow_by_name("main").unwrap();
        assert_eq!(set.route("ivr"), Some(main));
        assert_eq!(set.route("anything"), Some(main));
        assert_eq!(set.flow_name(main), "main");
        assert_eq!(set.flow_names().collect::<Vec<_>>(), ["main"]);
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let errs = errors(
        "routes:\n  - { number: default, flow: main }\nflows:\n  main:\n    start: a\n    nodes:\n      a: { play: [nope], next: b }\n      b:\n        menu:\n          prompt: [main-menu]\n          timeout: 5x\n          options: { \"1\": c, \"1\": a }\n",
    );
    assert_eq!(
        errs,
        [
            "flows/main.yaml:7:19: error: unknown prompt `nope` (looked for `en/nope`, `nope`)",
            "flows/main.yaml:11:20: error: bad duration `5x`: unknown unit `x` (use ms, s, m or h)",
            "flows/main.yaml:12:27: error: unknown node `c` in flow `main`",
            "flows/main.yaml:12:30: error: duplicate option `1` (first at flows/main.yaml:12:22)",
        ]
    );
}

#[test]
fn display_shows_snippet_and_caret() {
    let e = compile_one(
        "routes:\n  - { number: default, flow: main }\nflows:\n  main:\n    start: welcome\n    nodes:\n      welcome: { play: [welcome], next: mian_menu }\n      main_menu: { hangup: {} }\n",
    )
    .unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "flows/main.yaml:7:41: error: unknown node `mian_menu` in flow `main` (did you mean `main_menu`?)\n  |\n7 |       welcome: { play: [welcome], next: mian_menu }\n  |                                         ^"
    );
}

#[test]
fn routes_exact_then_pattern_then_default() {
    let (set, _) = compile_one(
        "routes:\n  - { number: \"ivr\", flow: a }\n  - { pattern: \"_1555XXXX\", flow: b }\n  - { number: default, flow: c }\nflows:\n  a: { start: x, nodes: { x: { hangup: {} } } }\n  b: { start: x, nodes: { x: { hangup: {} } } }\n  c: { start: x, nodes: { x: { hangup: {} } } }\n",
    )
    .unwrap();
    let name = |d: &str| set.route(d).map(|f| set.flow_name(f).to_string());
    assert_eq!(name("ivr").as_deref(), Some("a"));
    assert_eq!(name("15551234").as_deref(), Some("b"));
    assert_eq!(name("155512345").as_deref(), Some("c"));
    assert_eq!(set.flow_name(FlowId(99)), "?");
}

#[test]
fn no_default_route_means_unrouted_numbers_get_none() {
    let (set, _) = compile_one(
        "routes:\n  - { number: \"ivr\", flow: a }\nflows:\n  a: { start: x, nodes: { x: { hangup: {} } } }\n",
    )
    .unwrap();
    assert!(set.route("ivr").is_some());
    assert!(set.route("other").is_none());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("5x").is_err());
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("").is_err());
    assert!(parse_duration("1..2s").is_err());
    assert!(parse_duration("99999999h").is_err());
}

#[test]
fn empty_input_is_an_error_not_a_panic() {
    assert!(compile(&[], &demo_catalog(), 1).is_err());
    assert!(!errors("").is_empty());
    assert!(!errors("---\n").is_empty());
    assert!(!errors("[1, 2]").is_empty());
    assert!(!errors("flows: 3").is_empty());
}

/// Garbage never panics the compiler.
#[test]
fn compiler_never_panics_on_mangled_demo() {
    let demo = include_str!("../../../flows/main.yaml");
    let bytes = demo.as_bytes();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let cut = (seed >> 33) as usize % bytes.len();
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (seed >> 40) as usize % 40;
        let mut m = bytes.to_vec();
        m.drain(cut..(cut + len).min(m.len()));
        if let Ok(text) = String::from_utf8(m) {
            let _ = compile_one(&text);
        }
    }
}

const SIX_OPTIONS: &str = r#"
routes:
  - { number: default, flow: main }
flows:
  main:
    start: m
    nodes:
      m:
        menu:
          prompt: [main-menu]
          options: { "1": a, "2": a, "3": a, "4": a, "5": a, "6": a }
      a: { hangup: {} }
"#;

fn warnings(sources: &[Source]) -> Vec<String> {
    match compile(sources, &demo_catalog(), 1) {
        Ok((_, w)) => w.iter().map(|d| d.headline()).collect(),
        Err(d) => panic!(
            "expected success, got {:?}",
            d.iter().map(|d| d.to_string()).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn menu_option_limit_warns_by_default_and_is_configurable() {
    let w = warnings(&[src("flows/a.yaml", SIX_OPTIONS)]);
    assert!(w.iter().any(|m| m.contains("menu has 6 options")), "{w:?}");
    let relaxed = format!("lint: {{ max_menu_options: 7 }}\n{SIX_OPTIONS}");
    let w = warnings(&[src("flows/a.yaml", &relaxed)]);
    assert!(!w.iter().any(|m| m.contains("options")), "{w:?}");
    let strict = format!("lint: {{ max_menu_depth: 1, max_menu_options: 6 }}\n{SIX_OPTIONS}");
    assert!(warnings(&[src("flows/a.yaml", &strict)]).is_empty());
}

#[test]
fn bad_or_repeated_lint_settings_are_located_errors() {
    let bad = format!("lint: {{ max_menu_options: 0, max_menu_dept: 3 }}\n{SIX_OPTIONS}");
    let errs = compile(&[src("flows/a.yaml", &bad)], &demo_catalog(), 1)
        .err()
        .expect("errors");
    let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
    assert!(
        text.iter().any(
            |t| t.contains("`max_menu_options` must be between 1 and 20")
                && t.starts_with("flows/a.yaml:1:")
        ),
        "{text:?}"
    );
    assert!(text.iter().any(|t| t.contains("max_menu_dept")), "{text:?}");
    let twice = vec![
        src(
            "flows/a.yaml",
            &format!("lint: {{ max_menu_options: 7 }}\n{SIX_OPTIONS}"),
        ),
        src("flows/b.yaml", "lint: { max_menu_options: 8 }\n"),
    ];
    let errs = compile(&twice, &demo_catalog(), 1).err().expect("errors");
    assert!(
        errs.iter().any(|d| d
            .to_string()
            .contains("`lint` is already set in flows/a.yaml")),
        "{errs:?}"
    );
}
