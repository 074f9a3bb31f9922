//! Field errors as the API server reports them: a cause type, a dotted field path and the
//! message body (`Invalid value: -1: must be greater than or equal to 0`), with bad values
//! printed the way Go's `field.Error` prints them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// Why a field was refused; each maps to a `metav1.CauseType` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseType {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl CauseType {
    /// The `reason` of a `StatusCause`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::Duplicate => "FieldValueDuplicate",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::NotFound => "FieldValueNotFound",
        }
    }

    /// The words that start the message body.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid => "Invalid value",
            Self::Duplicate => "Duplicate value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::NotFound => "Not found",
        }
    }
}

/// One refused field. `message` is the body without the field (what a `StatusCause` carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub kind: CauseType,
    pub field: String,
    pub message: String,
}

impl Cause {
    /// `field: message`, the form used in the overall Status message.
    pub fn display(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// A dotted field path under construction: `spec.containers[0].ports[1].name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(name: &str) -> Self {
        Self(name.to_string())
    }

    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A bad value, already rendered the way Go's `field.Error` renders it.
#[derive(Debug, Clone)]
pub struct Bad(String);

impl Bad {
    /// A Go value printed with `%#v` (maps, structs, slices), given as text.
    pub fn raw(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

impl From<&str> for Bad {
    fn from(s: &str) -> Self {
        Self(go_quote(s))
    }
}

impl From<&String> for Bad {
    fn from(s: &String) -> Self {
        Self(go_quote(s))
    }
}

impl From<i64> for Bad {
    fn from(n: i64) -> Self {
        Self(n.to_string())
    }
}

impl From<bool> for Bad {
    fn from(b: bool) -> Self {
        Self(b.to_string())
    }
}

fn cause(kind: CauseType, path: &Path, value: Option<Bad>, detail: &str) -> Cause {
    let mut message = kind.label().to_string();
    if let Some(v) = value {
        message.push_str(": ");
        message.push_str(&v.0);
    }
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
    Cause {
        kind,
        field: path.as_str().to_string(),
        message,
    }
}

pub fn required(path: &Path, detail: &str) -> Cause {
    cause(CauseType::Required, path, None, detail)
}

pub fn forbidden(path: &Path, detail: &str) -> Cause {
    cause(CauseType::Forbidden, path, None, detail)
}

pub fn invalid(path: &Path, value: impl Into<Bad>, detail: &str) -> Cause {
    cause(CauseType::Invalid, path, Some(value.into()), detail)
}

pub fn duplicate(path: &Path, value: impl Into<Bad>) -> Cause {
    cause(CauseType::Duplicate, path, Some(value.into()), "")
}

pub fn not_found(path: &Path, value: impl Into<Bad>) -> Cause {
    cause(CauseType::NotFound, path, Some(value.into()), "")
}

pub fn not_supported(path: &Path, value: impl Into<Bad>, valid: &[&str]) -> Cause {
    let detail = if valid.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    cause(CauseType::NotSupported, path, Some(value.into()), &detail)
}

pub fn too_long(path: &Path, max: usize) -> Cause {
    let unit = if max == 1 { "byte" } else { "bytes" };
    cause(
        CauseType::TooLong,
        path,
        None,
        &format!("may not be more than {max} {unit}"),
    )
}

pub fn too_many(path: &Path, actual: usize, max: usize) -> Cause {
    let unit = if max == 1 { "item" } else { "items" };
    cause(
        CauseType::TooMany,
        path,
        Some(Bad(actual.to_string())),
        &format!("must have at most {max} {unit}"),
    )
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `map[string]string{"a":"b", "c":"d"}` (Go `%#v`), `map[string]string(nil)` when absent.
pub fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// `[]string{"a", "b"}` (Go `%#v`), `[]string(nil)` when absent.
pub fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|s| go_quote(s.as_str().unwrap_or("")))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// `v1.LabelSelector{...}` as Go prints a dereferenced selector with `%#v`.
pub fn go_label_selector(v: Option<&Value>) -> String {
    let labels = go_string_map(v.and_then(|s| s.get("matchLabels")));
    let exprs = match v
        .and_then(|s| s.get("matchExpressions"))
        .and_then(Value::as_array)
    {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(e.get("key").and_then(Value::as_str).unwrap_or("")),
                        go_quote(e.get("operator").and_then(Value::as_str).unwrap_or("")),
                        go_string_slice(e.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// `intstr.IntOrString{Type:0, IntVal:1, StrVal:""}` (Go `%#v`).
pub fn go_int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => {
            format!(
                "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
                go_quote(s)
            )
        }
        Some(n) => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            n.as_i64().unwrap_or(0)
        ),
        None => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_follow_go_field_errors() {
        let p = Path::new("spec").child("replicas");
        assert_eq!(
            invalid(&p, -1, "must be greater than or equal to 0").display(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let c = required(&Path::new("spec").child("containers"), "");
        assert_eq!(c.message, "Required value");
        assert_eq!(c.kind.reason(), "FieldValueRequired");
        let c = not_supported(&Path::new("x"), "Foo", &["Always", "Never"]);
        assert_eq!(
            c.message,
            r#"Unsupported value: "Foo": supported values: "Always", "Never""#
        );
        assert_eq!(
            too_long(&Path::new("metadata").child("annotations"), 262_144).message,
            "Too long: may not be more than 262144 bytes"
        );
        assert_eq!(
            Path::new("a").index(2).key("cpu").child("b").as_str(),
            "a[2][cpu].b"
        );
    }

    #[test]
    fn go_value_rendering() {
        assert_eq!(go_quote("a\"b\n"), r#""a\"b\n""#);
        assert_eq!(
            go_string_map(Some(&json!({"z": "1", "a": "2"}))),
            r#"map[string]string{"a":"2", "z":"1"}"#
        );
        assert_eq!(go_string_map(None), "map[string]string(nil)");
        assert_eq!(
            go_label_selector(Some(&json!({"matchLabels": {"app": "x"}}))),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
        assert_eq!(
            go_int_or_string(Some(&json!("25%"))),
            r#"intstr.IntOrString{Type:1, IntVal:0, StrVal:"25%"}"#
        );
    }
}
