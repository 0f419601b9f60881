//! The admin router, in process: requests go through `oneshot`, the engine's tasks are
//! played by the `Detached` ends.

use super::*;
use crate::catalog::Catalog;
use crate::config::HttpToken;
use crate::runtime::{Detached, DrainEnd, ReloadStatus};
use axum::body::Body;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use tower::ServiceExt;

const ADMIN: &str = "admin-secret-token";
const READ: &str = "read-only-token";

fn catalog() -> Arc<Catalog> {
    static CATALOG: OnceLock<Arc<Catalog>> = OnceLock::new();
    CATALOG
        .get_or_init(|| {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            Arc::new(
                Catalog::load(&root.join("flows"), &root.join("prompts"), 1)
                    .expect("demo flows load"),
            )
        })
        .clone()
}

fn token(name: &str, role: Role, clear: &str) -> HttpToken {
    HttpToken {
        name: name.into(),
        role,
        sha256: Sha256::digest(clear.as_bytes()).into(),
    }
}

struct Api {
    app: Router,
    shared: Arc<EngineShared>,
    engine: Detached,
}

fn api_with(records: Option<std::path::PathBuf>) -> Api {
    let tokens = vec![
        token("ops", Role::Admin, ADMIN),
        token("wall", Role::Read, READ),
    ];
    let (shared, engine) = EngineShared::detached(catalog(), tokens, records);
    Api {
        app: router(shared.clone()),
        shared,
        engine,
    }
}

fn api() -> Api {
    api_with(None)
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

async fn send_from(
    app: &Router,
    source: [u8; 4],
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Reply {
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let mut req = req
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((source, 40000))));
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str, token: Option<&str>) -> Reply {
    send_from(app, [127, 0, 0, 1], Method::GET, uri, token, None).await
}

async fn post(app: &Router, uri: &str, token: Option<&str>, body: &str) -> Reply {
    send_from(
        app,
        [127, 0, 0, 1],
        Method::POST,
        uri,
        token,
        Some(body.to_string()),
    )
    .await
}

const PROTECTED_GETS: [&str; 11] = [
    "/api/events",
    "/api/session",
    "/api/queues",
    "/api/queues/support",
    "/api/agents",
    "/api/agents/alice",
    "/api/calls",
    "/api/flows",
    "/api/records",
    "/api/records?format=csv",
    "/api/stats",
];

const PROTECTED_POSTS: [&str; 6] = [
    "/api/drain",
    "/api/flows/reload",
    "/api/agents/alice/login",
    "/api/agents/alice/logout",
    "/api/agents/alice/pause",
    "/api/agents/alice/unpause",
];

#[tokio::test]
async fn health_metrics_and_dashboard_need_no_token() {
    let a = api();
    let r = get(&a.app, "/api/health", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["ready"], true);
    let r = get(&a.app, "/api/ready", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&a.app, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&a.app, "/", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("<html"), "{}", r.text);
    let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
}

