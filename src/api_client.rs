//! The CLI's client of a running instance's HTTP API (`status`, `silence`): one request path,
//! with the bearer token, a timeout, and the API's own error message on a refusal.

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach freshwatch at {url}: {error}")]
    Unreachable { url: String, error: reqwest::Error },
    /// With the API's own message when it gives one (e.g. the 403 saying how to enable
    /// silences).
    #[error("{url} answered HTTP {status}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused {
        url: String,
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("{url} answered something unexpected: {error}")]
    Body { url: String, error: reqwest::Error },
}

/// `method` on `base_url` + `path`, with `token` as bearer and `body` as JSON; the answer read
/// as `T`.
pub async fn call<T: serde::de::DeserializeOwned>(
    method: reqwest::Method,
    base_url: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<T, ApiError> {
    let url = format!("{}{path}", base_url.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .timeout(std::time::Duration::from_secs(10));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request
        .send()
        .await
        .map_err(|error| ApiError::Unreachable {
            url: url.clone(),
            error: error.without_url(),
        })?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or("").to_owned();
        return Err(ApiError::Refused {
            url,
            status,
            message,
        });
    }
    response.json().await.map_err(|error| ApiError::Body {
        url,
        error: error.without_url(),
    })
}
