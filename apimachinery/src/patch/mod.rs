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
pub use meta::{
    CachedSchemaMeta, FieldMeta, ListStrategy, ListType, PatchMeta, SchemaPatchMeta, Untyped,
};

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patch_type_from_content_type() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(
            PatchType::from_content_type(PatchType::Apply.content_type()),
            Some(PatchType::Apply)
        );
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 1}});
        let ops = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/labels/y", "value": "2"},
            {"op": "remove", "path": "/metadata/labels/x"}
        ]);
        let out = json_patch(&doc, ops.to_string().as_bytes()).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"name": "a", "labels": {"y": "2"}}, "spec": {"replicas": 3}})
        );

        let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 2}]);
        assert!(matches!(
            json_patch(&doc, failing.to_string().as_bytes()),
            Err(PatchError::Invalid(_))
        ));
        let missing = json!([{"op": "remove", "path": "/spec/paused"}]);
        assert!(matches!(
            json_patch(&doc, missing.to_string().as_bytes()),
            Err(PatchError::Invalid(_))
        ));
        assert!(matches!(
            json_patch(&doc, b"{\"op\":\"add\"}"),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            json_patch(&doc, b"[{\"op\":\"frobnicate\",\"path\":\"/a\"}]"),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn merge_patch_nulls_delete() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": [1, 2]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"x": [3], "y": {"z": null, "w": 1}}});
        let out = merge_patch(&doc, patch.to_string().as_bytes()).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"x": [3], "y": {"w": 1}}})
        );
        assert!(matches!(
            merge_patch(&doc, b"[]"),
            Err(PatchError::Malformed(_))
        ));
        assert!(matches!(
            merge_patch(&doc, b"{,}"),
            Err(PatchError::Malformed(_))
        ));
    }
}
