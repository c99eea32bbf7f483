//! `[http]`, validated: where the API and metrics listen, and the base of links in alerts.

use std::net::SocketAddr;

use super::raw;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Base URL for links in alerts, without a trailing slash.
    pub external_url: String,
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
    Ok(HttpConfig {
        listen,
        external_url,
    })
}
