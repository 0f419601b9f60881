//! HTTP admin API (axum) and the dashboard.
//!
//! - **Owns:** routes, their JSON shapes, stable error codes, bearer-token checks, the
//!   failed-token limiter, the request body limit and timeout.
//! - **Takes:** `EngineShared` (watch snapshots, counters, command channels).
//! - **Gives:** `/` (dashboard), `/api/health`, `/metrics`, and behind a token the queues,
//!   agents, calls, flows, records and drain endpoints (see `docs/admin.md`).
//! - **Never:** mutates call or queue state directly, blocks the runtime, or logs a token.

pub mod auth;
pub mod records;
pub mod stats;

use crate::runtime::EngineShared;
use crate::runtime::agents::AgentCommand;
use crate::runtime::metrics::{Gauges, gauges_from_acd, state_name};
use auth::{RateLimiter, Role, Verdict};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request body accepted (the API's bodies are a few bytes of JSON).
pub const BODY_LIMIT: usize = 64 * 1024;
/// A request that takes longer gets 503 (a wedged engine task must not pile up requests).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Drain deadline when the request names none.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(300);
/// Longest drain deadline accepted.
pub const MAX_DRAIN_DEADLINE: Duration = Duration::from_secs(24 * 3600);

const DASHBOARD: &str = include_str!("dashboard.html");

#[derive(Clone)]
struct AdminState {
    shared: Arc<EngineShared>,
    limiter: Arc<Mutex<RateLimiter>>,
    /// Id of the last `/api/events` event, over all streams: ids go up across reconnects.
    event_seq: Arc<std::sync::atomic::AtomicU64>,
}

/// Who made a request: the role and configuration name of their token.
#[derive(Clone, Debug)]
struct Principal {
    role: Role,
    name: String,
}

impl Principal {
    /// Caller numbers are shown in full to admins only.
    fn masks(&self) -> bool {
        self.role < Role::Admin
    }
}

pub fn router(shared: Arc<EngineShared>) -> Router {
    router_with_limiter(shared, RateLimiter::default())
}

/// `router` with a given failed-token limiter (tests use a small one).
pub fn router_with_limiter(shared: Arc<EngineShared>, limiter: RateLimiter) -> Router {
    let state = AdminState {
        shared,
        limiter: Arc::new(Mutex::new(limiter)),
        event_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    let protected = Router::new()
        .route("/api/session", get(session))
        .route("/api/queues", get(queues))
        .route("/api/queues/{name}", get(queue))
        .route("/api/agents", get(agents))
        .route("/api/agents/{id}", get(agent))
        .route("/api/agents/{id}/{action}", post(agent_action))
        .route("/api/calls", get(calls))
        .route("/api/flows", get(flows))
        .route("/api/flows/reload", post(reload))
        .route("/api/records", get(records))
        .route("/api/stats", get(stats))
        .route("/api/drain", post(drain))
        .route("/api/events", get(events))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        // The page holds no data: it asks for a token and then calls the API with it.
        .route("/", get(dashboard))
        .route("/api/health", get(health))
        .route("/api/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(timeout))
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

// ---------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------

fn source_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    // RFC 6750 §2.1 with RFC 9110 §11.1: the scheme is case-insensitive.
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn require_token(State(s): State<AdminState>, mut req: Request, next: Next) -> Response {
    let ip = source_ip(&req);
    let now = Instant::now();
    let verdict = s
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check(ip, now);
    if let Verdict::Blocked { until } = verdict {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many failed token attempts from this address; try again later",
        );
        let secs = until.saturating_duration_since(now).as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let Some(token) = bearer(&req) else {
        return unauthorized("a bearer token is needed (Authorization: Bearer <token>)");
    };
    let Some((role, name)) = auth::role_of(&s.shared.admin_tokens, token) else {
        let blocked = s
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_failure(ip, now);
        // Never the token itself: a near miss would leak most of a real one.
        tracing::warn!(target: "security", source = %ip, path = %req.uri().path(), blocked, "admin API: unknown token");
        return unauthorized("unknown token");
    };
    let acting = !matches!(*req.method(), Method::GET | Method::HEAD);
    if acting && role < Role::Admin {
        tracing::info!(target: "security", source = %ip, token = name, path = %req.uri().path(), "admin API: read token tried an action");
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token may read but not act",
        );
    }
    let name = name.to_string();
    req.extensions_mut().insert(Principal { role, name });
    next.run(req).await
}

async fn timeout(req: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the engine did not answer in time",
        ),
    }
}

/// Rejections from axum's own extractors (a query string that does not parse, a path that
/// is not UTF-8) come as plain text: give them the API's JSON error shape too.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let message = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    error(status, code, &message)
}

