//! `freshwatch silence add | list | expire`: the API's client.

use crate::http::SilenceView;

use crate::api_client::call;
pub use crate::api_client::ApiError as ClientError;
use reqwest::Method;

pub async fn add(
    base_url: &str,
    token: Option<&str>,
    request: &serde_json::Value,
) -> Result<SilenceView, ClientError> {
    call(
        Method::POST,
        base_url,
        "/api/v1/silences",
        token,
        Some(request),
    )
    .await
}

pub async fn list(base_url: &str, token: Option<&str>) -> Result<Vec<SilenceView>, ClientError> {
    call(Method::GET, base_url, "/api/v1/silences", token, None).await
}

pub async fn expire(
    base_url: &str,
    token: Option<&str>,
    id: &str,
) -> Result<SilenceView, ClientError> {
    let path = format!("/api/v1/silences/{id}");
    call(Method::DELETE, base_url, &path, token, None).await
}

/// One line per silence: id, state, until, matchers, who and why.
pub fn render_list(silences: &[SilenceView]) -> String {
    let mut out = String::new();
    if silences.is_empty() {
        out.push_str("no silences\n");
    }
    for silence in silences {
        let matchers = [
            ("feed", &silence.matchers.feed),
            ("key", &silence.matchers.key),
            ("group", &silence.matchers.group),
        ]
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name}={value}")))
        .collect::<Vec<_>>()
        .join(" ");
        out.push_str(&format!(
            "{}  {:<8} until {}  {}  {}: {}\n",
            silence.id,
            silence.state,
            silence.ends_at,
            crate::tracker::render_key(matchers.as_bytes()),
            if silence.created_by.is_empty() {
                "-"
            } else {
                &silence.created_by
            },
            crate::tracker::render_key(silence.comment.as_bytes()),
        ));
    }
    out
}
