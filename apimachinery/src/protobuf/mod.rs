//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded into
//! the JSON object the same request would have carried as JSON.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope: `typeMeta`
//! (apiVersion, kind), `raw` (the object encoded as its own message), `contentEncoding`
//! and `contentType`. The object's message is walked along a generated table of every
//! message reachable from the decoded kinds (`schema.json`), and its
//! JSON is shaped the way the Go types marshal:
//!
//! * field names are the JSON names; `json:",inline"` members are merged into the parent;
//! * non-pointer `omitempty` scalars with a zero value are dropped (Go writes them always);
//! * `Quantity` → string, `IntOrString` → number or string, `Time` → RFC 3339 seconds (zero
//!   → `null`), `MicroTime` → microseconds, `Duration` → Go duration string,
//!   `RawExtension`/`FieldsV1` → the embedded JSON, `bytes` → base64;
//! * unknown field numbers are skipped, as the Go decoder does.
//!
//! Regenerating the table: run `apimachinery/tools/gen-protobuf-schema.py` (its header says
//! how) against `k8s.io/api` and `k8s.io/apimachinery` checkouts of the served release and
//! commit the new `schema.json`.

mod decode;
mod schema;
mod values;
mod wire;

use serde_json::{Map, Value};

pub use wire::WireError;

use decode::Walker;
use schema::Schema;
use wire::{Reader, WireType};

/// The protobuf media type kubectl sends from its typed commands.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf body starts with these bytes.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s magic prefix")]
    MissingMagic,
    #[error("protobuf envelope is invalid at {path}")]
    Envelope {
        path: &'static str,
        #[source]
        source: WireError,
    },
    #[error("unsupported protobuf content encoding {0:?}")]
    ContentEncoding(String),
    #[error("protobuf body does not name its kind")]
    MissingKind,
    #[error("no protobuf decoding for kind {kind:?} in {api_version:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("invalid protobuf at {path}")]
    Wire {
        path: String,
        #[source]
        source: WireError,
    },
    #[error("invalid value at {path}: {reason}")]
    Value { path: String, reason: String },
    #[error("protobuf nested deeper than {limit} messages at {path}")]
    TooDeep { path: String, limit: usize },
}

/// Decode an enveloped Kubernetes protobuf body into a JSON object with apiVersion/kind set.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown = Unknown::parse(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(unknown.content_encoding));
    }
    if unknown.kind.is_empty() {
        return Err(ProtobufError::MissingKind);
    }
    let schema = Schema::get();
    let message = schema
        .kind(&unknown.api_version, &unknown.kind)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        })?;
    let mut object = Map::new();
    Walker::new(schema).message(unknown.raw, message, &mut object, 0)?;
    object.insert("apiVersion".into(), Value::String(unknown.api_version));
    object.insert("kind".into(), Value::String(unknown.kind));
    Ok(Value::Object(object))
}

/// Whether `(apiVersion, kind)` has a protobuf decoding.
pub fn decodes(api_version: &str, kind: &str) -> bool {
    Schema::get().kind(api_version, kind).is_some()
}

/// Every `(apiVersion, kind)` with a protobuf decoding; apiVersion `*` means any.
pub fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    Schema::get().kinds()
}

/// The `runtime.Unknown` envelope.
#[derive(Debug, Default)]
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Unknown<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let at = |path: &'static str| move |source| ProtobufError::Envelope { path, source };
        let mut out = Unknown::default();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (number, wire) = r.key().map_err(at("(root)"))?;
            match number {
                1 => {
                    let type_meta = len(&mut r, wire).map_err(at("typeMeta"))?;
                    let mut t = Reader::new(type_meta);
                    while !t.is_empty() {
                        let (number, wire) = t.key().map_err(at("typeMeta"))?;
                        match number {
                            1 => {
                                out.api_version = string(&mut t, wire).map_err(at("apiVersion"))?
                            }
                            2 => out.kind = string(&mut t, wire).map_err(at("kind"))?,
                            _ => t.skip(wire).map_err(at("typeMeta"))?,
                        }
                    }
                }
                2 => out.raw = len(&mut r, wire).map_err(at("raw"))?,
                3 => out.content_encoding = string(&mut r, wire).map_err(at("contentEncoding"))?,
                _ => r.skip(wire).map_err(at("(root)"))?,
            }
        }
        Ok(out)
    }
}

fn len<'a>(r: &mut Reader<'a>, wire: WireType) -> Result<&'a [u8], WireError> {
    wire::expect(wire, WireType::Len)?;
    r.bytes()
}

fn string(r: &mut Reader<'_>, wire: WireType) -> Result<String, WireError> {
    Ok(String::from_utf8_lossy(len(r, wire)?).into_owned())
}

#[cfg(test)]
mod tests;
