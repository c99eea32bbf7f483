//! `freshwatch silence add | list | expire`: the API's client.

use crate::http::SilenceView;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach freshwatch at {url}: {error}")]
    Unreachable { url: String, error: reqwest::Error },
    /// The API's own message (e.g. the 403 saying how to enable silences).
    #[error("{url} answered HTTP {status}: {message}")]
    Refused {
        url: String,
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("{url} answered something that is not a silence: {error}")]
    Body { url: String, error: reqwest::Error },
}

/// Sends `request` to `base_url` + `path` with the bearer `token`, and reads the answer.
async fn call<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: String,
    token: Option<&str>,
) -> Result<T, ClientError> {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .map_err(|error| ClientError::Unreachable {
            url: url.clone(),
            error: error.without_url(),
        })?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or("").to_owned();
        return Err(ClientError::Refused {
            url,
            status,
            message,
        });
    }
    response.json().await.map_err(|error| ClientError::Body {
        url,
        error: error.without_url(),
    })
}

fn url(base_url: &str, path: &str) -> String {
    format!("{}{path}", base_url.trim_end_matches('/'))
}

pub async fn add(
    base_url: &str,
    token: Option<&str>,
    request: &serde_json::Value,
) -> Result<SilenceView, ClientError> {
    let url = url(base_url, "/api/v1/silences");
    call(reqwest::Client::new().post(&url).json(request), url, token).await
}

pub async fn list(base_url: &str, token: Option<&str>) -> Result<Vec<SilenceView>, ClientError> {
    let url = url(base_url, "/api/v1/silences");
    call(reqwest::Client::new().get(&url), url, token).await
}

pub async fn expire(
    base_url: &str,
    token: Option<&str>,
    id: &str,
) -> Result<SilenceView, ClientError> {
    let url = url(base_url, &format!("/api/v1/silences/{id}"));
    call(reqwest::Client::new().delete(&url), url, token).await
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
