//! The dashboard as a browser renders it: headless Chromium opens the page with an admin
//! token in the link, before any call. A caller (sipp) then dials a number whose flow
//! queues at once and waits 15 s in `support` (nobody logged in, the queue takes callers
//! anyway). Without a reload, the page's own stream of snapshots must show the queue with
//! one waiting caller at position 1 and the call, queued in `support`, in the calls table;
//! after the caller hangs up the queue is empty again and today's KPIs count the abandoned
//! call. Screenshots of the live page are kept in the scratch directory and copied to
//! `target/dashboard.png` (caller waiting) and `target/dashboard-after.png`.
//!
//! Needs `chromium` (Debian's package); without it the test fails and says how to install.

mod common;

use common::browser::{Browser, chromium_path};
use common::*;
use phonetree::config::Config;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TOKEN: &str = "dashboard-test-token-7f3a";

/// What the page shows, read from its DOM: queues (name, summary line, waiting rows),
/// the calls table rows, the banner, and a marker that a reload would wipe. Before the
/// page has loaded it is `{"loading": true}`.
const READ_PAGE: &str = r##"document.getElementById("board") === null
? JSON.stringify({ loading: true, url: location.href })
: JSON.stringify({
  board: !document.getElementById("board").hidden,
  banner: document.getElementById("banner").textContent,
  marker: window.__phonetreeTest === 1,
  queues: [...document.querySelectorAll("#queues .queue")].map(q => ({
    name: q.querySelector("strong") && q.querySelector("strong").textContent,
    facts: q.querySelector(".muted") && q.querySelector(".muted").textContent,
    rows: [...q.querySelectorAll("tr")].slice(1).map(tr => [...tr.cells].map(c => c.textContent)),
  })),
  calls: [...document.querySelectorAll("#calls tr")].slice(1).map(tr => [...tr.cells].map(c => c.textContent)),
  calls_text: document.getElementById("calls").textContent,
  kpis: [...document.querySelectorAll("#kpis tr[data-queue]")].map(tr => [...tr.cells].map(c => c.textContent)),
  kpis_text: document.getElementById("kpis").textContent,
  agents: [...document.querySelectorAll("#agents tr")].slice(1).map(tr => [...tr.cells].map(c => c.textContent)),
})"##;

fn page(v: &Value) -> Value {
    serde_json::from_str(v.as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

fn queue<'a>(p: &'a Value, name: &str) -> Option<&'a Value> {
    p["queues"]
        .as_array()?
        .iter()
        .find(|q| q["name"].as_str() == Some(name))
}

