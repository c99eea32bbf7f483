//! `[alerts]`, validated: Alertmanager and notification sinks, what each accepts, and where
//! what one cannot deliver falls back to.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::raw;
use super::{redacted_url, ConfigError, Secret};
use crate::model::Severity;

#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub alertmanager: Vec<AlertmanagerConfig>,
    /// Notification sinks fed through the durable outbox.
    pub sinks: Vec<SinkConfig>,
    pub watchdog: bool,
}

#[derive(Clone)]
pub struct AlertmanagerConfig {
    pub name: String,
    pub url: reqwest::Url,
    pub resend_interval: Duration,
    pub timeout: Duration,
    pub min_severity: Severity,
    /// Feed/key globs; empty accepts every feed.
    pub feeds: Vec<FeedPattern>,
    /// Notification sinks that get what this Alertmanager did not accept in `fallback_after`.
    pub fallback: Vec<String>,
    pub fallback_after: Duration,
    /// Takes system and consumer-group alerts whatever `feeds` says.
    pub system: bool,
}

impl std::fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AlertmanagerConfig")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("min_severity", &self.min_severity)
            .field("feeds", &self.feeds)
            .field("fallback", &self.fallback)
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

/// One notification sink: where it delivers and what it accepts.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub min_severity: Severity,
    /// Feed/key globs; empty accepts every feed.
    pub feeds: Vec<FeedPattern>,
    pub fallback: Vec<String>,
    pub fallback_after: Duration,
    pub repeat_interval: Duration,
    pub rate_limit: u32,
    pub rate_limit_period: Duration,
    pub timeout: Duration,
    /// Takes system and consumer-group alerts whatever `feeds` says.
    pub system: bool,
    /// Notifications held while undelivered before only the newest per dedup key is kept.
    pub max_queued: usize,
}

impl SinkConfig {
    /// Whether this sink wants notices about `feed`/`key` at `severity`.
    pub fn accepts(&self, feed: &str, key: &str, severity: Severity) -> bool {
        severity >= self.min_severity
            && (self.feeds.is_empty()
                || self.feeds.iter().any(|pattern| pattern.matches(feed, key)))
    }

    /// Whether this sink wants an alert about freshwatch itself or a consumer group: the pager
    /// must hear that freshwatch is blind, whatever feeds it routes.
    pub fn accepts_system(&self, severity: Severity) -> bool {
        self.system && severity >= self.min_severity
    }
}

#[derive(Clone)]
pub enum SinkKind {
    Webhook {
        url: reqwest::Url,
        secret: Option<Secret>,
    },
    PagerDuty {
        url: reqwest::Url,
        routing_key: Secret,
    },
    Slack {
        url: Secret,
    },
    Email(EmailConfig),
}

impl std::fmt::Debug for SinkKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkKind::Webhook { url, secret } => formatter
                .debug_struct("Webhook")
                .field("url", &redacted_url(url))
                .field("secret", secret)
                .finish(),
            SinkKind::PagerDuty { url, routing_key } => formatter
                .debug_struct("PagerDuty")
                .field("url", &redacted_url(url))
                .field("routing_key", routing_key)
                .finish(),
            SinkKind::Slack { url } => formatter.debug_struct("Slack").field("url", url).finish(),
            SinkKind::Email(email) => formatter.debug_tuple("Email").field(email).finish(),
        }
    }
}

impl SinkKind {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::PagerDuty { .. } => "pagerduty",
            SinkKind::Slack { .. } => "slack",
            SinkKind::Email(_) => "email",
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<(String, Secret)>,
    pub from: String,
    pub to: Vec<String>,
}

/// `email.security`: how the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain text, for a local relay; never with credentials.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    Starttls,
    /// TLS from the first byte.
    Tls,
}

impl From<raw::RawSmtpSecurity> for SmtpSecurity {
    fn from(security: raw::RawSmtpSecurity) -> Self {
        match security {
            raw::RawSmtpSecurity::None => SmtpSecurity::None,
            raw::RawSmtpSecurity::Starttls => SmtpSecurity::Starttls,
            raw::RawSmtpSecurity::Tls => SmtpSecurity::Tls,
        }
    }
}

/// `"profiles"` (any key of the feed), `"billing/*"`, `"profiles/acme"`: a glob over `feed` or
/// `feed/key`, where `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPattern(pub String);

impl FeedPattern {
    pub fn matches(&self, feed: &str, key: &str) -> bool {
        if self.0.contains('/') {
            glob_matches(self.0.as_bytes(), format!("{feed}/{key}").as_bytes())
        } else {
            glob_matches(self.0.as_bytes(), feed.as_bytes())
        }
    }
}