#[tokio::test]
async fn every_other_endpoint_refuses_a_missing_or_wrong_token() {
    let a = api();
    // Each case from its own address, so the failed-token limiter stays out of the way.
    let mut n = 0u8;
    let mut source = || {
        n += 1;
        [10, 0, 0, n]
    };
    for uri in PROTECTED_GETS {
        for t in [None, Some("wrong")] {
            let r = send_from(&a.app, source(), Method::GET, uri, t, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "GET {uri} {t:?}");
            assert_eq!(r.code(), "unauthorized");
            assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    for uri in PROTECTED_POSTS {
        for t in [None, Some("wrong")] {
            let body = Some("{}".to_string());
            let r = send_from(&a.app, source(), Method::POST, uri, t, body).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "POST {uri} {t:?}");
        }
    }
    assert!(!a.shared.draining(), "a refused drain must not drain");
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_other_schemes_are_refused() {
    let a = api();
    let mut req = axum::http::Request::get("/api/calls")
        .header(header::AUTHORIZATION, format!("bearer {READ}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    assert_eq!(
        a.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::OK
    );
    let req = axum::http::Request::get("/api/calls")
        .header(header::AUTHORIZATION, format!("Basic {READ}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        a.app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn read_token_reads_but_cannot_act() {
    let a = api();
    for uri in ["/api/queues", "/api/agents", "/api/calls", "/api/flows"] {
        assert_eq!(
            get(&a.app, uri, Some(READ)).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    for uri in PROTECTED_POSTS {
        let r = post(&a.app, uri, Some(READ), "{}").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "POST {uri}");
        assert_eq!(r.code(), "forbidden");
    }
    assert!(!a.shared.draining());
}

#[tokio::test]
async fn session_names_the_role_of_the_token() {
    let a = api();
    let r = get(&a.app, "/api/session", Some(READ)).await.json();
    assert_eq!(r, json!({"role": "read", "name": "wall"}));
    let r = get(&a.app, "/api/session", Some(ADMIN)).await.json();
    assert_eq!(r["role"], "admin");
}

#[tokio::test]
async fn unknown_agent_queue_action_and_path_are_404() {
    let a = api();
    // No ACD snapshot published yet: no agent is known.
    let r = get(&a.app, "/api/agents/nobody", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "unknown_agent");
    let r = post(
        &a.app,
        "/api/agents/nobody/pause",
        Some(ADMIN),
        r#"{"reason":"lunch"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "unknown_agent");
    let r = post(&a.app, "/api/agents/nobody/dance", Some(ADMIN), "").await;
    assert_eq!(r.code(), "unknown_action");
    let r = get(&a.app, "/api/queues/nowhere", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "unknown_queue");
    let r = get(&a.app, "/api/nothing", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");
}

#[tokio::test]
async fn oversized_body_is_413_and_bad_json_is_400() {
    let a = api();
    let big = format!(
        r#"{{"deadline_s": 5, "pad": "{}"}}"#,
        "x".repeat(BODY_LIMIT)
    );
    let r = post(&a.app, "/api/drain", Some(ADMIN), &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.code(), "payload_too_large");
    let r = post(&a.app, "/api/drain", Some(ADMIN), "{deadline_s: ").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "bad_json");
    let r = post(
        &a.app,
        "/api/drain",
        Some(ADMIN),
        r#"{"deadline_s": "soon"}"#,
    )
    .await;
    assert_eq!(r.code(), "bad_json");
    let r = post(
        &a.app,
        "/api/drain",
        Some(ADMIN),
        r#"{"deadline_s": 999999}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "bad_request");
    assert!(!a.shared.draining(), "no refused request may drain");
}

#[tokio::test]
async fn wrong_method_is_405_with_a_json_error() {
    let a = api();
    let r = get(&a.app, "/api/drain", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
    let r = post(&a.app, "/api/health", None, "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
}

#[tokio::test]
async fn ten_wrong_tokens_block_the_source_with_429() {
    let a = api();
    let attacker = [192, 0, 2, 7];
    for i in 0..10 {
        let r = send_from(
            &a.app,
            attacker,
            Method::GET,
            "/api/calls",
            Some("guess"),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // Blocked now, even with the right token...
    let r = send_from(
        &a.app,
        attacker,
        Method::GET,
        "/api/calls",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "too_many_requests");
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    // ...but another source is not.
    let r = send_from(
        &a.app,
        [192, 0, 2, 8],
        Method::GET,
        "/api/calls",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Public endpoints stay open (health checks come from the load balancer's address).
    let r = send_from(&a.app, attacker, Method::GET, "/api/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_tokens_do_not_count_as_failures() {
    let a = api();
    for _ in 0..20 {
        get(&a.app, "/api/calls", None).await;
    }
    assert_eq!(
        get(&a.app, "/api/calls", Some(READ)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn drain_refuses_new_calls_and_ends_when_no_call_is_left() {
    let a = api();
    let r = post(&a.app, "/api/drain", Some(ADMIN), r#"{"deadline_s": 30}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "draining");
    let left = r.json()["deadline_s"].as_u64().unwrap();
    assert!((29..=30).contains(&left), "{left}");
    assert!(a.shared.draining());
    let h = get(&a.app, "/api/health", None).await.json();
    assert_eq!(h["draining"], true);
    assert_eq!(h["ready"], false);
    // Readiness says it with the status code, for load balancers; no token needed.
    let r = get(&a.app, "/api/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // No call in progress: the drain is over at once.
    let end = tokio::time::timeout(Duration::from_secs(5), a.shared.drained())
        .await
        .expect("drained resolves");
    assert_eq!(end, DrainEnd::Idle);
    // A later drain can bring the deadline closer but not push it out.
    let first = a.shared.drain_deadline().unwrap();
    post(&a.app, "/api/drain", Some(ADMIN), r#"{"deadline_s": 3000}"#).await;
    assert_eq!(a.shared.drain_deadline(), Some(first));
    post(&a.app, "/api/drain", Some(ADMIN), r#"{"deadline_s": 1}"#).await;
    assert!(a.shared.drain_deadline().unwrap() < first);
}

#[tokio::test]
async fn drained_does_not_resolve_without_a_drain() {
    let a = api();
    let waited = tokio::time::timeout(Duration::from_millis(300), a.shared.drained()).await;
    assert!(waited.is_err());
}

#[tokio::test]
async fn reload_reports_success_or_every_error() {
    let mut a = api();
    let answers = tokio::spawn(async move {
        let first = a.engine.reloads.recv().await.unwrap();
        let _ = first.send(Err(vec!["flows/main.yaml:3:1: unknown node".into()]));
        let second = a.engine.reloads.recv().await.unwrap();
        let _ = second.send(Ok(2));
        a.engine
    });
    let r = post(&a.app, "/api/flows/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.code(), "flows_invalid");
    assert_eq!(
        r.json()["error"]["details"][0],
        "flows/main.yaml:3:1: unknown node"
    );
    let r = post(&a.app, "/api/flows/reload", Some(ADMIN), "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["flows_version"], 2);
    answers.await.unwrap();
}

#[tokio::test]
async fn flows_show_version_and_last_reload_result() {
    let a = api();
    a.engine.last_reload.send_replace(ReloadStatus {
        ok: false,
        at_unix_ms: Some(1_000),
        version: 1,
        errors: vec!["flows/x.yaml:1:1: bad".into()],
    });
    let r = get(&a.app, "/api/flows", Some(READ)).await.json();
    assert_eq!(r["version"], 1);
    assert!(!r["flows"].as_array().unwrap().is_empty());
    assert_eq!(r["last_reload"]["ok"], false);
    assert_eq!(r["last_reload"]["errors"][0], "flows/x.yaml:1:1: bad");
}

/// The first event of `/api/events` (with `Last-Event-ID` when given): its fields by name.
async fn first_event(a: &Api, last_event_id: Option<&str>) -> BTreeMap<String, String> {
    use http_body_util::BodyExt;
    let mut req = axum::http::Request::get("/api/events")
        .header(header::AUTHORIZATION, format!("Bearer {READ}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = a.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first snapshot at once")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.starts_with("event: snapshot\ndata: "), "{text}");
    assert!(text.ends_with("\n\n"), "one whole event: {text}");
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn events_stream_snapshots_as_server_sent_events() {
    let a = api();
    let event = first_event(&a, None).await;
    let data: Value = serde_json::from_str(&event["data"]).unwrap();
    assert_eq!(data["health"]["status"], "ok");
    assert_eq!(data["calls"], json!([]));
    assert!(data["queues"].is_array() && data["agents"].is_array());
    assert_eq!(event["id"], "1");
    assert_eq!(event["retry"], "1000");
}

#[tokio::test]
async fn reconnect_with_last_event_id_gets_a_full_snapshot_with_a_later_id() {
    let a = api();
    let first = first_event(&a, None).await;
    let again = first_event(&a, Some(&first["id"])).await;
    let id = |e: &BTreeMap<String, String>| e["id"].parse::<u64>().unwrap();
    assert!(id(&again) > id(&first), "{again:?} after {first:?}");
    let data: Value = serde_json::from_str(&again["data"]).unwrap();
    for key in ["health", "queues", "agents", "calls"] {
        assert!(data.get(key).is_some(), "full snapshot has {key}: {data}");
    }
    // An id this engine never sent (a restart) is no error: a full snapshot as well.
    let stranger = first_event(&a, Some("not-a-number")).await;
    assert!(id(&stranger) > id(&again));
    assert!(serde_json::from_str::<Value>(&stranger["data"]).unwrap()["health"].is_object());
}

#[tokio::test]
async fn calls_list_is_empty_without_shards() {
    let a = api();
    let r = get(&a.app, "/api/calls", Some(READ)).await.json();
    assert_eq!(r["active_calls"], 0);
    assert_eq!(r["calls"], json!([]));
}

fn record(id: u64, at: u64, caller: &str, outcome: &str, queue: Option<&str>) -> String {
    let mut v = json!({
        "id": id, "call_id": format!("c{id}@x"), "caller": caller, "dialled": "ivr",
        "transport": "udp", "flow": "main", "flow_version": 1, "outcome": outcome,
        "status": 200, "started_unix_ms": at, "duration_ms": 1000, "talk_ms": 900,
        "path": [], "digits": [], "prompts": [], "rtp_packets_sent": 0, "rtp_packets_received": 0,
    });
    if let Some(q) = queue {
        v["queue"] = json!({"queue": q, "enqueued_at_ms": 5, "wait_ms": 1200,
            "answered_by": "alice", "ring_attempts": 1, "agent_talk_ms": 500,
            "abandoned_at_ms": null, "first_ewt_ms": null, "callback": false, "result": "answered"});
    }
    v.to_string()
}

fn records_file() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("phonetree-admin-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("call-records.jsonl");
    let lines = [
        record(1, 1_000, "+15551230001", "caller_hangup", None),
        record(2, 3_000, "+15551230002", "agent_hangup", Some("support")),
        record(3, 2_000, "=HYPERLINK(\"x\")", "abandoned", Some("sales")),
        record(4, 4_000, "+15551230004", "abandoned", Some("support")),
    ];
    std::fs::write(&path, format!("{}\n\n{{\"id\":5,\"cal", lines.join("\n"))).unwrap();
    path
}

#[tokio::test]
async fn records_filter_sort_newest_first_page_and_mask_for_read() {
    let a = api_with(Some(records_file()));
    let r = get(&a.app, "/api/records", Some(ADMIN)).await.json();
    let ids: Vec<u64> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![4, 2, 3, 1]);
    assert_eq!(r["skipped_lines"], 1);
    assert_eq!(r["records"][0]["caller"], "+15551230004");
    let r = get(
        &a.app,
        "/api/records?queue=support&limit=1&offset=1",
        Some(ADMIN),
    )
    .await
    .json();
    assert_eq!(r["total"], 2);
    assert_eq!(r["records"][0]["id"], 2);
    let r = get(
        &a.app,
        "/api/records?outcome=abandoned&from=1970-01-01T00:00:02Z&to=4000",
        Some(READ),
    )
    .await
    .json();
    let ids: Vec<u64> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3]);
    let r = get(&a.app, "/api/records?outcome=caller_hangup", Some(READ))
        .await
        .json();
    assert_eq!(
        r["records"][0]["caller"],
        crate::directory::mask("+15551230001")
    );
    let r = get(&a.app, "/api/records?from=yesterday", Some(READ)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(&a.app, "/api/records?limit=5000", Some(READ)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // axum's own query rejection, in the API's error shape.
    let r = get(&a.app, "/api/records?limit=many", Some(READ)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "bad_request");
    let r = get(&a.app, "/api/records?colour=red", Some(READ)).await;
    assert_eq!(r.code(), "bad_request");
}

#[tokio::test]
async fn records_export_as_csv_without_formula_cells() {
    let a = api_with(Some(records_file()));
    let r = get(&a.app, "/api/records?format=csv", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut lines = r.text.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("id,call_id,started_unix_ms,caller")
    );
    assert_eq!(r.text.lines().count(), 5, "{}", r.text);
    assert!(
        r.text.contains(
            "4,c4@x,4000,+15551230004,ivr,main,abandoned,200,1000,900,support,answered,1200,alice"
        ),
        "{}",
        r.text
    );
    assert!(r.text.contains("'=HYPERLINK"), "{}", r.text);
}

#[tokio::test]
async fn stats_count_the_records_file_in_a_window() {
    let a = api_with(Some(records_file()));
    let r = get(&a.app, "/api/stats", Some(READ)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = r.json();
    // Four records and the torn last line.
    assert_eq!(r["calls"], 4);
    assert_eq!(r["skipped_lines"], 1);
    assert_eq!(r["threshold_s"], 20);
    // All four answered; only the first never reached a queue.
    assert_eq!(r["answered_calls"], 4);
    assert_eq!(r["self_service"], 1);
    assert_eq!(r["containment"], 0.25);
    let support = &r["queues"]["support"];
    assert_eq!(support["offered"], 2);
    assert_eq!(support["answered"], 2);
    assert_eq!(support["asa_ms"], 1200);
    assert_eq!(support["avg_talk_ms"], 500);
    assert_eq!(support["service_level"], 1.0);
    assert_eq!(support["ewt_error_ms"], Value::Null);
    assert_eq!(r["total"]["offered"], 3);

    // [2000, 4000): records 2 (support) and 3 (sales); 1.2 s waits miss a 1 s threshold.
    let r = get(
        &a.app,
        "/api/stats?from=2000&to=1970-01-01T00:00:04Z&threshold_s=1",
        Some(READ),
    )
    .await
    .json();
    assert_eq!(r["calls"], 2);
    assert_eq!(r["queues"]["support"]["offered"], 1);
    assert_eq!(r["queues"]["sales"]["offered"], 1);
    assert_eq!(r["total"]["service_level"], 0.0);
    assert_eq!(r["containment"], 0.0);

    for bad in [
        "/api/stats?from=yesterday",
        "/api/stats?threshold_s=99999",
        "/api/stats?queue=x",
    ] {
        let r = get(&a.app, bad, Some(READ)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.code(), "bad_request", "{bad}");
    }
    let r = get(&api().app, "/api/stats", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "no_records");
}

#[tokio::test]
async fn records_without_a_file_are_404() {
    let a = api();
    let r = get(&a.app, "/api/records", Some(ADMIN)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "no_records");
}

#[tokio::test]
async fn metrics_are_prometheus_text_lines() {
    let a = api();
    a.shared.metrics.sip_request("INVITE");
    a.shared.metrics.flow_reload(true);
    a.shared
        .metrics
        .directory_request(std::time::Duration::from_millis(3));
    let r = get(&a.app, "/metrics", None).await;
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let mut samples = 0;
    for line in r.text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        // name{labels} value, or name value.
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("phonetree_"), "{line}");
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        samples += 1;
    }
    assert!(samples >= 4, "{}", r.text);
    assert!(
        r.text
            .contains("phonetree_sip_requests_total{method=\"INVITE\"} 1")
    );
    assert!(
        r.text
            .contains("phonetree_flow_reloads_total{result=\"ok\"} 1")
    );
    assert!(r.text.contains("phonetree_active_calls 0"));
    assert!(r.text.contains("phonetree_draining 0"));
    assert!(
        r.text
            .contains("phonetree_directory_request_seconds_count 1"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("phonetree_directory_request_seconds_bucket{le=\"0.004\"} 1"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("phonetree_queue_wait_seconds_count 0"),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("phonetree_rtp_packets_total{direction=\"in\"}"),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("phonetree_rtp_late_sweeps_total"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn engine_refuses_to_start_on_a_public_address_without_a_token() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = crate::config::Config::for_tests(root.join("flows"), root.join("prompts"));
    config.http_listen = "0.0.0.0:0".parse().unwrap();
    let Err(err) = crate::runtime::Engine::start(config).await else {
        panic!("must refuse to start");
    };
    let text = err.to_string();
    assert!(
        matches!(err, crate::runtime::RuntimeError::Insecure(_)),
        "{text}"
    );
    assert!(
        text.contains("0.0.0.0:0") && text.contains("PHONETREE_ADMIN_TOKEN"),
        "{text}"
    );
}

#[tokio::test]
async fn stats_show_survey_answers_per_survey() {
    let dir = std::env::temp_dir().join(format!("phonetree-admin-survey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("call-records.jsonl");
    let with_survey = |id: u64, score: Option<u8>| {
        let mut v: Value = serde_json::from_str(&record(
            id,
            id * 1_000,
            "+15551230001",
            "caller_hangup",
            None,
        ))
        .unwrap();
        v["surveys"] = json!([{ "survey": "csat", "scale": 5, "score": score,
            "offered_at_ms": 30_000, "answered_at_ms": score.map(|_| 34_000) }]);
        v.to_string()
    };
    let lines = [
        with_survey(1, Some(5)),
        with_survey(2, Some(2)),
        with_survey(3, None),
        record(4, 4_000, "+15551230004", "caller_hangup", None),
    ];
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let a = api_with(Some(path));
    let r = get(&a.app, "/api/stats", Some(READ)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let csat = &r.json()["surveys"]["csat"];
    assert_eq!(csat["offered"], 3);
    assert_eq!(csat["responses"], 2);
    assert_eq!(csat["avg_score"], 3.5);
    assert_eq!(
        csat["distribution"],
        json!({"1": 0, "2": 1, "3": 0, "4": 0, "5": 1})
    );
    let _ = std::fs::remove_dir_all(&dir);
}
