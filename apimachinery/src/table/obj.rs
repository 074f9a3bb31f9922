//! Reading JSON objects the way the printers need: absent fields read as zero values, as they do
//! on Go structs, and times parse from RFC 3339.

use jiff::Timestamp;
use serde_json::Value;

/// A borrowed JSON object with forgiving accessors. Paths are lists of keys.
#[derive(Clone, Copy)]
pub(super) struct Obj<'a>(pub &'a Value);

impl<'a> Obj<'a> {
    pub fn at(self, path: &[&str]) -> Option<&'a Value> {
        let mut v = self.0;
        for key in path {
            v = v.get(key)?;
        }
        (!v.is_null()).then_some(v)
    }

    pub fn obj(self, path: &[&str]) -> Option<Obj<'a>> {
        self.at(path).map(Obj)
    }

    pub fn has(self, path: &[&str]) -> bool {
        self.at(path).is_some()
    }

    pub fn str(self, path: &[&str]) -> &'a str {
        self.at(path).and_then(Value::as_str).unwrap_or("")
    }

    pub fn opt_str(self, path: &[&str]) -> Option<&'a str> {
        self.at(path).and_then(Value::as_str)
    }

    pub fn int(self, path: &[&str]) -> i64 {
        self.at(path).and_then(Value::as_i64).unwrap_or(0)
    }

    pub fn bool(self, path: &[&str]) -> bool {
        self.at(path).and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn list(self, path: &[&str]) -> &'a [Value] {
        self.at(path)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    pub fn items(self, path: &[&str]) -> impl Iterator<Item = Obj<'a>> + 'a {
        self.list(path).iter().map(Obj)
    }

    /// Number of entries of a map or list (0 when absent).
    pub fn len(self, path: &[&str]) -> usize {
        match self.at(path) {
            Some(Value::Object(m)) => m.len(),
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        }
    }

    pub fn strings(self, path: &[&str]) -> Vec<&'a str> {
        self.list(path).iter().filter_map(Value::as_str).collect()
    }

    /// A time field; absent, empty or unparsable is the zero time (`None`).
    pub fn time(self, path: &[&str]) -> Option<Timestamp> {
        self.opt_str(path)?.parse().ok()
    }

    pub fn name(self) -> &'a str {
        self.str(&["metadata", "name"])
    }

    pub fn deleting(self) -> bool {
        self.has(&["metadata", "deletionTimestamp"])
    }

    /// The status of the first condition of a type (`""` when there is none).
    pub fn condition(self, kind: &str) -> &'a str {
        self.items(&["status", "conditions"])
            .find(|c| c.str(&["type"]) == kind)
            .map_or("", |c| c.str(&["status"]))
    }
}

/// `duration.HumanDuration` on whole seconds, negatives included (clock skew shows as `0s` up to
/// one second, then `<invalid>`).
pub(super) fn human_seconds(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Human duration between two instants (`to - from`).
pub(super) fn human_between(from: Timestamp, to: Timestamp) -> String {
    human_seconds(to.duration_since(from).as_secs())
}

/// `translateTimestampSince`: how long ago, or `<unknown>` for the zero time.
pub(super) fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(|| "<unknown>".into(), |t| human_between(t, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_default_like_go_zero_values() {
        let v = json!({"a": {"b": "x", "n": 3, "t": true, "l": [1, 2], "z": null}});
        let o = Obj(&v);
        assert_eq!(o.str(&["a", "b"]), "x");
        assert_eq!(o.str(&["a", "missing"]), "");
        assert_eq!(o.int(&["a", "n"]), 3);
        assert_eq!(o.int(&["a", "b"]), 0);
        assert!(o.bool(&["a", "t"]));
        assert_eq!(o.len(&["a", "l"]), 2);
        assert!(!o.has(&["a", "z"]));
        assert_eq!(o.time(&["a", "b"]), None);
    }

    #[test]
    fn negative_and_zero_ages() {
        assert_eq!(human_seconds(-1), "0s");
        assert_eq!(human_seconds(-2), "<invalid>");
        let t: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(since(None, t), "<unknown>");
        assert_eq!(since(Some(t), t), "0s");
    }
}
