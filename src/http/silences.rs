//! `/api/v1/silences`: list, create, expire.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::HttpState;
use crate::clock::rfc3339;
use crate::silence::{BookError, Matchers, NewSilence, Silence};

/// A silence as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SilenceView {
    pub id: String,
    /// `active`, `pending` or `expired`.
    pub state: String,
    pub matchers: Matchers,
    pub starts_at: String,
    pub ends_at: String,
    pub comment: String,
    pub created_by: String,
    pub allow_data_loss: bool,
}

impl SilenceView {
    pub fn new(silence: &Silence, now_ms: i64) -> SilenceView {
        let state = if silence.active(now_ms) {
            "active"
        } else if silence.starts_at_ms > now_ms {
            "pending"
        } else {
            "expired"
        };
        SilenceView {
            id: silence.id.clone(),
            state: state.to_owned(),
            matchers: silence.matchers.clone(),
            starts_at: rfc3339(silence.starts_at_ms),
            ends_at: rfc3339(silence.ends_at_ms),
            comment: silence.comment.clone(),
            created_by: silence.created_by.clone(),
            allow_data_loss: silence.allow_data_loss,
        }
    }
}

fn answer(result: Result<Silence, BookError>, state: &HttpState, created: bool) -> Response {
    match result {
        Ok(silence) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let view = SilenceView::new(&silence, state.silences.now_ms());
            (status, Json(view)).into_response()
        }
        Err(error) => {
            let status = match &error {
                BookError::Invalid(_) => StatusCode::BAD_REQUEST,
                BookError::Unknown(_) => StatusCode::NOT_FOUND,
                BookError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            (
                status,
                Json(serde_json::json!({"error": error.to_string()})),
            )
                .into_response()
        }
    }
}

/// Active first, then pending, then expired (kept a day).
pub async fn list(State(state): State<HttpState>) -> Json<Vec<SilenceView>> {
    let now_ms = state.silences.now_ms();
    Json(
        state
            .silences
            .silences
            .list(now_ms)
            .iter()
            .map(|silence| SilenceView::new(silence, now_ms))
            .collect(),
    )
}

pub async fn create(State(state): State<HttpState>, body: axum::body::Bytes) -> Response {
    let request: NewSilence = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("not a silence: {error}");
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": message})),
            )
                .into_response();
        }
    };
    let result = state.silences.create(request).await;
    if let Ok(silence) = &result {
        tracing::info!(silence = %silence.id, matchers = ?silence.matchers, "silence created {}", silence.describe());
    }
    answer(result, &state, true)
}

pub async fn expire(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let result = state.silences.expire(&id).await;
    if result.is_ok() {
        tracing::info!(silence = %id, "silence expired");
    }
    answer(result, &state, false)
}
