//! HTTP admin API (axum).
//!
//! - **Owns:** routes, their JSON shapes and stable error codes.
//! - **Takes:** `EngineShared` (watch snapshots and counters).
//! - **Gives:** `/api/health` (ready + flow version + active calls), `/api/flows/reload`.
//! - **Never:** mutates call or queue state directly, or blocks the runtime.

use crate::runtime::EngineShared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub fn router(shared: Arc<EngineShared>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/flows/reload", post(reload))
        .fallback(not_found)
        .with_state(shared)
}

async fn health(State(s): State<Arc<EngineShared>>) -> Json<serde_json::Value> {
    let catalog = s.catalog.borrow().clone();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "flows_version": catalog.version,
        "flows": catalog.flows.flow_names().collect::<Vec<_>>(),
        "prompts": catalog.prompts.len(),
        "active_calls": s.active_calls(),
    }))
}

async fn reload(State(s): State<Arc<EngineShared>>) -> Response {
    match s.reload().await {
        Ok(version) => {
            Json(json!({ "status": "reloaded", "flows_version": version })).into_response()
        }
        Err(errors) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "flows_invalid",
            "reload refused; the previous flows keep serving",
            Some(errors),
        ),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", None)
}

fn error(status: StatusCode, code: &str, message: &str, details: Option<Vec<String>>) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message, "details": details } })),
    )
        .into_response()
}
