//! `[http]`, validated: where the API and metrics listen, and the base of links in alerts.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use super::raw;
use super::{ConfigError, Secret};

/// Shortest token accepted: a guessable one would guard nothing.
const MIN_TOKEN_LENGTH: usize = 16;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base URL for links in alerts, without a trailing slash.
    pub external_url: String,
    /// Bearer token of the mutating endpoints; `None`: they answer 403.
    pub admin_token: Option<Secret>,
    /// Bearer token of the read endpoints; `None`: they are open.
    pub read_token: Option<Secret>,
    /// Heavy reads served at once (`http.max_concurrent_reads`); more wait for a turn.
    pub max_concurrent_reads: NonZeroUsize,
}

fn token(key: &str, value: Option<String>) -> Result<Option<Secret>, ConfigError> {
    match value {
        None => Ok(None),
        Some(value) if value.len() < MIN_TOKEN_LENGTH || value.chars().any(char::is_whitespace) => {
            Err(ConfigError::invalid(
                key,
                format!("must be at least {MIN_TOKEN_LENGTH} characters, without spaces (e.g. `openssl rand -hex 32`)"),
            ))
        }
        Some(value) => Ok(Some(Secret::new(value))),
    }
}

pub(super) fn validate_http(raw: raw::RawHttp) -> Result<HttpConfig, ConfigError> {
    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        ConfigError::invalid(
            "http.listen",
            format!("{:?} is not an ip:port address", raw.listen),
        )
    })?;
    let external_url = match raw.external_url {
        Some(url) => {
            reqwest::Url::parse(&url).map_err(|error| {
                ConfigError::invalid("http.external_url", format!("not a URL: {error}"))
            })?;
            url.trim_end_matches('/').to_owned()
        }
        None => format!("http://{listen}"),
    };
    let max_concurrent_reads = NonZeroUsize::new(raw.max_concurrent_reads).ok_or_else(|| {
        ConfigError::invalid(
            "http.max_concurrent_reads",
            "must be at least 1 (0 would refuse every read)",
        )
    })?;
    Ok(HttpConfig {
        listen,
        max_concurrent_reads,
        external_url,
        admin_token: token("http.admin_token", raw.admin_token)?,
        read_token: token("http.read_token", raw.read_token)?,
    })
}
