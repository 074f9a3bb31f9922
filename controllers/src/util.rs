//! Small shared helpers: label selectors, owner references, pod state, quantities, hashing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;

/// Whether `labels` satisfy `sel` (matchLabels and matchExpressions). An empty selector
/// matches everything.
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether a selector has no requirements at all.
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Whether a plain `key=value` map selector (Services, nodeSelector) matches `labels`.
pub fn map_matches(
    sel: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The controlling owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller owner reference pointing at `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

pub fn terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

pub fn pod_phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A pod that counts toward a controller's replicas: not finished and not being deleted.
pub fn pod_active(p: &Pod) -> bool {
    !terminating(&p.metadata) && !matches!(pod_phase(p), "Succeeded" | "Failed")
}

fn pod_condition<'a>(
    p: &'a Pod,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == kind))
}

pub fn pod_ready(p: &Pod) -> bool {
    pod_condition(p, "Ready").is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready` seconds at `now`.
pub fn pod_available(p: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    let Some(c) = pod_condition(p, "Ready") else {
        return false;
    };
    if c.status != "True" {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    c.last_transition_time
        .as_ref()
        .is_some_and(|t| now.as_second() - t.0.as_second() >= i64::from(min_ready))
}

/// Seconds until a ready pod becomes available, if it is ready but not yet available.
pub fn seconds_until_available(p: &Pod, min_ready: i32, now: jiff::Timestamp) -> Option<i64> {
    if min_ready <= 0 || !pod_ready(p) {
        return None;
    }
    let c = pod_condition(p, "Ready")?;
    let since = c.last_transition_time.as_ref()?.0.as_second();
    let left = i64::from(min_ready) - (now.as_second() - since);
    (left > 0).then_some(left)
}

pub fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

pub fn time(t: jiff::Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

/// FNV-1a 32-bit.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Kubernetes' "safe" encoding of a hash: digits and consonants only, so it never spells words.
pub fn safe_encode(mut n: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base = u32::try_from(ALPHABET.len()).unwrap_or(27);
    let mut out = Vec::new();
    loop {
        let idx = usize::try_from(n % base).unwrap_or(0);
        out.push(ALPHABET[idx]);
        n /= base;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A stable short hash of any serialisable value (pod templates, revisions).
pub fn hash_of<T: Serialize>(value: &T, collisions: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    if let Some(c) = collisions {
        bytes.extend_from_slice(c.to_string().as_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

/// A pod template without the labels a controller adds, for comparing templates.
pub fn template_without(t: &PodTemplateSpec, label: &str) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(meta) = t.metadata.as_mut()
        && let Some(l) = meta.labels.as_mut()
    {
        l.remove(label);
    }
    t
}

/// Parse a Kubernetes quantity into milli-units (cpu) or units (everything else).
pub fn parse_quantity(q: &str, milli: bool) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (mult_num, mult_den): (i128, i128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        s if s.starts_with('e') || s.starts_with('E') => {
            let exp: u32 = s[1..].parse().ok()?;
            (10i128.checked_pow(exp)?, 1)
        }
        _ => return None,
    };
    let scale: i128 = if milli { 1000 } else { 1 };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let negative = int_part.starts_with('-');
    let int_digits = int_part.trim_start_matches(['-', '+']);
    let int: i128 = if int_digits.is_empty() {
        0
    } else {
        int_digits.parse().ok()?
    };
    let frac_digits = &frac_part[..frac_part.len().min(9)];
    let frac: i128 = if frac_digits.is_empty() {
        0
    } else {
        frac_digits.parse().ok()?
    };
    let frac_den = 10i128.pow(u32::try_from(frac_digits.len()).ok()?);
    let total_num = (int * frac_den + frac) * mult_num * scale;
    let den = frac_den * mult_den;
    // Round up, as Kubernetes does for requests.
    let v = (total_num + den - 1) / den;
    Some(if negative { -v } else { v })
}

/// Exponential backoff for the `n`th consecutive failure: 5 ms doubling, capped.
pub fn backoff(n: u32, cap: std::time::Duration) -> std::time::Duration {
    let ms = 5u64.saturating_mul(1u64 << n.min(20));
    std::time::Duration::from_millis(ms).min(cap)
}

/// Whether toleration `t` tolerates `taint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref()
        && !e.is_empty()
        && e != taint.effect
    {
        return false;
    }
    let op = t.operator.as_deref().unwrap_or("Equal");
    match t.key.as_deref() {
        None | Some("") => op == "Exists",
        Some(k) if k != taint.key => false,
        Some(_) => match op {
            "Exists" => true,
            "Equal" | "" => {
                t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
            _ => false,
        },
    }
}

/// The first taint with one of `effects` that none of `tolerations` tolerates.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// Whether a node (its name and labels) satisfies one node selector term.
pub fn node_term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let req_ok = |r: &NodeSelectorRequirement, value: Option<&str>| {
        let values = r.values.as_deref().unwrap_or(&[]);
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
            "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" | "Lt" => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if r.operator == "Gt" {
                    v > bound
                } else {
                    v < bound
                }
            }
            _ => false,
        }
    };
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| req_ok(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && req_ok(r, Some(node_name)))
}

/// Whether a pod's nodeSelector and required node affinity admit the node.
pub fn node_admits(
    spec: &PodSpec,
    node_name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if let Some(sel) = &spec.node_selector
        && !map_matches(sel, labels)
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(r) => r
            .node_selector_terms
            .iter()
            .any(|t| node_term_matches(t, node_name, labels)),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(&sel, Some(&labels(&[("app", "web")]))));
        assert!(!selector_matches(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "db")]))
        ));
        assert!(!selector_matches(&sel, Some(&labels(&[("app", "api")]))));
        assert!(selector_matches(&LabelSelector::default(), None));
    }

    #[test]
    fn quantities_parse_to_milli_and_bytes() {
        assert_eq!(parse_quantity("100m", true), Some(100));
        assert_eq!(parse_quantity("2", true), Some(2000));
        assert_eq!(parse_quantity("0.5", true), Some(500));
        assert_eq!(parse_quantity("1Gi", false), Some(1 << 30));
        assert_eq!(parse_quantity("128Mi", false), Some(128 << 20));
        assert_eq!(parse_quantity("1e3", false), Some(1000));
        assert_eq!(parse_quantity("1.5k", false), Some(1500));
        assert_eq!(parse_quantity("abc", false), None);
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let a = hash_of(&serde_json::json!({"a": 1}), None);
        assert_eq!(a, hash_of(&serde_json::json!({"a": 1}), None));
        assert_ne!(a, hash_of(&serde_json::json!({"a": 1}), Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn tolerations_match_taints() {
        let taint = Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            ..Taint::default()
        };
        let exists = Toleration {
            key: Some("node.kubernetes.io/unreachable".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        let other = Toleration {
            key: Some("dedicated".into()),
            value: Some("x".into()),
            ..Toleration::default()
        };
        let everything = Toleration {
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        assert!(tolerates(&exists, &taint));
        assert!(!tolerates(&other, &taint));
        assert!(tolerates(&everything, &taint));
        let taints = [taint];
        assert!(untolerated(&taints, &[other], &["NoExecute"]).is_some());
        assert!(untolerated(&taints, &[], &["NoSchedule"]).is_none());
    }

    #[test]
    fn node_affinity_terms_check_labels_and_fields() {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "zone".into(),
                operator: "In".into(),
                values: Some(vec!["a".into()]),
            }]),
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["n1".into()]),
            }]),
        };
        let l = labels(&[("zone", "a")]);
        assert!(node_term_matches(&term, "n1", Some(&l)));
        assert!(!node_term_matches(&term, "n2", Some(&l)));
        assert!(!node_term_matches(
            &term,
            "n1",
            Some(&labels(&[("zone", "b")]))
        ));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let cap = std::time::Duration::from_secs(1);
        assert!(backoff(1, cap) < backoff(3, cap));
        assert_eq!(backoff(30, cap), cap);
    }
}
