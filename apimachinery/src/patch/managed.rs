//! Field ownership in `metadata.managedFields`: server-side apply ([`apply`]) and the record
//! every other write leaves ([`track_update`]).
//!
//! Each entry names a manager, an operation (`Apply` or `Update`), an optional subresource and
//! the set of fields it owns (FieldsV1). Applying merges the configuration into the live
//! object, makes the manager own exactly what it applied, removes what it applied before and
//! nobody owns any more, and refuses to change fields other managers own unless forced.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::fieldset::{FieldSet, display_path};
use super::meta::PatchMeta;
use super::typed;

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration is not usable (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// Fields owned by other managers would change (HTTP 409); the message is Kubernetes'.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
}

/// One field another manager owns and the apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    /// The field as Kubernetes prints it: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="nginx"].image`.
    pub field: String,
}

impl Conflict {
    /// `"kubectl-client-side-apply" using apps/v1`, as conflict messages name a manager.
    pub fn manager_description(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    /// The message of this conflict's `StatusCause` (type `FieldManagerConflict`).
    pub fn message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager_description(),
            c.field
        );
    }
    let mut managers: Vec<String> = conflicts
        .iter()
        .map(Conflict::manager_description)
        .collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager_description() == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: Operation,
    subresource: Option<String>,
    api_version: String,
    time: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: Operation, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    fn seconds(&self) -> i64 {
        self.time
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map_or(0, Timestamp::as_second)
    }

    fn into_json(self) -> Value {
        let mut m = Map::new();
        m.insert("apiVersion".into(), Value::String(self.api_version));
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.into_fields_v1());
        m.insert("manager".into(), Value::String(self.manager));
        m.insert(
            "operation".into(),
            Value::String(self.operation.name().into()),
        );
        if let Some(sub) = self.subresource {
            m.insert("subresource".into(), Value::String(sub));
        }
        if let Some(t) = self.time {
            m.insert("time".into(), Value::String(t));
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> Option<Entry> {
        let operation = match v.get("operation")?.as_str()? {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return None,
        };
        let set = match v.get("fieldsV1") {
            Some(f) => FieldSet::from_fields_v1(f)?,
            None => FieldSet::new(),
        };
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Entry {
            manager: text("manager").unwrap_or_default(),
            operation,
            subresource: text("subresource").filter(|s| !s.is_empty()),
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            set,
        })
    }
}

/// Paths no manager ever owns: identity and server-managed metadata.
fn stripped_paths() -> &'static FieldSet {
    static PATHS: std::sync::LazyLock<FieldSet> = std::sync::LazyLock::new(build_stripped_paths);
    &PATHS
}

fn build_stripped_paths() -> FieldSet {
    FieldSet::from_paths([
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
    ])
}

/// The fields a manager owns by creating `obj` (no earlier version, no recorded managers).
///
/// Which fields those are depends only on the object's shape (its keys, which values are null
/// or empty, and its lists' items, which name list entries) and its type, never on other
/// scalar values. Objects of one shape are created over and over (the pods of one template,
/// events, leases), so with a type that has a [`PatchMeta::cache_id`] the answer is
/// remembered per shape.
fn created_fields(obj: &Map<String, Value>, meta: &dyn PatchMeta) -> FieldSet {
    let compute = || {
        let c = typed::compare(None, obj, meta);
        let mut mine = if c.modified.is_empty() {
            c.added
        } else {
            c.added.union_into(&c.modified)
        };
        mine.subtract(stripped_paths());
        mine
    };
    let Some(id) = meta.cache_id() else {
        return compute();
    };
    let key = (id, shape_key(obj));
    if let Some(hit) = CREATED.with(|c| c.borrow().get(&key).cloned()) {
        return hit;
    }
    let fields = compute();
    CREATED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CREATED_MAX {
            c.clear();
        }
        c.insert(key, fields.clone());
    });
    fields
}

/// Field sets of created objects by (type, shape), per thread; small, to stay cheap in memory.
type CreatedCache = std::collections::HashMap<(usize, Vec<u8>), FieldSet>;

thread_local! {
    static CREATED: std::cell::RefCell<CreatedCache> = std::cell::RefCell::new(CreatedCache::new());
}

const CREATED_MAX: usize = 64;

