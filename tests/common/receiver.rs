//! A local HTTP receiver standing in for webhook, PagerDuty or Slack endpoints: records every
//! request and answers as told (2xx, 5xx, 429 with Retry-After).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: serde_json::Value,
}

/// How the receiver answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Status(u16),
    TooManyRequests {
        retry_after_seconds: u64,
    },
    /// Accept the connection, then never answer in time (sleeps 30 s, records nothing).
    Hang,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Received>,
    answer: Option<Answer>,
}

pub struct WebhookReceiver {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = Router::new().fallback(record).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        WebhookReceiver { url, shared, task }
    }

    /// Requests answered with 2xx so far (what a real receiver accepted).
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The `status` of every notification named `alertname`, in order.
    pub fn statuses(&self, alertname: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|request| request.json["alertname"] == alertname)
            .map(|request| request.json["status"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    pub fn answer(&self, answer: Answer) {
        self.shared.lock().unwrap().answer = Some(answer);
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Arc<Mutex<Shared>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = shared.lock().unwrap().answer.unwrap_or(Answer::Ok);
    if answer == Answer::Hang {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    let mut shared = shared.lock().unwrap();
    match answer {
        Answer::Hang => StatusCode::GATEWAY_TIMEOUT.into_response(),
        Answer::Ok => {
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            shared.requests.push(Received {
                path: uri.path().to_owned(),
                headers,
                body,
                json,
            });
            StatusCode::ACCEPTED.into_response()
        }
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::TooManyRequests {
            retry_after_seconds,
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", retry_after_seconds.to_string())],
        )
            .into_response(),
    }
}
