//! Building HTTP responses: objects in the negotiated representation, and errors as `Status`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::Value;

use crate::negotiate::Output;
use crate::status::ApiError;

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn bytes(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp
}

/// An object (or list, or Status) as JSON or YAML.
pub fn object(code: u16, output: Output, value: &Value) -> Response<Body> {
    match output {
        Output::Yaml => match serde_yaml::to_string(value) {
            Ok(y) => bytes(code, "application/yaml", y),
            Err(e) => error(&ApiError::internal(format!("failed to encode YAML: {e}"))),
        },
        _ => json(code, value),
    }
}

pub fn json(code: u16, value: &Value) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(b) => bytes(code, "application/json", b),
        Err(e) => bytes(500, "text/plain", format!("failed to encode JSON: {e}")),
    }
}

pub fn error(err: &ApiError) -> Response<Body> {
    let mut resp = json(err.code, &err.to_status());
    if let Some(secs) = err.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Add `Warning: 299 - "..."` headers (what kubectl prints as `Warning: ...`).
pub fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}