/// `*` matches any run of bytes. Linear backtracking to the last star only: O(pattern × text)
/// at worst, whatever the number of stars (a recursive matcher is exponential in them).
pub fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            resume = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = resume {
            p = star + 1;
            t = matched + 1;
            resume = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&byte| byte == b'*')
}

/// An http(s) URL a sink (or the heartbeat) sends to.
pub(super) fn parse_sink_url(key: String, url: &str) -> Result<reqwest::Url, ConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| ConfigError::invalid(key.clone(), format!("not a URL: {error}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::invalid(key, "scheme must be http or https"));
    }
    Ok(parsed)
}

pub(super) fn validate_alerts(mut raw: raw::RawAlerts) -> Result<AlertsConfig, ConfigError> {
    let mut names = SinkNames::default();
    let alertmanager = validate_alertmanagers(std::mem::take(&mut raw.alertmanager), &mut names)?;
    let sinks = route_sinks(notification_sinks(&raw)?, &mut names)?;
    check_fallbacks(&alertmanager, &sinks)?;
    Ok(AlertsConfig {
        alertmanager,
        sinks,
        watchdog: raw.watchdog,
    })
}

/// The names taken so far: one namespace across every kind, since `fallback` lists name sinks.
#[derive(Debug, Default)]
struct SinkNames(HashSet<String>);

impl SinkNames {
    fn claim(&mut self, key: String, name: &str) -> Result<(), ConfigError> {
        if self.0.insert(name.to_owned()) {
            return Ok(());
        }
        Err(ConfigError::invalid(
            key,
            format!("duplicate sink name {name:?}"),
        ))
    }
}

fn validate_alertmanagers(
    raw: Vec<raw::RawAlertmanager>,
    names: &mut SinkNames,
) -> Result<Vec<AlertmanagerConfig>, ConfigError> {
    let mut alertmanagers = Vec::with_capacity(raw.len());
    for (index, sink) in raw.into_iter().enumerate() {
        let name = sink.name.unwrap_or_else(|| format!("alertmanager-{index}"));
        names.claim(format!("alerts.alertmanager[{index}].name"), &name)?;
        if sink.resend_interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                format!("alerts.alertmanager[{index}].resend_interval"),
                "must be at least 1s",
            ));
        }
        alertmanagers.push(AlertmanagerConfig {
            name,
            url: parse_sink_url(format!("alerts.alertmanager[{index}].url"), &sink.url)?,
            resend_interval: sink.resend_interval,
            timeout: sink.timeout,
            min_severity: sink.min_severity.severity(),
            feeds: sink.feeds.into_iter().map(FeedPattern).collect(),
            fallback: sink.fallback,
            fallback_after: sink.fallback_after,
            system: sink.system,
        });
    }
    Ok(alertmanagers)
}

/// A notification sink whose kind-specific keys are checked, before its routing is: `key` is
/// its table, e.g. `alerts.email[0]`.
struct UnroutedSink {
    key: String,
    routing: raw::RawRouting,
    kind: SinkKind,
}

/// Every notification sink, in the order names are given: webhook, pagerduty, slack, email.
fn notification_sinks(raw: &raw::RawAlerts) -> Result<Vec<UnroutedSink>, ConfigError> {
    let mut sinks = Vec::new();
    for (index, sink) in raw.webhook.iter().enumerate() {
        let key = format!("alerts.webhook[{index}]");
        let kind = SinkKind::Webhook {
            url: parse_sink_url(format!("{key}.url"), &sink.url)?,
            secret: sink.secret.clone().map(Secret::new),
        };
        sinks.push(UnroutedSink {
            key,
            routing: sink.routing(),
            kind,
        });
    }
    for (index, sink) in raw.pagerduty.iter().enumerate() {
        let key = format!("alerts.pagerduty[{index}]");
        let kind = pagerduty_kind(&key, sink)?;
        sinks.push(UnroutedSink {
            key,
            routing: sink.routing(),
            kind,
        });
    }
    for (index, sink) in raw.slack.iter().enumerate() {
        let key = format!("alerts.slack[{index}]");
        parse_sink_url(format!("{key}.url"), &sink.url)?;
        let kind = SinkKind::Slack {
            url: Secret::new(sink.url.clone()),
        };
        sinks.push(UnroutedSink {
            key,
            routing: sink.routing(),
            kind,
        });
    }
    for (index, sink) in raw.email.iter().enumerate() {
        let key = format!("alerts.email[{index}]");
        let kind = SinkKind::Email(email_config(&key, sink)?);
        sinks.push(UnroutedSink {
            key,
            routing: sink.routing(),
            kind,
        });
    }
    Ok(sinks)
}