/// A JSON body within `BODY_LIMIT`; an empty body reads as `{}`.
struct JsonBody<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    &format!("request bodies are limited to {BODY_LIMIT} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "bad_request", &r.body_text())
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(JsonBody).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                &format!("the body is not the JSON expected: {e}"),
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

// ---------------------------------------------------------------------------
// Public endpoints
// ---------------------------------------------------------------------------

async fn dashboard() -> Response {
    let mut r = Html(DASHBOARD).into_response();
    // The page runs only its own inline script and talks only to this origin.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn health(State(s): State<AdminState>) -> Json<Value> {
    Json(health_json(&s.shared))
}

/// Readiness for a load balancer or a proxy's health check (Kamailio `dispatcher`, HAProxy):
/// 200 while the engine takes new calls, 503 while it drains. Liveness stays `/api/health`.
async fn ready(State(s): State<AdminState>) -> Response {
    let status = if s.shared.draining() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(health_json(&s.shared))).into_response()
}

fn health_json(shared: &EngineShared) -> Value {
    let catalog = shared.catalog.borrow().clone();
    json!({
        "status": "ok",
        "ready": !shared.draining(),
        "draining": shared.draining(),
        "version": env!("CARGO_PKG_VERSION"),
        "flows_version": catalog.version,
        "flows": catalog.flows.flow_names().collect::<Vec<_>>(),
        "prompts": catalog.prompts.len(),
        "active_calls": shared.active_calls(),
    })
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let shared = &s.shared;
    let mut gauges = Gauges {
        active_calls: shared.active_calls() as u64,
        draining: shared.draining(),
        ..Default::default()
    };
    for shard in &shared.shards {
        use std::sync::atomic::Ordering::Relaxed;
        gauges.rtp_received += shard.stats.rtp_received.load(Relaxed);
        gauges.rtp_sent += shard.stats.rtp_sent.load(Relaxed);
        gauges.late_sweeps += shard.stats.late_ticks.load(Relaxed);
    }
    if let Some(acd) = &shared.agents.borrow().acd {
        gauges_from_acd(acd, &mut gauges);
    }
    let body = shared.metrics.render(&gauges);
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Queues and agents (from the ACD snapshot, read defensively: its shape is the ACD's)
// ---------------------------------------------------------------------------

/// Masks caller numbers anywhere in a JSON value (fields `caller`, `number`, `from`).
fn mask_json(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if matches!(k.as_str(), "caller" | "number" | "from")
                    && let Value::String(s) = v
                {
                    *s = crate::directory::mask(s);
                    continue;
                }
                mask_json(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

fn view_json(s: &EngineShared) -> (Value, Value) {
    let view = s.agents.borrow().clone();
    let acd = view
        .acd
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok())
        .unwrap_or(Value::Null);
    let bindings = serde_json::to_value(&view.bindings).unwrap_or(Value::Null);
    (acd, bindings)
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn agent_id(a: &Value) -> Option<&str> {
    ["id", "agent", "name"]
        .iter()
        .find_map(|k| a.get(*k).and_then(Value::as_str))
}

/// An agent's snapshot entry with the dashboard's extras: `state_name` (snake case) and
/// the agent's phone registrations.
fn agent_entry(mut a: Value, bindings: &Value) -> Value {
    let id = agent_id(&a).map(str::to_string);
    let state = state_name(a.get("state"));
    let phones: Vec<Value> = bindings
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| id.is_some() && agent_id(b) == id.as_deref())
        .cloned()
        .collect();
    if let Value::Object(m) = &mut a {
        m.insert("state_name".into(), Value::String(state));
        m.entry("registrations")
            .or_insert_with(|| Value::Array(phones));
    }
    a
}

/// Who the token is: the dashboard shows action buttons to admins only.
async fn session(Extension(p): Extension<Principal>) -> Json<Value> {
    Json(json!({ "role": p.role, "name": p.name }))
}

async fn queues(State(s): State<AdminState>, Extension(p): Extension<Principal>) -> Json<Value> {
    Json(queues_json(&s.shared, p.masks()))
}

fn queues_json(shared: &EngineShared, mask: bool) -> Value {
    let (acd, _) = view_json(shared);
    let mut out = json!({ "queues": list(&acd, "queues") });
    if mask {
        mask_json(&mut out);
    }
    out
}

async fn queue(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    let (acd, _) = view_json(&s.shared);
    let found = list(&acd, "queues")
        .into_iter()
        .find(|q| q.get("name").and_then(Value::as_str) == Some(name.as_str()));
    match found {
        Some(mut q) => {
            if p.masks() {
                mask_json(&mut q);
            }
            Json(q).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "unknown_queue", "no such queue"),
    }
}

async fn agents(State(s): State<AdminState>, Extension(p): Extension<Principal>) -> Json<Value> {
    Json(agents_json(&s.shared, p.masks()))
}

fn agents_json(shared: &EngineShared, mask: bool) -> Value {
    let (acd, bindings) = view_json(shared);
    let agents: Vec<Value> = list(&acd, "agents")
        .into_iter()
        .map(|a| agent_entry(a, &bindings))
        .collect();
    let mut out = json!({ "agents": agents });
    if mask {
        mask_json(&mut out);
    }
    out
}

fn find_agent(s: &EngineShared, id: &str) -> Option<Value> {
    let (acd, bindings) = view_json(s);
    list(&acd, "agents")
        .into_iter()
        .find(|a| agent_id(a) == Some(id))
        .map(|a| agent_entry(a, &bindings))
}

async fn agent(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match find_agent(&s.shared, &id) {
        Some(mut a) => {
            if p.masks() {
                mask_json(&mut a);
            }
            Json(a).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "unknown_agent", "no such agent"),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    reason: Option<String>,
}

async fn agent_action(
    State(s): State<AdminState>,
    Path((id, action)): Path<(String, String)>,
    JsonBody(body): JsonBody<PauseBody>,
) -> Response {
    let command = match action.as_str() {
        "login" => AgentCommand::Login,
        "logout" => AgentCommand::Logout,
        "pause" => {
            let reason = body.reason.map(|r| r.trim().to_string());
            if reason.as_ref().is_some_and(|r| r.chars().count() > 64) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "a pause reason is at most 64 characters",
                );
            }
            AgentCommand::Pause {
                reason: reason.filter(|r| !r.is_empty()),
            }
        }
        "unpause" => AgentCommand::Unpause,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_action",
                "actions are login, logout, pause and unpause",
            );
        }
    };
    // The snapshot is at most a second old: an agent configured by the last reload may
    // briefly be unknown here, never the other way round (the ACD checks again).
    if find_agent(&s.shared, &id).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown_agent", "no such agent");
    }
    match s.shared.agent_command(&id, command).await {
        Ok(()) => Json(json!({ "status": "ok", "agent": id, "action": action })).into_response(),
        Err(message) => error(StatusCode::CONFLICT, "refused", &message),
    }
}

