//! The kind-specific part of a notification sink: how one notification is sent over HTTP
//! (webhook, PagerDuty, Slack) or SMTP, and how fast a kind may be called.

use std::time::Duration;

use super::notification::Notification;
use super::{classify_response, email, render, Delivery};
use crate::clock::SharedClock;
use crate::config::{SinkConfig, SinkKind};

/// Sends one notification; the kind-specific part.
#[derive(Debug)]
pub struct Transport {
    client: reqwest::Client,
    kind: SinkKind,
    source: String,
    external_url: String,
    smtp: Option<Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String>>,
    /// Reads `Retry-After` dates.
    clock: SharedClock,
}

impl Transport {
    pub fn new(config: &SinkConfig, external_url: &str, clock: SharedClock) -> Transport {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        let smtp = match &config.kind {
            SinkKind::Email(email) => Some(email::smtp_transport(email, config.timeout)),
            _ => None,
        };
        if let Some(Err(error)) = &smtp {
            tracing::error!(sink = %config.name, %error, "email sink cannot deliver; its notifications go to its fallbacks");
        }
        Transport {
            client,
            kind: config.kind.clone(),
            source: instance_name(external_url),
            external_url: external_url.to_owned(),
            smtp,
            clock,
        }
    }

    pub async fn send(&self, notification: &Notification) -> Delivery {
        match &self.kind {
            SinkKind::Webhook { url, secret } => {
                let body = render::webhook_body(notification).to_string();
                let mut request = self
                    .client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(secret) = secret {
                    request = request.header(
                        render::SIGNATURE_HEADER,
                        render::signature(secret.expose(), body.as_bytes()),
                    );
                }
                classify_response(request.body(body).send().await, self.clock.now_ms())
            }
            SinkKind::PagerDuty { url, routing_key } => {
                let feed_url = format!("{}/api/v1/feeds/{}", self.external_url, notification.feed);
                let event = render::pagerduty_event(
                    notification,
                    routing_key.expose(),
                    &self.source,
                    &feed_url,
                );
                let result = self.client.post(url.clone()).json(&event).send().await;
                classify_response(result, self.clock.now_ms())
            }
            SinkKind::Slack { url } => {
                let message = render::slack_message(notification);
                let result = self.client.post(url.expose()).json(&message).send().await;
                classify_response(result, self.clock.now_ms())
            }
            SinkKind::Email(email) => match &self.smtp {
                Some(Ok(transport)) => email::send_email(transport, email, notification).await,
                Some(Err(error)) => Delivery::Permanent {
                    error: error.clone(),
                },
                None => Delivery::Permanent {
                    error: "no SMTP transport".into(),
                },
            },
        }
    }

    /// Slack asks for at most about one message per second per webhook, PagerDuty's Events API
    /// for about 120 events a minute per routing key (one sink has one key).
    pub fn min_spacing(&self) -> Duration {
        match self.kind {
            SinkKind::Slack { .. } => Duration::from_secs(1),
            SinkKind::PagerDuty { .. } => Duration::from_millis(500),
            _ => Duration::ZERO,
        }
    }
}

/// The `source` of PagerDuty events: this instance's host and port.
fn instance_name(external_url: &str) -> String {
    reqwest::Url::parse(external_url)
        .ok()
        .and_then(|url| {
            url.host_str().map(|host| {
                format!(
                    "freshwatch@{host}:{}",
                    url.port_or_known_default().unwrap_or(0)
                )
            })
        })
        .unwrap_or_else(|| "freshwatch".to_owned())
}