/// The shape of an object as [`created_fields`] sees it: keys (as JSON strings), null, other
/// scalars as one marker, and lists verbatim (their items' keys and values name entries).
fn shape_key(obj: &Map<String, Value>) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => write_map(m, out),
            Value::Array(_) => {
                out.push(b'a');
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, v);
            }
            Value::Null => out.push(b'n'),
            _ => out.push(b's'),
        }
    }
    fn write_map(m: &Map<String, Value>, out: &mut Vec<u8>) {
        out.push(b'{');
        for (k, v) in m {
            let _ = serde_json::to_writer(&mut *out, k);
            write(v, out);
        }
        out.push(b'}');
    }
    let mut out = Vec::with_capacity(1024);
    write_map(obj, &mut out);
    out
}

/// Metadata fields of an applied configuration that never take part in the merge.
const IGNORED_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
];

fn decode(obj: &Value) -> Vec<Entry> {
    obj.as_object().map(decode_map).unwrap_or_default()
}

fn decode_map(obj: &Map<String, Value>) -> Vec<Entry> {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .map(|entries| entries.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// How many `Update` entries an object keeps; older ones merge into [`ANCIENT_CHANGES`].
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Merge the oldest `Update` entries into the `ancient-changes` bucket until at most
/// [`MAX_UPDATE_MANAGERS`] remain.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    loop {
        let updates = entries
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .count();
        if updates <= MAX_UPDATE_MANAGERS {
            return;
        }
        let oldest = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.operation == Operation::Update && e.manager != ANCIENT_CHANGES)
            .min_by(|(_, a), (_, b)| {
                a.seconds()
                    .cmp(&b.seconds())
                    .then_with(|| a.manager.cmp(&b.manager))
            })
            .map(|(i, _)| i);
        let Some(i) = oldest else {
            return;
        };
        let old = entries.remove(i);
        match entries.iter_mut().find(|e| {
            e.is(ANCIENT_CHANGES, Operation::Update, None) && e.api_version == old.api_version
        }) {
            Some(bucket) => {
                bucket.set.union_with(&old.set);
                if old.seconds() > bucket.seconds() {
                    bucket.time = old.time;
                }
            }
            None => entries.push(Entry {
                manager: ANCIENT_CHANGES.to_string(),
                subresource: None,
                ..old
            }),
        }
    }
}

/// Write `entries` (dropping empty ones) into `obj`, sorted as Kubernetes sorts them.
fn encode(obj: &mut Map<String, Value>, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    cap_update_managers(&mut entries);
    entries.sort_by(|p, q| {
        p.operation
            .cmp(&q.operation)
            .then(p.seconds().cmp(&q.seconds()))
            .then_with(|| p.manager.cmp(&q.manager))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    let metadata = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else {
        return;
    };
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        let list = entries.into_iter().map(Entry::into_json).collect();
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

/// Whether the object carries `metadata.managedFields: [{}]`.
fn is_reset(obj: &Map<String, Value>) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .is_some_and(|l| matches!(l.as_slice(), [Value::Object(e)] if e.is_empty()))
}

/// A copy of `obj` without `metadata.managedFields`.
fn without_managed_fields(obj: &Map<String, Value>) -> Cow<'_, Map<String, Value>> {
    let has_managed = obj
        .get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("managedFields"));
    if !has_managed {
        return Cow::Borrowed(obj);
    }
    let mut copy = obj.clone();
    if let Some(Value::Object(md)) = copy.get_mut("metadata") {
        md.remove("managedFields");
    }
    Cow::Owned(copy)
}

fn api_version_of(obj: &Map<String, Value>) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn format_time(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parse an `application/apply-patch+yaml` body (YAML or JSON) into an object.
pub fn decode_apply_patch(body: &[u8]) -> Result<Value, ApplyError> {
    // kubectl sends JSON, which YAML also reads, but the JSON parser is exact about numbers.
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_slice(body)
            .map_err(|e| ApplyError::Malformed(format!("error decoding YAML: {e}")))?,
    };
    if !value.is_object() {
        return Err(ApplyError::Malformed(
            "the applied configuration must be an object".to_string(),
        ));
    }
    Ok(value)
}

