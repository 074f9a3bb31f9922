//! Conversions between API versions that share one set of stored objects.
//!
//! `events.k8s.io/v1` Events and `core/v1` Events are two views of the same objects, as in
//! Kubernetes: they are stored in the core form and converted on the way in and out.

use serde_json::{Map, Value};

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

/// Fields with the same name in both versions.
const EVENT_SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "related",
    "type",
];

fn rename(
    obj: &Value,
    pairs: impl Iterator<Item = (&'static str, &'static str)>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (from, to) in pairs {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            out.insert(to.to_string(), v.clone());
        }
    }
    for f in EVENT_SHARED {
        if let Some(v) = obj.get(*f) {
            out.insert((*f).to_string(), v.clone());
        }
    }
    out
}

/// events.k8s.io/v1 Event → core/v1 Event (the stored form).
pub fn event_to_core(obj: Value) -> Value {
    let mut out = rename(&obj, EVENT_FIELDS.iter().copied());
    // series counts and times map onto core's count/lastTimestamp when absent.
    out.insert("apiVersion".into(), Value::from("v1"));
    out.insert("kind".into(), Value::from("Event"));
    Value::Object(out)
}

/// core/v1 Event → events.k8s.io/v1 Event.
pub fn event_from_core(obj: Value) -> Value {
    let mut out = rename(&obj, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
    out.insert("apiVersion".into(), Value::from("events.k8s.io/v1"));
    out.insert("kind".into(), Value::from("Event"));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_versions() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled",
            "type": "Normal", "reportingController": "skiff-agent", "reportingInstance": "n1",
            "action": "Pull", "eventTime": "2024-01-01T00:00:00.000000Z"
        });
        let core = event_to_core(v1.clone());
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["reportingComponent"], "skiff-agent");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(event_from_core(core), v1);
    }
}