// ---------------------------------------------------------------------------
// Calls, flows, drain
// ---------------------------------------------------------------------------

async fn calls(State(s): State<AdminState>, Extension(p): Extension<Principal>) -> Json<Value> {
    Json(calls_json(&s.shared, p.masks()))
}

fn calls_json(shared: &EngineShared, mask: bool) -> Value {
    let mut calls = shared.calls();
    if mask {
        for c in &mut calls {
            c.caller = crate::directory::mask(&c.caller);
        }
    }
    json!({ "active_calls": shared.active_calls(), "calls": calls })
}

/// How long a client should wait before reconnecting (the SSE `retry` field).
const EVENTS_RETRY: Duration = Duration::from_secs(1);

/// `GET /api/events`: one `snapshot` event a second with health, queues, agents and
/// calls (the same JSON as their endpoints). Browsers read it with `fetch`, since
/// `EventSource` cannot send the bearer token.
///
/// Every event is a whole snapshot, never a delta, so a reconnect with `Last-Event-ID`
/// (HTML Living Standard, server-sent events §9.2.4) has nothing to replay: it gets a full
/// snapshot at once, like a first connection. The header is only logged.
async fn events(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
) -> Sse<Snapshots> {
    if let Some(last) = headers.get("last-event-id") {
        let last = last.to_str().unwrap_or("(not text)");
        tracing::debug!(last_event_id = %last.chars().take(32).collect::<String>(), "admin events: reconnect, sending a full snapshot");
    }
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    Sse::new(Snapshots {
        shared: s.shared.clone(),
        mask: p.masks(),
        interval,
        seq: s.event_seq.clone(),
        first: true,
    })
}

