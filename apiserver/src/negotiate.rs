//! Content negotiation: reading request bodies and choosing the response representation.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::status::ApiError;

/// The largest request body accepted, as kube-apiserver's default (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How the client wants objects represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `meta.k8s.io/v1` Table (what `kubectl get` asks for).
    Table,
    /// `meta.k8s.io/v1` PartialObjectMetadata(List).
    Metadata,
}

/// Pick the representation from `Accept`. Unknown media types are refused with 406 only when
/// nothing acceptable is offered.
pub fn output(headers: &HeaderMap) -> Result<Output, ApiError> {
    let Some(accept) = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Output::Json);
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        match media {
            "application/json" | "*/*" | "application/*" => match param("as") {
                Some("Table") if param("g") == Some("meta.k8s.io") => return Ok(Output::Table),
                Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                    if param("g") == Some("meta.k8s.io") =>
                {
                    return Ok(Output::Metadata);
                }
                Some(_) => continue,
                None => return Ok(Output::Json),
            },
            "application/yaml" => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(accept))
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Past the limit, up to this much more is read and dropped so that the client, still
/// sending, gets the 413 answer instead of a reset connection.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// Read a body up to [`MAX_BODY_BYTES`].
pub async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("failed to read the request body: {}", e.into()))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&data);
        } else if total > MAX_BODY_BYTES + DRAIN_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

/// Parse an object body (JSON, or YAML when the content type says so).
pub fn parse_object(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let value: Value = match content_type {
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        skiff_apimachinery::protobuf::MEDIA_TYPE => skiff_apimachinery::protobuf::decode(body)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the request body is not a valid Kubernetes protobuf object: {e}"
                ))
            })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Output, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        output(&h)
    }

    #[test]
    fn picks_tables_for_kubectl_get() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(accept(kubectl).unwrap(), Output::Table);
        assert_eq!(accept("application/json").unwrap(), Output::Json);
        assert_eq!(accept("application/yaml").unwrap(), Output::Yaml);
        assert_eq!(accept("*/*").unwrap(), Output::Json);
        assert_eq!(
            accept("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io").unwrap(),
            Output::Metadata
        );
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf")
                .unwrap_err()
                .code,
            406
        );
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf,application/json").unwrap(),
            Output::Json
        );
    }

    #[test]
    fn parses_bodies() {
        assert!(parse_object("application/json", b"{\"a\":1}").is_ok());
        assert!(parse_object("application/yaml", b"a: 1\n").is_ok());
        assert_eq!(
            parse_object("application/json", b"{").unwrap_err().code,
            400
        );
        assert_eq!(
            parse_object("application/json", b"[1]").unwrap_err().code,
            400
        );
        assert_eq!(
            parse_object("application/json", b"  ").unwrap_err().code,
            400
        );
        assert_eq!(parse_object("text/plain", b"{}").unwrap_err().code, 415);
    }
}
