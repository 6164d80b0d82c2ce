//! Cross-cutting HTTP behaviour: the body size limit, the request timeout, request ids, the
//! access log and the `Allow` header of 405 responses.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    error::problem_response,
    metrics::{ApiMetrics, HttpLabels, method_label, route_template},
};

use poem::{
    Endpoint, IntoResponse, Request, Response, Result,
    error::ReadBodyError,
    http::{HeaderValue, StatusCode, header},
};

/// The methods each path of the OpenAPI document accepts, for the `Allow` header that RFC 9110
/// requires on a 405 response. Built once from the document, so it cannot disagree with it.
#[derive(Debug, Clone)]
pub struct AllowedMethods(Arc<Vec<(Vec<Option<String>>, HeaderValue)>>);

impl AllowedMethods {
    /// From the JSON OpenAPI document; `{param}` segments match any one segment.
    pub fn from_openapi(document: &str) -> Self {
        const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];
        let document: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
        let mut table = Vec::new();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            let methods: Vec<String> = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_uppercase())
                .collect();
            let segments = path
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                .collect();
            if let Ok(value) = HeaderValue::from_str(&methods.join(", ")) {
                table.push((segments, value));
            }
        }
        Self(Arc::new(table))
    }

    /// The `Allow` value for a request path, when the document has the path.
    pub fn for_path(&self, path: &str) -> Option<&HeaderValue> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(segments, value)| {
            let matches = segments.len() == wanted.len()
                && segments
                    .iter()
                    .zip(&wanted)
                    .all(|(s, w)| s.as_deref().is_none_or(|s| s == *w));
            matches.then_some(value)
        })
    }
}

/// Answers a method the route does not accept with a 405 problem that lists, in `Allow`,
/// the methods it does accept.
pub async fn allow_header<E: Endpoint>(
    next: E,
    req: Request,
    allowed: AllowedMethods,
) -> Result<Response> {
    let path = req.uri().path().to_owned();
    match next.call(req).await {
        Err(error) if error.status() == StatusCode::METHOD_NOT_ALLOWED => {
            let mut response = problem_response(error);
            if let Some(methods) = allowed.for_path(&path) {
                response
                    .headers_mut()
                    .insert(header::ALLOW, methods.clone());
            }
            Ok(response)
        }
        other => other.map(IntoResponse::into_response),
    }
}

/// Refuses bodies over `max` bytes with 413, whether or not `Content-Length` is sent: a
/// declared length is checked up front, a chunked body is counted while it is read.
pub async fn limit_body<E: Endpoint>(next: E, mut req: Request, max: usize) -> Result<Response> {
    let too_large = || {
        poem::Error::from_string(
            format!("The request body is larger than {max} bytes."),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let body = req.take_body();
    match body.into_bytes_limit(max).await {
        Ok(bytes) => req.set_body(bytes),
        Err(ReadBodyError::PayloadTooLarge) => return Err(too_large()),
        Err(e) => {
            return Err(poem::Error::from_string(
                format!("Failed to read the request body: {e}"),
                StatusCode::BAD_REQUEST,
            ));
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// Answers 503 when a request (reading its body included) has not finished within `timeout`:
/// no request holds its connection, its database work or its client for longer. What the
/// handler had under way is dropped; work that must outlive the request (a shared load, the
/// cache invalidation after a commit) runs on tasks of its own.
pub async fn deadline<E: Endpoint>(next: E, req: Request, timeout: Duration) -> Result<Response> {
    match tokio::time::timeout(timeout, next.call(req)).await {
        Ok(response) => response.map(IntoResponse::into_response),
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "Request timed out."
            );
            let mut response = problem_response(poem::Error::from_string(
                format!(
                    "The request did not complete within {} s; retry later.",
                    timeout.as_secs_f64()
                ),
                StatusCode::SERVICE_UNAVAILABLE,
            ));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(response)
        }
    }
}

const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (the client's `X-Request-Id` when it is sane), echoes it in the
/// response, logs one line per request and records its latency.
pub async fn access_log<E: Endpoint>(
    next: E,
    req: Request,
    metrics: Arc<ApiMetrics>,
) -> Result<Response> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The method as a bounded label: a made-up one would otherwise name spans and metrics.
    let method = method_label(req.method());
    let path = req.uri().path().to_owned();
    let client = req.remote_addr().to_string();
    let route = route_template(&path);
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    platform::telemetry::set_parent(&span, traceparent);
    let recorder = span.clone();
    let mut response = match tracing::Instrument::instrument(next.call(req), span).await {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    recorder.record("http.response.status_code", status);
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    metrics
        .http
        .get_or_create(&HttpLabels {
            method,
            route: route.clone(),
            status,
        })
        .observe(elapsed);
    tracing::info!(
        request_id,
        method,
        route,
        path,
        status,
        latency_ms,
        client,
        "Request handled."
    );
    Ok(response)
}
