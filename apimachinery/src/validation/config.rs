//! ConfigMaps and Secrets: key format, total size, typed Secret requirements, immutability.

use serde_json::{Map, Value};

use super::field::{Cause, Path, forbidden, invalid, required, too_long};
use super::names::{self, IMMUTABLE};
use super::{obj, str_at};

/// Largest total size of a ConfigMap's or Secret's data.
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

fn empty() -> &'static Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    &EMPTY
}

fn validate_keys(map: &Map<String, Value>, path: &Path, errs: &mut Vec<Cause>) -> usize {
    let mut total = 0;
    for (k, v) in map {
        for msg in names::is_config_map_key(k) {
            errs.push(invalid(&path.key(k), k, &msg));
        }
        total += v.as_str().map_or(0, str::len);
    }
    total
}

pub fn validate_config_map(cm: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let data = obj(cm, "data").unwrap_or(empty());
    let binary = obj(cm, "binaryData").unwrap_or(empty());
    let dpath = Path::new("data");
    let bpath = Path::new("binaryData");
    let mut total = validate_keys(data, &dpath, &mut errs);
    for k in data.keys().filter(|k| binary.contains_key(*k)) {
        errs.push(invalid(
            &dpath.key(k),
            k,
            "duplicate of key present in binaryData",
        ));
    }
    // binaryData travels base64-encoded; its size counts decoded.
    total += validate_keys(binary, &bpath, &mut errs) / 4 * 3;
    for k in binary.keys().filter(|k| data.contains_key(*k)) {
        errs.push(invalid(
            &bpath.key(k),
            k,
            "duplicate of key present in data",
        ));
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long(&Path::new(""), MAX_DATA_SIZE));
    }
    errs
}

pub fn validate_secret(secret: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let data = obj(secret, "data").unwrap_or(empty());
    let dpath = Path::new("data");
    let total = validate_keys(data, &dpath, &mut errs) / 4 * 3;
    if total > MAX_DATA_SIZE {
        errs.push(too_long(&dpath, MAX_DATA_SIZE));
    }
    // stringData is merged into data by the server; check its keys too.
    if let Some(sd) = obj(secret, "stringData") {
        validate_keys(sd, &Path::new("stringData"), &mut errs);
    }
    let has = |k: &str| {
        data.contains_key(k) || obj(secret, "stringData").is_some_and(|m| m.contains_key(k))
    };
    let meta = secret.get("metadata").unwrap_or(&Value::Null);
    match str_at(secret, "type").unwrap_or("Opaque") {
        "kubernetes.io/service-account-token" => {
            let annotated = obj(meta, "annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty());
            if !annotated {
                errs.push(required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required(&dpath.key("username"), ""));
            errs.push(required(&dpath.key("password"), ""));
        }
        ty => {
            let needed: &[&str] = match ty {
                "kubernetes.io/dockercfg" => &[".dockercfg"],
                "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
                "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
                "kubernetes.io/tls" => &["tls.crt", "tls.key"],
                _ => &[],
            };
            for k in needed.iter().filter(|k| !has(k)) {
                errs.push(required(&dpath.key(k), ""));
            }
        }
    }
    errs
}

fn immutable_data(old: &Value, new: &Value, keys: &[&str]) -> Vec<Cause> {
    let mut errs = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return errs;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(forbidden(
            &Path::new("immutable"),
            "field is immutable when `immutable` is set",
        ));
    }
    for k in keys {
        if old.get(*k) != new.get(*k) {
            errs.push(forbidden(
                &Path::new(k),
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

pub fn validate_config_map_update(old: &Value, new: &Value) -> Vec<Cause> {
    immutable_data(old, new, &["data", "binaryData"])
}

pub fn validate_secret_update(old: &Value, new: &Value) -> Vec<Cause> {
    let mut errs = Vec::new();
    let ot = str_at(old, "type").unwrap_or("Opaque");
    let nt = str_at(new, "type").unwrap_or("Opaque");
    if ot != nt {
        errs.push(invalid(&Path::new("type"), nt, IMMUTABLE));
    }
    errs.extend(immutable_data(old, new, &["data"]));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(errs: &[Cause]) -> Vec<String> {
        errs.iter().map(Cause::display).collect()
    }

    #[test]
    fn config_map_keys_and_size() {
        assert!(validate_config_map(&json!({"data": {"a.conf": "x", "B_2": "y"}})).is_empty());
        let m = msgs(&validate_config_map(&json!({"data": {"bad/key": "x"}})));
        assert_eq!(
            m,
            vec![
                "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        let big = "x".repeat(MAX_DATA_SIZE + 1);
        let m = msgs(&validate_config_map(&json!({"data": {"k": big}})));
        assert_eq!(m, vec![": Too long: may not be more than 1048576 bytes"]);
        let m = msgs(&validate_config_map(
            &json!({"data": {"k": "a"}, "binaryData": {"k": "YQ=="}}),
        ));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn secret_types() {
        assert!(validate_secret(&json!({"type": "Opaque", "data": {"k": "dg=="}})).is_empty());
        let m = msgs(&validate_secret(
            &json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
        ));
        assert_eq!(m, vec!["data[tls.key]: Required value"]);
        let m = msgs(&validate_secret(&json!({"data": {"..x": "eA=="}})));
        assert_eq!(
            m,
            vec!["data[..x]: Invalid value: \"..x\": must not start with '..'"]
        );
    }

    #[test]
    fn immutable_objects() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(
            msgs(&validate_config_map_update(&old, &new)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        assert!(validate_config_map_update(&old, &old).is_empty());
        let s_old = json!({"type": "Opaque"});
        let s_new = json!({"type": "kubernetes.io/tls"});
        assert_eq!(
            msgs(&validate_secret_update(&s_old, &s_new)),
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
    }
}