/// The configuration as it takes part in the apply: server-managed metadata dropped, and only
/// the part the endpoint may change (`status` is reset on the main resource, only `status`
/// counts on `/status`).
fn prepare_config(applied: &Map<String, Value>, subresource: Option<&str>) -> Map<String, Value> {
    let mut config = applied.clone();
    if let Some(Value::Object(md)) = config.get_mut("metadata") {
        for f in IGNORED_METADATA {
            md.remove(*f);
        }
    }
    match subresource {
        None => {
            config.remove("status");
        }
        Some("status") => {
            config
                .retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(Value::Object(md)) = config.get_mut("metadata") {
                md.retain(|k, _| k == "name" || k == "namespace");
            }
        }
        Some(_) => {}
    }
    config
}

/// Server-side apply of `applied` by `manager` onto `live` (`None` when creating).
///
/// Returns the new object with `metadata.managedFields` updated. `subresource` is `None` for
/// the main resource (then `status` in the configuration is ignored) or e.g. `Some("status")`
/// (then only `status` counts). Preconditions (`metadata.resourceVersion`), defaulting and
/// validation of the result are the caller's.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    meta: &dyn PatchMeta,
    now: Timestamp,
) -> Result<Value, ApplyError> {
    let Value::Object(applied) = applied else {
        return Err(ApplyError::Malformed(
            "the applied configuration must be an object".to_string(),
        ));
    };
    if applied
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|f| !f.is_null())
    {
        return Err(ApplyError::Malformed(
            "metadata.managedFields must be nil".to_string(),
        ));
    }
    if manager.is_empty() {
        return Err(ApplyError::Malformed(
            "PATCH requests with apply content type require fieldManager to be set".to_string(),
        ));
    }
    let live_obj = match live {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(ApplyError::Malformed(
                "the live object is not an object".to_string(),
            ));
        }
    };
    let config = prepare_config(applied, subresource);
    let strip = stripped_paths();
    let now_text = format_time(now);

    let live_plain = live_obj.map(|o| without_managed_fields(o).into_owned());
    let mut entries = live.map(decode).unwrap_or_default();
    if let Some(live_plain) = &live_plain
        && entries.is_empty()
    {
        // The object predates field tracking: everything in it belongs to one manager.
        let set = typed::compare(None, live_plain, meta)
            .changed()
            .difference(strip);
        entries.push(Entry {
            manager: "before-first-apply".to_string(),
            operation: Operation::Update,
            subresource: None,
            api_version: api_version_of(live_plain),
            time: Some(now_text.clone()),
            set,
        });
    }

    let new_set = typed::field_set(&config, meta)
        .map_err(ApplyError::Malformed)?
        .difference(strip);
    let mut merged = typed::merge(live_plain.clone().unwrap_or_default(), &config, meta)
        .map_err(ApplyError::Malformed)?;

    let me = match entries
        .iter()
        .position(|e| e.is(manager, Operation::Apply, subresource))
    {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.to_string(),
                operation: Operation::Apply,
                subresource: subresource.map(str::to_string),
                api_version: String::new(),
                time: None,
                set: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let last_set = std::mem::replace(&mut entries[me].set, new_set);
    let api_version = match api_version_of(&config) {
        v if v.is_empty() => live_plain.as_ref().map(api_version_of).unwrap_or_default(),
        v => v,
    };
    entries[me].api_version = api_version;

    // Fields applied last time and not now go away, unless someone still owns them.
    if !last_set.is_empty() {
        let owned = entries
            .iter()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.set));
        for path in last_set.difference(&owned).members() {
            if !owned.has_member_below(&path) {
                typed::remove_path(&mut merged, &path, meta);
            }
        }
    }

    let comparison = typed::compare(live_plain.as_ref(), &merged, meta);
    let changed = comparison.changed();
    let mut conflicts = Vec::new();
    let mut taken: Vec<(usize, FieldSet)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if i == me {
            continue;
        }
        let overlap = e.set.intersection(&changed);
        if overlap.is_empty() {
            continue;
        }
        for path in overlap.members() {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                operation: e.operation.name().to_string(),
                api_version: e.api_version.clone(),
                subresource: e.subresource.clone(),
                field: display_path(&path),
            });
        }
        taken.push((i, overlap));
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort_by_key(Conflict::manager_description);
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (i, overlap) in taken {
        entries[i].set = entries[i].set.difference(&overlap);
    }
    if !comparison.removed.is_empty() {
        for (i, e) in entries.iter_mut().enumerate() {
            if i != me {
                e.set = e.set.difference(&comparison.removed);
            }
        }
    }

    let object_changed = live_plain.as_ref() != Some(&merged);
    if object_changed || entries[me].time.is_none() {
        entries[me].time = Some(now_text);
    }
    encode(&mut merged, entries);
    Ok(Value::Object(merged))
}

