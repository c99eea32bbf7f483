//! Values that must never reach a log line, and URLs as logs may show them.

/// A value that must never reach a log line (it may carry a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

/// A URL as logs may show it: scheme, host and port; the path and query may carry a token
/// (`/services/T/B/XXXX`, `?token=`), and userinfo a password.
pub fn redacted_url(url: &reqwest::Url) -> String {
    let hidden = !url.path().trim_start_matches('/').is_empty()
        || url.query().is_some()
        || !url.username().is_empty();
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default(),
        if hidden { "/***" } else { "" }
    )
}
