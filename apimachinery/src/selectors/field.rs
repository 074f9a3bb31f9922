//! Field selectors: `?fieldSelector=` terms (`=`, `==`, `!=`, comma for AND), the fields each
//! resource lets clients select on, and reading those fields from JSON objects.

use serde_json::Value;

use super::SelectorError;
use crate::registry::Resource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: String,
    op: Op,
    value: String,
}

/// A conjunction of `field=value` / `field!=value` terms. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

/// Split on commas not escaped by a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// The first operator, looking left to right and preferring `!=`, then `==`, then `=`.
fn split_term(term: &str) -> Option<(&str, Op, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (text, op) in [("!=", Op::NotEquals), ("==", Op::Equals), ("=", Op::Equals)] {
            if let Some(value) = rest.strip_prefix(text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// Undo `\\`, `\,` and `\=`; a bare `,` or `=` in a value is an error.
fn unescape(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => return Err(SelectorError::InvalidEscape(format!("\\{other}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(u32::from(c))),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscape("\\".into()));
    }
    Ok(out)
}

/// The fields of a resource with its own field label conversion (`None`: only `metadata.name`
/// and `metadata.namespace`, with the default conversion's error wording).
fn resource_fields(res: &Resource) -> Option<&'static [&'static str]> {
    const META: [&str; 2] = ["metadata.name", "metadata.namespace"];
    Some(match (res.group, res.kind) {
        ("", "Pod") => &[
            META[0],
            META[1],
            "spec.nodeName",
            "spec.host",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            META[0],
            META[1],
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            META[0],
            META[1],
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Secret") => &[META[0], META[1], "type"],
        ("", "Service") => &[META[0], META[1], "spec.clusterIP", "spec.type"],
        // Cluster-scoped kinds whose conversions do not accept metadata.namespace.
        ("", "Node") => &[META[0], "spec.unschedulable"],
        ("", "Namespace") => &[META[0], "status.phase"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            &[META[0], META[1], "status.replicas"]
        }
        ("batch", "Job") => &[META[0], META[1], "status.successful"],
        _ => return None,
    })
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

fn bool_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// The value a field selector compares: missing fields read as `""`.
fn field_value(res: &Resource, obj: &Value, field: &str) -> String {
    match field {
        "metadata.name" => return str_at(obj, "/metadata/name").into(),
        "metadata.namespace" => return str_at(obj, "/metadata/namespace").into(),
        _ => {}
    }
    match (res.group, res.kind, field) {
        ("", "Pod", "spec.host") => str_at(obj, "/spec/nodeName").into(),
        ("", "Pod", "spec.hostNetwork") => bool_at(obj, "/spec/hostNetwork"),
        ("", "Pod", "status.podIP") => match obj.pointer("/status/podIPs/0/ip") {
            Some(Value::String(ip)) => ip.clone(),
            _ => str_at(obj, "/status/podIP").into(),
        },
        ("", "Event", "source") => match str_at(obj, "/source/component") {
            "" => str_at(obj, "/reportingComponent").into(),
            component => component.into(),
        },
        ("events.k8s.io", "Event", f) if f.starts_with("regarding.") => {
            str_at(obj, &format!("/regarding/{}", &f["regarding.".len()..])).into()
        }
        ("", "Node", "spec.unschedulable") => bool_at(obj, "/spec/unschedulable"),
        ("", "ReplicationController", "status.replicas")
        | ("apps", "ReplicaSet", "status.replicas") => int_at(obj, "/status/replicas"),
        ("batch", "Job", "status.successful") => int_at(obj, "/status/succeeded"),
        (_, _, f) => str_at(obj, &format!("/{}", f.replace('.', "/"))).into(),
    }
}

impl FieldSelector {
    /// Parse `a=b,c!=d` (values may escape `\,`, `\=` and `\\`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((field, op, value)) = split_term(part) else {
                return Err(SelectorError::FieldTerm {
                    selector: s.into(),
                    term: part.into(),
                });
            };
            terms.push(Term {
                field: field.into(),
                op,
                value: unescape(value)?,
            });
        }
        Ok(Self { terms })
    }

    /// Refuse fields the resource does not support selecting on.
    pub fn validate_for(&self, res: &Resource) -> Result<(), SelectorError> {
        let extra = resource_fields(res);
        for term in &self.terms {
            let f = term.field.as_str();
            match extra {
                Some(fields) if fields.contains(&f) => {}
                Some(_) => return Err(SelectorError::FieldNotSupported(term.field.clone())),
                None if f == "metadata.name" || f == "metadata.namespace" => {}
                None => return Err(SelectorError::FieldNotKnown(term.field.clone())),
            }
        }
        Ok(())
    }

    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let got = field_value(res, obj, &t.field);
            (got == t.value) == (t.op == Op::Equals)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;
    use serde_json::json;

    fn res(group: &str, plural: &str) -> &'static Resource {
        let version = "v1";
        Registry::builtin().get(group, version, plural).unwrap()
    }

    fn fs(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_operators_and_escapes() {
        let pods = res("", "pods");
        let pod = json!({"metadata": {"name": "a,b=c", "namespace": "ns"}, "status": {"phase": "Running"}});
        assert!(fs("metadata.name=a\\,b\\=c").matches(pods, &pod));
        assert!(fs("status.phase==Running").matches(pods, &pod));
        assert!(fs("status.phase!=Pending").matches(pods, &pod));
        assert!(!fs("status.phase!=Running").matches(pods, &pod));
        assert!(fs("status.phase=Running,metadata.namespace=ns").matches(pods, &pod));
        assert!(!fs("status.phase=Running,metadata.namespace=other").matches(pods, &pod));
        assert!(fs("").is_empty());
        assert!(fs("").matches(pods, &pod));
        assert!(!fs("a=b,").is_empty());
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            FieldSelector::parse("status.phase")
                .unwrap_err()
                .to_string(),
            "invalid selector: 'status.phase'; can't understand 'status.phase'"
        );
        assert_eq!(
            FieldSelector::parse("a=b\\x").unwrap_err().to_string(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        assert_eq!(
            FieldSelector::parse("a=b\\").unwrap_err().to_string(),
            "invalid field selector: invalid escape sequence: \\"
        );
        assert_eq!(
            FieldSelector::parse("a==b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
    }

    #[test]
    fn missing_fields_compare_as_empty() {
        let pods = res("", "pods");
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        let bound = json!({"metadata": {"name": "q"}, "spec": {"nodeName": "n1"}});
        assert!(fs("spec.nodeName=").matches(pods, &unbound));
        assert!(!fs("spec.nodeName=").matches(pods, &bound));
        assert!(fs("spec.nodeName!=").matches(pods, &bound));
        assert!(fs("spec.host=n1").matches(pods, &bound));
        assert!(fs("spec.hostNetwork=false").matches(pods, &bound));
    }

    #[test]
    fn typed_fields_render_as_text() {
        let nodes = res("", "nodes");
        let cordoned = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert!(fs("spec.unschedulable=true").matches(nodes, &cordoned));
        assert!(!fs("spec.unschedulable=true").matches(nodes, &json!({"spec": {}})));
        let jobs = res("batch", "jobs");
        assert!(fs("status.successful=2").matches(jobs, &json!({"status": {"succeeded": 2}})));
        let rs = res("apps", "replicasets");
        assert!(fs("status.replicas=0").matches(rs, &json!({"status": {}})));
        let pods = res("", "pods");
        let pod = json!({"status": {"podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}]}});
        assert!(fs("status.podIP=10.0.0.1").matches(pods, &pod));
    }

    #[test]
    fn event_fields() {
        let core = res("", "events");
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started",
                        "reportingComponent": "kubelet", "type": "Normal"});
        assert!(fs("involvedObject.kind=Pod,involvedObject.name=web").matches(core, &ev));
        assert!(fs("source=kubelet").matches(core, &ev));
        assert!(fs("type=Normal,reason=Started").matches(core, &ev));
        let new = res("events.k8s.io", "events");
        let ev2 = json!({"regarding": {"kind": "Node", "name": "n1"}, "type": "Warning"});
        assert!(fs("regarding.kind=Node,regarding.name=n1,type=Warning").matches(new, &ev2));
        assert!(fs("regarding.kind=Node").validate_for(new).is_ok());
        assert!(fs("involvedObject.kind=Node").validate_for(new).is_err());
    }

    #[test]
    fn validation_per_resource() {
        let pods = res("", "pods");
        assert!(
            fs("spec.nodeName=n,metadata.name=x")
                .validate_for(pods)
                .is_ok()
        );
        assert_eq!(
            fs("foo=bar").validate_for(pods).unwrap_err().to_string(),
            "field label not supported: foo"
        );
        assert!(fs("type=Opaque").validate_for(res("", "secrets")).is_ok());
        assert!(
            fs("status.phase=Active")
                .validate_for(res("", "namespaces"))
                .is_ok()
        );
        assert!(
            fs("status.successful=1")
                .validate_for(res("batch", "jobs"))
                .is_ok()
        );
        let cms = res("", "configmaps");
        assert!(fs("metadata.namespace=default").validate_for(cms).is_ok());
        assert_eq!(
            fs("data.x=1").validate_for(cms).unwrap_err().to_string(),
            "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
    }
}
