//! Who may do what: mutating endpoints need `http.admin_token` as a bearer token (and answer 403
//! while none is configured); read endpoints need `http.read_token` (or the admin token) when
//! one is set. `/healthz` and `/readyz` stay open for probes. Every request is bounded in time.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest, Sha256};

use super::HttpState;
use crate::config::Secret;

/// Largest request body accepted (a silence is a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Longest a request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub admin_token: Option<Secret>,
    pub read_token: Option<Secret>,
}

/// Compares through SHA-256 digests, so the time taken tells nothing of the token, not even its
/// length.
fn same_token(given: &str, expected: &Secret) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.expose().as_bytes());
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |differ, (a, b)| differ | (a ^ b))
        == 0
}

fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let mut response = (status, Json(serde_json::json!({"error": message}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"freshwatch\""),
        );
    }
    response
}

/// What `request` may do, or the answer refusing it.
fn check(access: &Access, request: &Request) -> Result<(), (StatusCode, &'static str)> {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return Ok(());
    }
    let given = bearer(request);
    let is = |token: &Option<Secret>| {
        token
            .as_ref()
            .zip(given)
            .is_some_and(|(token, given)| same_token(given, token))
    };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return match &access.read_token {
            Some(_) if !is(&access.read_token) && !is(&access.admin_token) => Err((
                StatusCode::UNAUTHORIZED,
                "this endpoint needs Authorization: Bearer <http.read_token>",
            )),
            _ => Ok(()),
        };
    }
    match &access.admin_token {
        None => Err((
            StatusCode::FORBIDDEN,
            "mutating endpoints are disabled: set http.admin_token (e.g. admin_token = \"${FRESHWATCH_ADMIN_TOKEN}\") to enable them",
        )),
        Some(_) if !is(&access.admin_token) => Err((
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer <http.admin_token>",
        )),
        Some(_) => Ok(()),
    }
}

/// The middleware in front of every route.
pub async fn guard(State(state): State<HttpState>, request: Request<Body>, next: Next) -> Response {
    if let Err((status, message)) = check(&state.access, &request) {
        return refuse(status, message);
    }
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, token: Option<&str>) -> Request {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(Body::empty()).unwrap()
    }

    fn status(access: &Access, request: Request) -> StatusCode {
        match check(access, &request) {
            Ok(()) => StatusCode::OK,
            Err((status, _)) => status,
        }
    }

    #[test]
    fn without_tokens_reads_are_open_and_changes_are_forbidden() {
        let open = Access::default();
        assert_eq!(
            status(&open, request(Method::GET, "/api/v1/feeds", None)),
            StatusCode::OK
        );
        assert_eq!(
            status(
                &open,
                request(Method::POST, "/api/v1/silences", Some("anything"))
            ),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn tokens_are_checked_and_probes_stay_open() {
        let access = Access {
            admin_token: Some(Secret::new("admin-0123456789abcdef")),
            read_token: Some(Secret::new("read-0123456789abcdef")),
        };
        let post = |token| status(&access, request(Method::POST, "/-/reload", token));
        assert_eq!(post(None), StatusCode::UNAUTHORIZED);
        assert_eq!(
            post(Some("read-0123456789abcdef")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            post(Some("admin-0123456789abcdeF")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(post(Some("admin-0123456789abcdef")), StatusCode::OK);
        let get = |path, token| status(&access, request(Method::GET, path, token));
        assert_eq!(get("/metrics", None), StatusCode::UNAUTHORIZED);
        assert_eq!(
            get("/metrics", Some("read-0123456789abcdef")),
            StatusCode::OK
        );
        assert_eq!(get("/", Some("admin-0123456789abcdef")), StatusCode::OK);
        assert_eq!(get("/healthz", None), StatusCode::OK);
        assert_eq!(get("/readyz", None), StatusCode::OK);
    }
}