struct Snapshots {
    shared: Arc<EngineShared>,
    mask: bool,
    interval: tokio::time::Interval,
    seq: Arc<std::sync::atomic::AtomicU64>,
    first: bool,
}

impl futures_core::Stream for Snapshots {
    type Item = Result<Event, std::convert::Infallible>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.interval.poll_tick(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        let snapshot = json!({
            "health": health_json(&this.shared),
            "queues": queues_json(&this.shared, this.mask)["queues"],
            "agents": agents_json(&this.shared, this.mask)["agents"],
            "calls": calls_json(&this.shared, this.mask)["calls"],
        });
        let id = this.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut event = Event::default()
            .event("snapshot")
            .data(snapshot.to_string())
            .id(id.to_string());
        if std::mem::take(&mut this.first) {
            event = event.retry(EVENTS_RETRY);
        }
        std::task::Poll::Ready(Some(Ok(event)))
    }
}

async fn flows(State(s): State<AdminState>) -> Json<Value> {
    let catalog = s.shared.catalog.borrow().clone();
    let last = s.shared.last_reload.borrow().clone();
    Json(json!({
        "version": catalog.version,
        "flows": catalog.flows.flow_names().collect::<Vec<_>>(),
        "prompts": catalog.prompts.len(),
        "warnings": catalog.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        "last_reload": last,
    }))
}

async fn reload(State(s): State<AdminState>) -> Response {
    match s.shared.reload().await {
        Ok(version) => {
            Json(json!({ "status": "reloaded", "flows_version": version })).into_response()
        }
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": {
                "code": "flows_invalid",
                "message": "reload refused; the previous flows keep serving",
                "details": errors,
            } })),
        )
            .into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainBody {
    deadline_s: Option<u64>,
}

async fn drain(State(s): State<AdminState>, JsonBody(body): JsonBody<DrainBody>) -> Response {
    let deadline = body
        .deadline_s
        .map_or(DEFAULT_DRAIN_DEADLINE, Duration::from_secs);
    if deadline > MAX_DRAIN_DEADLINE {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "deadline_s is at most 86400",
        );
    }
    let now = Instant::now();
    let until = s.shared.start_drain(now, deadline);
    Json(json!({
        "status": "draining",
        "active_calls": s.shared.active_calls(),
        "deadline_s": until.saturating_duration_since(now).as_secs(),
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Call records
// ---------------------------------------------------------------------------

async fn records(
    State(s): State<AdminState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<records::RawQuery>,
) -> Response {
    let query = match records::RecordQuery::parse(&q) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    let Some(path) = s.shared.records_file.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_records",
            "call records are not written to a file (call_records_file: false)",
        );
    };
    let mask = p.masks();
    // The file can be large: read it on the blocking pool, not on the runtime.
    let found = tokio::task::spawn_blocking(move || records::read(&path, &query, mask)).await;
    let page = match found {
        Ok(Ok(page)) => page,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read call records");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "records_unavailable",
                "the call records cannot be read",
            );
        }
        Err(_) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "records_unavailable",
                "the call records cannot be read",
            );
        }
    };
    if q.format.as_deref() == Some("csv") {
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"call-records.csv\"",
                ),
            ],
            records::to_csv(&page.records),
        )
            .into_response();
    }
    Json(json!({
        "total": page.total,
        "skipped_lines": page.bad_lines,
        "records": page.records,
    }))
    .into_response()
}

/// `GET /api/stats`: KPIs over the records that started in `[from, to)`.
async fn stats(State(s): State<AdminState>, Query(q): Query<stats::RawQuery>) -> Response {
    let query = match stats::StatsQuery::parse(&q) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e),
    };
    let Some(path) = s.shared.records_file.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_records",
            "call records are not written to a file (call_records_file: false)",
        );
    };
    // Counted while reading, on the blocking pool: the file is never held in memory whole.
    let found = tokio::task::spawn_blocking(move || {
        let mut counter = stats::Counter::new(&query);
        let bad = records::scan(&path, |v| counter.add(&v))?;
        Ok::<_, std::io::Error>((counter.finish(), bad))
    })
    .await;
    match found {
        Ok(Ok((stats, bad))) => {
            let mut v = serde_json::to_value(&stats).unwrap_or(Value::Null);
            v["skipped_lines"] = json!(bad);
            Json(v).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read call records");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "records_unavailable",
                "the call records cannot be read",
            )
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "records_unavailable",
            "the call records cannot be read",
        ),
    }
}

#[cfg(test)]
mod tests;