fn cells(row: &Value) -> Vec<&str> {
    row.as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `support` has exactly one waiting row, at position 1, for the sipp caller.
fn one_waiting(p: &Value) -> bool {
    queue(p, "support").is_some_and(|q| {
        let rows = q["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
        q["facts"]
            .as_str()
            .is_some_and(|f| f.starts_with("1 waiting"))
            && rows.len() == 1
            && cells(&rows[0]).first() == Some(&"1")
            && cells(&rows[0]).get(1) == Some(&"caller")
    })
}

/// The calls table has the call, queued in `support`.
fn call_queued(p: &Value) -> bool {
    p["calls"].as_array().is_some_and(|rows| {
        rows.iter().any(|r| {
            let c = cells(r);
            // Call, Caller, Dialled, Flow, Node, State, Queue, ...
            c.get(1) == Some(&"caller")
                && c.get(2) == Some(&"queue")
                && c.get(5) == Some(&"queued")
                && c.get(6) == Some(&"support")
        })
    })
}

fn empty_queue(p: &Value) -> bool {
    queue(p, "support").is_some_and(|q| {
        q["facts"]
            .as_str()
            .is_some_and(|f| f.starts_with("0 waiting"))
            && q["rows"].as_array().is_some_and(Vec::is_empty)
    })
}

/// Today's KPIs, once the record is written: support offered 1, answered 0, abandoned 1.
fn kpis_show_the_abandon(p: &Value) -> bool {
    p["kpis"].as_array().is_some_and(|rows| {
        rows.iter().any(|r| {
            // Queue, Offered, Answered, Abandoned, Abandon rate, Service level, ...
            let c = cells(r);
            c.len() == 9 && c[..6] == ["support", "1", "0", "1", "100.0 %", "0.0 %"]
        })
    }) && p["kpis_text"]
        .as_str()
        .is_some_and(|t| t.ends_with("calls today: 1"))
}

/// `target/` of this build: the test binary is `target/<profile>/deps/<name>`.
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| repo().join("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_queued_caller_live() {
    self_check();
    // Before anything else: without a browser this test cannot do its job.
    chromium_path();
    let mut engine = start_engine_with("dashboard-browser", |c| {
        let yaml = "queues:\n  support:\n    join_when_empty: true\n    leave_when_empty: false\n    max_wait: 2m\n\
                    agents:\n  agent1001:\n    name: Agent 1001\n    username: \"1001\"\n    password: demo1001\n    queues: { support: 0 }\n";
        let parsed = Config::parse(yaml, Path::new("<dashboard test>")).expect("config parses");
        c.acd = parsed.acd;
        c.flows_dir = repo().join("tests/data/flows-agents");
        c.add_admin_token("ops", TOKEN);
        // Today's KPIs on the page come from the records file.
        c.call_records_file = true;
    })
    .await;
    let url = format!("http://{}/#token={TOKEN}", engine.engine().http_addr());
    let scratch = engine.scratch.path.clone();
    let mut browser = tokio::task::spawn_blocking({
        let scratch = scratch.clone();
        move || Browser::open(&url, &scratch)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    // The page signs in from the link and shows the (empty) queue before any call.
    let (ok, before) = browser.poll(READ_PAGE, Duration::from_secs(15), |v| {
        let p = page(v);
        p["board"] == true
            && empty_queue(&p)
            && p["calls_text"] == "No calls."
            && p["kpis_text"].as_str().is_some_and(|t| {
                t.starts_with("No queued calls today.") && t.ends_with("calls today: 0")
            })
    });
    let before = page(&before);
    assert!(ok, "the dashboard did not show the empty queue: {before:#}");
    assert!(
        before["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| {
                // Agent, State, For, Queues
                let c = cells(r);
                c.first() == Some(&"agent1001")
                    && c.get(1) == Some(&"logged_out")
                    && c.get(3) == Some(&"support")
            })),
        "the agent is listed, logged out, in support: {before:#}"
    );
    // Set in the page's window: gone if anything reloads the page.
    browser.eval("window.__phonetreeTest = 1");

    let caller = run_sipp(
        &engine,
        "caller_waits_in_queue.xml",
        SippOptions {
            service: "queue",
            timeout: Duration::from_secs(30),
            ..SippOptions::default()
        },
    );
    // The caller waits 15 s; meanwhile the page must show it by itself.
    let watch = tokio::task::spawn_blocking(move || {
        let (ok, during) = browser.poll(READ_PAGE, Duration::from_secs(12), |v| {
            let p = page(v);
            one_waiting(&p) && call_queued(&p)
        });
        let shot = ok.then(|| browser.screenshot());
        // After the BYE the queue empties again, still without a reload.
        let after = ok.then(|| {
            let (ok, v) = browser.poll(READ_PAGE, Duration::from_secs(25), |v| {
                let p = page(v);
                empty_queue(&p) && p["calls_text"] == "No calls." && kpis_show_the_abandon(&p)
            });
            (ok, page(&v), browser.screenshot())
        });
        (ok, page(&during), shot, after)
    });
    let (caller, watched) = tokio::join!(caller, watch);
    let (ok, during, shot, after) =
        watched.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    assert!(
        ok,
        "the dashboard did not show one caller waiting at position 1 in support and the \
         queued call: {during:#}\n{}",
        caller.report()
    );
    assert_eq!(during["marker"], true, "the page was reloaded: {during:#}");
    assert_eq!(during["banner"], "", "the page shows an error: {during:#}");

    let shot = shot.expect("screenshot taken");
    assert!(
        shot.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    let path = scratch.join("dashboard.png");
    std::fs::write(&path, &shot).expect("write screenshot");
    println!("dashboard screenshot: {}", path.display());
    let kept = target_dir().join("dashboard.png");
    if std::fs::copy(&path, &kept).is_ok() {
        println!("dashboard screenshot copied to {}", kept.display());
    }

    caller.assert_success();
    let (ok, after, shot_after) = after.expect("watched after the call");
    let path_after = scratch.join("dashboard-after.png");
    std::fs::write(&path_after, &shot_after).expect("write screenshot");
    println!("dashboard after the call: {}", path_after.display());
    let _ = std::fs::copy(&path_after, target_dir().join("dashboard-after.png"));
    assert!(
        ok,
        "the queue did not empty after the caller hung up: {after:#}"
    );
    assert_eq!(after["marker"], true, "the page was reloaded: {after:#}");
    let record = engine
        .record_for(&caller.call_id_prefix, Duration::from_secs(10))
        .await;
    let q = record.queue.as_ref().expect("the call entered the queue");
    assert_eq!(q.queue, "support");
    assert_eq!(q.result, "abandoned");
    engine.shutdown().await;
}
