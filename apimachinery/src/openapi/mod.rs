//! The OpenAPI documents of the API: Swagger 2.0 at `/openapi/v2`, and OpenAPI 3.0 at
//! `/openapi/v3` (an index) and `/openapi/v3/<path>` (one document per group version).
//!
//! kubectl reads them for `kubectl explain` (v3), for the merge keys of `kubectl apply`'s
//! strategic merge patch (v3, falling back to v2), and to learn whether the server validates
//! fields itself (the `fieldValidation` parameter on a kind's PATCH operations in v3).
//! Every document is built once, from [`crate::registry`] and [`crate::schema`], and
//! served from cached bytes.

mod params;
mod routes;
mod v2;
mod v3;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use serde_json::{Value, json};

use crate::registry::Registry;

const INFO_TITLE: &str = "Kubernetes";
/// The Kubernetes version whose API this one mirrors.
const INFO_VERSION: &str = "v1.32.0";

fn security_scheme() -> Value {
    json!({
        "description": "Bearer Token authentication",
        "in": "header",
        "name": "authorization",
        "type": "apiKey",
    })
}

/// Every route of every served group version, discovery roots first.
fn all_routes() -> Vec<routes::Route> {
    let registry = Registry::builtin();
    let mut all = routes::core_versions();
    all.extend(routes::groups());
    for (group, versions) in registry.groups() {
        if !group.is_empty() {
            all.extend(routes::group(group));
        }
        for version in versions {
            all.extend(routes::group_version(
                group,
                version,
                registry.in_group_version(group, version),
            ));
        }
    }
    all
}

/// GET /openapi/v2: the Swagger 2.0 document as JSON.
pub fn v2_json() -> &'static [u8] {
    static DOC: LazyLock<Vec<u8>> =
        LazyLock::new(|| serde_json::to_vec(&v2::document(&all_routes())).unwrap_or_default());
    &DOC
}

struct V3 {
    index: Vec<u8>,
    /// Path (`apis/apps/v1`) → (document bytes, hash).
    docs: BTreeMap<String, (Vec<u8>, String)>,
}

/// The hash the index cites for a document: uppercase hex SHA-512 of its bytes.
fn hash(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA512, bytes)
        .as_ref()
        .iter()
        .fold(String::with_capacity(128), |mut out, b| {
            let _ = write!(out, "{b:02X}");
            out
        })
}

fn build_v3() -> V3 {
    let registry = Registry::builtin();
    let mut docs = BTreeMap::new();
    let mut add = |path: String, routes: Vec<routes::Route>| {
        let bytes = v3::document(&routes);
        let h = hash(&bytes);
        docs.insert(path, (bytes, h));
    };
    add("api".into(), routes::core_versions());
    add("apis".into(), routes::groups());
    for (group, versions) in registry.groups() {
        if !group.is_empty() {
            add(format!("apis/{group}"), routes::group(group));
        }
        for version in versions {
            let path = routes::gv_prefix(group, version)
                .trim_start_matches('/')
                .to_string();
            add(
                path,
                routes::group_version(group, version, registry.in_group_version(group, version)),
            );
        }
    }
    let paths: serde_json::Map<String, Value> = docs
        .iter()
        .map(|(path, (_, h))| {
            (
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={h}")}),
            )
        })
        .collect();
    let index = serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default();
    V3 { index, docs }
}

static V3_DOCS: LazyLock<V3> = LazyLock::new(build_v3);

/// GET /openapi/v3: `{"paths": {"apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=<HEX>"}, ...}}`.
pub fn v3_index() -> &'static [u8] {
    &V3_DOCS.index
}

/// `GET /openapi/v3/<path>` (`api/v1`, `apis/apps/v1`, `apis/apps`, `api`, `apis`): the
/// OpenAPI 3.0 document and the hash the index cites for it; `None` for unknown paths.
/// A leading `/` is ignored.
pub fn v3_doc(path: &str) -> Option<(&'static [u8], &'static str)> {
    let path = path.trim_start_matches('/');
    V3_DOCS
        .docs
        .get(path)
        .map(|(bytes, h)| (bytes.as_slice(), h.as_str()))
}

#[cfg(test)]
mod tests;
