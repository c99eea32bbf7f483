//! Email notifications over SMTP (lettre): the transport set up once per sink, and one message
//! per notification.

use std::time::Duration;

use super::notification::Notification;
use super::{render, Delivery};

fn tls_error(error: lettre::transport::smtp::Error) -> String {
    format!("cannot set up TLS: {error}")
}

pub fn smtp_transport(
    email: &crate::config::EmailConfig,
    timeout: Duration,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::AsyncSmtpTransport;
    // A TLS setup failure is an error, never a quiet fall back to plaintext credentials.
    let tls = match email.security {
        crate::config::SmtpSecurity::None => Tls::None,
        crate::config::SmtpSecurity::Starttls => {
            Tls::Required(TlsParameters::new(email.smtp_host.clone()).map_err(tls_error)?)
        }
        crate::config::SmtpSecurity::Tls => {
            Tls::Wrapper(TlsParameters::new(email.smtp_host.clone()).map_err(tls_error)?)
        }
    };
    let mut builder =
        AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&email.smtp_host)
            .port(email.smtp_port)
            .tls(tls)
            .timeout(Some(timeout));
    if let Some((user, password)) = &email.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    Ok(builder.build())
}

pub async fn send_email(
    transport: &lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    email: &crate::config::EmailConfig,
    notification: &Notification,
) -> Delivery {
    use lettre::AsyncTransport;
    let (subject, body) = render::email(notification);
    let mut builder = lettre::Message::builder().subject(subject);
    match email.from.parse() {
        Ok(from) => builder = builder.from(from),
        Err(error) => {
            return Delivery::Permanent {
                error: format!("from: {error}"),
            }
        }
    }
    for recipient in &email.to {
        match recipient.parse() {
            Ok(to) => builder = builder.to(to),
            Err(error) => {
                return Delivery::Permanent {
                    error: format!("to: {error}"),
                }
            }
        }
    }
    let message = match builder.body(body) {
        Ok(message) => message,
        Err(error) => {
            return Delivery::Permanent {
                error: error.to_string(),
            }
        }
    };
    match transport.send(message).await {
        Ok(_) => Delivery::Accepted,
        Err(error) if error.is_permanent() => Delivery::Permanent {
            error: error.to_string(),
        },
        Err(error) => Delivery::Transient {
            error: error.to_string(),
            retry_after: None,
        },
    }
}