/// Record, after a create/update/patch by `manager` (not an apply), which fields it changed:
/// an `Update` entry in `new`'s `metadata.managedFields` takes the fields that differ between
/// `old` (`None` for a create) and `new`, and other managers lose them.
///
/// Call it with the object as it will be stored (after defaulting). Managed fields the
/// request itself carries replace the old ones (that is how clients edit them), except on a
/// subresource. An existing object that has no managed fields stays untracked, as in
/// Kubernetes.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    meta: &dyn PatchMeta,
    now: Timestamp,
) {
    let Value::Object(new_obj) = new else {
        return;
    };
    if subresource.is_none() && is_reset(new_obj) {
        // `managedFields: [{}]` is how a client clears the record.
        encode(new_obj, Vec::new());
        return;
    }
    let mut entries = if subresource.is_none() {
        decode_map(new_obj)
    } else {
        Vec::new()
    };
    if entries.is_empty() {
        entries = old.map(decode).unwrap_or_default();
    }
    let old_plain = old.and_then(Value::as_object).map(without_managed_fields);
    if old_plain.is_some() && entries.is_empty() {
        encode(new_obj, Vec::new());
        return;
    }

    let new_plain = without_managed_fields(new_obj);
    let mine = if old_plain.is_none() && entries.is_empty() {
        created_fields(&new_plain, meta)
    } else {
        let typed::Comparison {
            added,
            modified,
            removed,
        } = typed::compare(old_plain.as_deref(), &new_plain, meta);
        let changed = if modified.is_empty() {
            added
        } else {
            added.union_into(&modified)
        };
        for e in &mut entries {
            e.set.subtract(&changed);
            e.set.subtract(&removed);
        }
        let mut mine = changed;
        mine.subtract(stripped_paths());
        mine
    };
    if !mine.is_empty() {
        let api_version = api_version_of(&new_plain);
        let time = Some(format_time(now));
        match entries
            .iter_mut()
            .find(|e| e.is(manager, Operation::Update, subresource))
        {
            Some(e) => {
                e.set.union_with(&mine);
                e.api_version = api_version;
                e.time = time;
            }
            None => entries.push(Entry {
                manager: manager.to_string(),
                operation: Operation::Update,
                subresource: subresource.map(str::to_string),
                api_version,
                time,
                set: mine,
            }),
        }
    }
    encode(new_obj, entries);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testdefs::{deployment, service};
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_714_557_600 + second).unwrap()
    }

    fn config() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.25",
                        "ports": [{"containerPort": 80}]
                    }]}
                }
            }
        })
    }

    fn managed(obj: &Value) -> &Vec<Value> {
        obj["metadata"]["managedFields"].as_array().unwrap()
    }

    fn entry<'v>(obj: &'v Value, manager: &str) -> Option<&'v Value> {
        managed(obj).iter().find(|e| e["manager"] == manager)
    }

    fn without_managed(obj: &Value) -> Value {
        let mut copy = obj.clone();
        if let Some(md) = copy["metadata"].as_object_mut() {
            md.remove("managedFields");
        }
        copy
    }

    fn kubectl_apply(
        live: Option<&Value>,
        cfg: &Value,
        force: bool,
        t: i64,
    ) -> Result<Value, ApplyError> {
        apply(live, cfg, "kubectl", force, None, &deployment(), at(t))
    }

    /// `old` changed by `f`, recorded for `manager` as a non-apply write.
    fn update(old: &Value, manager: &str, t: i64, f: impl FnOnce(&mut Value)) -> Value {
        let mut new = old.clone();
        f(&mut new);
        track_update(Some(old), &mut new, manager, None, &deployment(), at(t));
        new
    }

    #[test]
    fn created_fields_are_remembered_per_shape_and_type() {
        use crate::patch::{CachedSchemaMeta, SchemaPatchMeta};
        let defs = crate::schema::definitions();
        let cached = CachedSchemaMeta::new(defs, "io.k8s.api.core.v1.Pod");
        let plain = SchemaPatchMeta::new(defs, "io.k8s.api.core.v1.Pod");
        let now = Timestamp::UNIX_EPOCH;
        let pod = |name: &str, labels: Value, image: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ns", "labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}], "restartPolicy": "Always"}})
        };
        let track = |obj: &Value, meta: &dyn PatchMeta| {
            let mut o = obj.clone();
            track_update(None, &mut o, "m", None, meta, now);
            o["metadata"]["managedFields"].clone()
        };
        let shapes = [
            pod("a", json!({"x": "1"}), "i"),
            pod("b", json!({"x": "2"}), "i"),
            pod("c", json!({"x": "1", "y": "2"}), "i"),
            pod("d", json!({"x": "1"}), "j"),
            pod("e", json!(null), "i"),
        ];
        for obj in &shapes {
            // The first answer is computed, the second may come from the cache.
            let expected = track(obj, &plain);
            assert_eq!(track(obj, &cached), expected, "{obj}");
            assert_eq!(track(obj, &cached), expected, "{obj}");
        }
        let fields = |obj: &Value| track(obj, &cached)[0]["fieldsV1"].clone();
        assert_eq!(fields(&shapes[0]), fields(&shapes[1]));
        assert_ne!(fields(&shapes[0]), fields(&shapes[2]));
        assert!(
            fields(&shapes[2])["f:metadata"]["f:labels"]
                .get("f:y")
                .is_some()
        );
        assert_ne!(fields(&shapes[4]), fields(&shapes[0]));
    }

    #[test]
    fn first_apply_creates_and_records_the_applied_fields() {
        let out = kubectl_apply(None, &config(), false, 0).unwrap();
        assert_eq!(without_managed(&out), config());
        assert_eq!(
            managed(&out),
            &vec![json!({
                "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                                ".": {},
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                    ".": {},
                                    "f:containerPort": {}
                                }}
                            }}}
                        }
                    }
                },
                "manager": "kubectl",
                "operation": "Apply",
                "time": "2024-05-01T10:00:00Z"
            })]
        );
    }

    #[test]
    fn reapplying_without_a_field_removes_it_unless_someone_else_owns_it() {
        let first = kubectl_apply(None, &config(), false, 0).unwrap();
        let labelled = update(&first, "kubectl-label", 5, |o| {
            o["metadata"]["labels"]["tier"] = json!("front");
        });
        let mut cfg = config();
        cfg["spec"].as_object_mut().unwrap().remove("replicas");
        cfg["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("ports");
        let out = kubectl_apply(Some(&labelled), &cfg, false, 10).unwrap();
        assert!(out["spec"].get("replicas").is_none());
        let nginx = &out["spec"]["template"]["spec"]["containers"][0];
        assert!(nginx.get("ports").is_none(), "{nginx}");
        assert_eq!(nginx["image"], "nginx:1.25");
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "tier": "front"})
        );
        let mine = &entry(&out, "kubectl").unwrap()["fieldsV1"];
        assert!(mine["f:spec"].get("f:replicas").is_none());
        assert_eq!(mine["f:metadata"], json!({"f:labels": {"f:app": {}}}));
        assert_eq!(
            entry(&out, "kubectl-label").unwrap()["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
        );
        // Entries sort by operation first.
        assert_eq!(managed(&out)[0]["operation"], "Apply");
        assert_eq!(managed(&out)[1]["operation"], "Update");
    }

    #[test]
    fn a_field_applied_by_two_managers_survives_one_of_them_dropping_it() {
        let first = kubectl_apply(None, &config(), false, 0).unwrap();
        let other_cfg = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2}
        });
        let shared = apply(
            Some(&first),
            &other_cfg,
            "other",
            false,
            None,
            &deployment(),
            at(1),
        )
        .expect("same value: no conflict");
        let mut cfg = config();
        cfg["spec"].as_object_mut().unwrap().remove("replicas");
        let out = kubectl_apply(Some(&shared), &cfg, false, 2).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(
            entry(&out, "other").unwrap()["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn conflicting_apply_names_the_owner_and_force_takes_the_field() {
        let first = kubectl_apply(None, &config(), false, 0).unwrap();
        let scaled = update(&first, "kube-scaler", 5, |o| {
            o["spec"]["replicas"] = json!(5)
        });
        // The scaler took the field from the applier.
        assert!(
            entry(&scaled, "kubectl").unwrap()["fieldsV1"]["f:spec"]
                .get("f:replicas")
                .is_none()
        );

        let err = kubectl_apply(Some(&scaled), &config(), false, 10).unwrap_err();
        let ApplyError::Conflicts(conflicts) = &err else {
            panic!("expected conflicts, got {err:?}");
        };
        assert_eq!(
            conflicts,
            &vec![Conflict {
                manager: "kube-scaler".into(),
                operation: "Update".into(),
                api_version: "apps/v1".into(),
                subresource: None,
                field: ".spec.replicas".into(),
            }]
        );
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kube-scaler\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            conflicts[0].message(),
            "conflict with \"kube-scaler\" using apps/v1"
        );

        let forced = kubectl_apply(Some(&scaled), &config(), true, 10).unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        assert!(
            entry(&forced, "kube-scaler").is_none(),
            "it owned nothing else"
        );
        assert_eq!(
            entry(&forced, "kubectl").unwrap()["fieldsV1"]["f:spec"]["f:replicas"],
            json!({})
        );
    }

    #[test]
    fn conflicts_with_several_fields_are_listed_per_manager() {
        let first = kubectl_apply(None, &config(), false, 0).unwrap();
        let other_cfg = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "api"}},
            "spec": {"replicas": 3}
        });
        let err = apply(
            Some(&first),
            &other_cfg,
            "other",
            false,
            None,
            &deployment(),
            at(1),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .metadata.labels.app\n- .spec.replicas"
        );
    }

    #[test]
    fn track_update_records_only_changed_fields() {
        let mut created = config();
        created["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("ports");
        track_update(
            None,
            &mut created,
            "kubectl-create",
            None,
            &deployment(),
            at(0),
        );
        assert_eq!(
            managed(&created),
            &vec![json!({
                "apiVersion": "apps/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                                ".": {},
                                "f:image": {},
                                "f:name": {}
                            }}}
                        }
                    }
                },
                "manager": "kubectl-create",
                "operation": "Update",
                "time": "2024-05-01T10:00:00Z"
            })]
        );

        let edited = update(&created, "kubectl-set", 60, |o| {
            o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        });
        assert_eq!(
            entry(&edited, "kubectl-set").unwrap()["fieldsV1"],
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {"f:image": {}}
            }}}}})
        );
        assert_eq!(
            entry(&edited, "kubectl-set").unwrap()["time"],
            "2024-05-01T10:01:00Z"
        );
        let create_entry = &entry(&edited, "kubectl-create").unwrap()["fieldsV1"];
        assert_eq!(
            create_entry["f:spec"]["f:template"]["f:spec"],
            json!({"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:name": {}}}})
        );
        assert_eq!(
            entry(&edited, "kubectl-create").unwrap()["time"],
            "2024-05-01T10:00:00Z"
        );

        // A write that changes nothing records nothing.
        let same = update(&edited, "noop", 120, |_| {});
        assert_eq!(managed(&same), managed(&edited));

        // `[{}]` clears the record.
        let mut reset = edited.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        track_update(Some(&edited), &mut reset, "x", None, &deployment(), at(130));
        assert!(reset["metadata"].get("managedFields").is_none());

        // An object that was never tracked stays untracked.
        let plain = without_managed(&edited);
        let untouched = update(&plain, "someone", 130, |o| o["spec"]["replicas"] = json!(9));
        assert!(untouched["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn objects_without_managed_fields_belong_to_before_first_apply() {
        let live = config();
        let same = kubectl_apply(Some(&live), &config(), false, 0).unwrap();
        assert!(entry(&same, "before-first-apply").is_some());
        assert!(entry(&same, "kubectl").is_some());

        let mut changed = config();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        let err = kubectl_apply(Some(&live), &changed, false, 0).unwrap_err();
        let ApplyError::Conflicts(conflicts) = err else {
            panic!("expected conflicts");
        };
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].manager, "before-first-apply");
        assert_eq!(
            conflicts[0].field,
            ".spec.template.spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn sets_keyed_defaults_status_and_noop_time() {
        // A set: items are `v:` elements, and dropping one removes it.
        let mut cfg = config();
        cfg["metadata"]["finalizers"] = json!(["a"]);
        let first = kubectl_apply(None, &cfg, false, 0).unwrap();
        assert_eq!(
            entry(&first, "kubectl").unwrap()["fieldsV1"]["f:metadata"]["f:finalizers"],
            json!({"v:\"a\"": {}})
        );
        cfg["metadata"]["finalizers"] = json!(["b"]);
        let second = kubectl_apply(Some(&first), &cfg, false, 1).unwrap();
        assert_eq!(second["metadata"]["finalizers"], json!(["b"]));

        // Re-applying the same configuration changes nothing, not even the time.
        let again = kubectl_apply(Some(&second), &cfg, false, 99).unwrap();
        assert_eq!(again, second);

        // Status is not the main resource's to apply.
        let mut with_status = cfg.clone();
        with_status["status"] = json!({"replicas": 7});
        let out = kubectl_apply(Some(&second), &with_status, false, 100).unwrap();
        assert!(out.get("status").is_none());
        assert!(
            entry(&out, "kubectl").unwrap()["fieldsV1"]
                .get("f:status")
                .is_none()
        );

        // A list-map key the item omits takes its schema default.
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}
        });
        let out = apply(None, &svc, "kubectl", false, None, &service(), at(0)).unwrap();
        assert_eq!(
            managed(&out)[0]["fieldsV1"]["f:spec"]["f:ports"],
            json!({"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}})
        );
    }

    #[test]
    fn apply_merges_keyed_items_into_live_order() {
        let first = kubectl_apply(None, &config(), false, 0).unwrap();
        let with_sidecar = update(&first, "injector", 1, |o| {
            o["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .insert(0, json!({"name": "proxy", "image": "envoy"}));
        });
        let mut cfg = config();
        cfg["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        cfg["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "log", "image": "fluentd"}));
        let out = kubectl_apply(Some(&with_sidecar), &cfg, false, 2).unwrap();
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["proxy", "nginx", "log"]);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["image"],
            "nginx:1.26"
        );
    }

    #[test]
    fn malformed_apply_requests() {
        let mut cfg = config();
        cfg["metadata"]["managedFields"] = json!([]);
        assert!(matches!(
            kubectl_apply(None, &cfg, false, 0),
            Err(ApplyError::Malformed(_))
        ));
        assert!(matches!(
            kubectl_apply(None, &json!([1]), false, 0),
            Err(ApplyError::Malformed(_))
        ));
        let mut dup = config();
        dup["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]);
        assert!(matches!(
            kubectl_apply(None, &dup, false, 0),
            Err(ApplyError::Malformed(_))
        ));
        assert!(matches!(
            apply(None, &config(), "", false, None, &deployment(), at(0)),
            Err(ApplyError::Malformed(_))
        ));
    }

    #[test]
    fn old_update_entries_merge_into_ancient_changes() {
        let mut obj = kubectl_apply(None, &config(), false, 0).unwrap();
        for i in 0..12 {
            obj = update(&obj, &format!("writer-{i:02}"), 10 + i, |o| {
                o["metadata"]["labels"][format!("k{i}")] = json!("v");
            });
        }
        let updates: Vec<&Value> = managed(&obj)
            .iter()
            .filter(|e| e["operation"] == "Update")
            .collect();
        assert_eq!(updates.len(), MAX_UPDATE_MANAGERS);
        let ancient = entry(&obj, ANCIENT_CHANGES).unwrap();
        assert_eq!(
            ancient["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:k0": {}, "f:k1": {}, "f:k2": {}}}})
        );
        assert!(entry(&obj, "writer-02").is_none());
        assert!(entry(&obj, "writer-03").is_some());
        assert!(entry(&obj, "kubectl").is_some());
    }

    #[test]
    fn decodes_yaml_apply_bodies() {
        let body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: \"1\"\n";
        let v = decode_apply_patch(body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}})
        );
        let json_body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#;
        assert_eq!(
            decode_apply_patch(json_body).unwrap()["metadata"]["name"],
            "c"
        );
        assert!(decode_apply_patch(b"- a\n- b\n").is_err());
        assert!(decode_apply_patch(b"a: [").is_err());
    }
}