fn pagerduty_kind(key: &str, sink: &raw::RawPagerDuty) -> Result<SinkKind, ConfigError> {
    if sink.routing_key.trim().is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.routing_key"),
            "must not be empty",
        ));
    }
    Ok(SinkKind::PagerDuty {
        url: parse_sink_url(format!("{key}.url"), &sink.url)?,
        routing_key: Secret::new(sink.routing_key.clone()),
    })
}

fn email_config(key: &str, sink: &raw::RawEmail) -> Result<EmailConfig, ConfigError> {
    if sink.to.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.to"),
            "needs at least one recipient",
        ));
    }
    let addresses =
        std::iter::once(("from", &sink.from)).chain(sink.to.iter().map(|to| ("to", to)));
    for (field, address) in addresses {
        if address.parse::<lettre::Address>().is_err() {
            return Err(ConfigError::invalid(
                format!("{key}.{field}"),
                format!("{address:?} is not an email address"),
            ));
        }
    }
    Ok(EmailConfig {
        smtp_host: sink.smtp_host.clone(),
        smtp_port: sink.smtp_port,
        security: sink.security.into(),
        credentials: smtp_credentials(key, sink)?,
        from: sink.from.clone(),
        to: sink.to.clone(),
    })
}

/// Username and password together, and never over a plain connection.
fn smtp_credentials(
    key: &str,
    sink: &raw::RawEmail,
) -> Result<Option<(String, Secret)>, ConfigError> {
    let credentials = match (&sink.username, &sink.password) {
        (Some(user), Some(password)) => Some((user.clone(), Secret::new(password.clone()))),
        (None, None) => None,
        _ => {
            return Err(ConfigError::invalid(
                format!("{key}.username"),
                "username and password go together",
            ))
        }
    };
    if credentials.is_some() && sink.security == raw::RawSmtpSecurity::None {
        return Err(ConfigError::invalid(
            format!("{key}.security"),
            "username and password need security = \"starttls\" or \"tls\": freshwatch never sends credentials in plain text",
        ));
    }
    Ok(credentials)
}

/// Names each sink (`<kind>-N` by default, N counted per kind) and checks its routing.
fn route_sinks(
    unrouted: Vec<UnroutedSink>,
    names: &mut SinkNames,
) -> Result<Vec<SinkConfig>, ConfigError> {
    let mut per_kind: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut sinks = Vec::with_capacity(unrouted.len());
    for UnroutedSink { key, routing, kind } in unrouted {
        let counter = per_kind.entry(kind.kind()).or_default();
        let name = routing
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{counter}", kind.kind()));
        *counter += 1;
        names.claim(format!("{key}.name"), &name)?;
        if routing.rate_limit == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.rate_limit"),
                "must be at least 1",
            ));
        }
        if routing.max_queued == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.max_queued"),
                "must be at least 1",
            ));
        }
        sinks.push(SinkConfig {
            name,
            kind,
            min_severity: routing.min_severity.severity(),
            feeds: routing.feeds.into_iter().map(FeedPattern).collect(),
            fallback: routing.fallback,
            fallback_after: routing.fallback_after,
            repeat_interval: routing.repeat_interval,
            rate_limit: routing.rate_limit,
            rate_limit_period: routing.rate_limit_period,
            timeout: routing.timeout,
            system: routing.system,
            max_queued: routing.max_queued,
        });
    }
    Ok(sinks)
}

/// A `fallback` names another notification sink: Alertmanager cannot be one, and a sink cannot
/// fall back to itself.
fn check_fallbacks(
    alertmanagers: &[AlertmanagerConfig],
    sinks: &[SinkConfig],
) -> Result<(), ConfigError> {
    let sink_names: HashSet<&str> = sinks.iter().map(|sink| sink.name.as_str()).collect();
    for (index, sink) in alertmanagers.iter().enumerate() {
        for target in &sink.fallback {
            if !sink_names.contains(target.as_str()) {
                return Err(ConfigError::invalid(
                    format!("alerts.alertmanager[{index}].fallback"),
                    format!("{target:?} is not a webhook, pagerduty, slack or email sink"),
                ));
            }
        }
    }
    for sink in sinks {
        for target in &sink.fallback {
            if target == &sink.name || !sink_names.contains(target.as_str()) {
                return Err(ConfigError::invalid(
                    format!("alerts sink {:?} fallback", sink.name),
                    format!("{target:?} is not another webhook, pagerduty, slack or email sink"),
                ));
            }
        }
    }
    Ok(())
}
