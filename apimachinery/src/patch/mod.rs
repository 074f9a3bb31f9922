//! Patches and server-side apply: what `PATCH` does to an object.
//!
//! * [`json_patch`]: RFC 6902 (`application/json-patch+json`).
//! * [`merge_patch`]: RFC 7386 (`application/merge-patch+json`).
//! * [`strategic_merge_patch`]: Kubernetes' strategic merge patch
//!   (`application/strategic-merge-patch+json`), driven by a [`PatchMeta`].
//! * [`apply`]: server-side apply (`application/apply-patch+yaml`), with field ownership kept in
//!   `metadata.managedFields`; [`track_update`] records ownership after every other write.
//!
//! Objects are `serde_json::Value`s; nothing here does I/O.

mod fieldset;
mod managed;
mod meta;
mod strategic;
#[cfg(test)]
mod testdefs;
mod typed;

use serde_json::Value;

pub use managed::{ApplyError, Conflict, apply, decode_apply_patch, track_update};
pub use meta::{FieldMeta, ListStrategy, ListType, PatchMeta, SchemaPatchMeta, Untyped};

/// The four patch formats kubectl sends, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value; parameters (`;charset=utf-8`) are
    /// ignored.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let media = ct.split(';').next().unwrap_or_default().trim();
        let types = [
            ("application/json-patch+json", Self::Json),
            ("application/merge-patch+json", Self::Merge),
            (
                "application/strategic-merge-patch+json",
                Self::StrategicMerge,
            ),
            ("application/apply-patch+yaml", Self::Apply),
        ];
        types
            .iter()
            .find(|(name, _)| media.eq_ignore_ascii_case(name))
            .map(|(_, t)| *t)
    }

    /// The `Content-Type` this patch type is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::StrategicMerge => "application/strategic-merge-patch+json",
            Self::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body cannot be understood (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well-formed but cannot apply to this object, e.g. a failed `test`
    /// operation or a missing path (HTTP 422).
    #[error("{0}")]
    Invalid(String),
}

/// Apply an RFC 6902 JSON patch.
pub fn json_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_slice(patch)
        .map_err(|e| PatchError::Malformed(format!("invalid JSON patch: {e}")))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops.0).map_err(|e| PatchError::Invalid(e.to_string()))?;
    Ok(doc)
}

/// Apply an RFC 7386 JSON merge patch; the patch must be a JSON object.
pub fn merge_patch(original: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch = parse_object(patch)?;
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

/// Apply a Kubernetes strategic merge patch; `meta` describes `original`'s type.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &[u8],
    meta: &dyn PatchMeta,
) -> Result<Value, PatchError> {
    let patch = parse_object(patch)?;
    strategic::apply(original, patch, meta)
}

fn parse_object(body: &[u8]) -> Result<Value, PatchError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PatchError::Malformed(format!("invalid JSON in the patch: {e}")))?;
    if !value.is_object() {
        return Err(PatchError::Malformed(
            "the patch must be a JSON object".to_string(),
        ));
    }
    Ok(value)
}
