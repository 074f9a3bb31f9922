//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints cell by cell.
//!
//! Columns and cells follow `kube-apiserver`'s printers for each built-in kind; kinds without
//! one get the default NAME / CREATED AT table.

mod columns;
mod obj;
mod pod;
mod printers;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::registry::Resource;
use obj::Obj;

pub use columns::column_definitions;

/// What each row carries in `object`, as `?includeObject=` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `object` is null.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parse the query value (`None`, `Metadata`, `Object`; empty means the default).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "None" => Some(Self::None),
            "Metadata" | "" => Some(Self::Metadata),
            "Object" => Some(Self::Object),
            _ => None,
        }
    }
}

/// Human durations like Kubernetes' `duration.HumanDuration` (`5s`, `3m`, `2m30s`, `4h`, `3d`,
/// `2y`).
pub fn human_duration(d: Duration) -> String {
    obj::human_seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The cells of one row and its row conditions.
fn row_parts(res: &Resource, obj: &Value, now: Timestamp) -> (Vec<Value>, Option<Value>) {
    use printers as p;
    let o = Obj(obj);
    let cells = match (res.group, res.kind) {
        ("", "Pod") => return pod::pod(o, now),
        ("", "Namespace") => p::namespace(o, now),
        ("", "Node") => p::node(o, now),
        ("", "Service") => p::service(o, now),
        ("", "Endpoints") => p::endpoints(o, now),
        ("", "ConfigMap") => p::config_map(o, now),
        ("", "Secret") => p::secret(o, now),
        ("", "ServiceAccount") => p::service_account(o, now),
        ("", "Event") => p::event(o, now),
        ("events.k8s.io", "Event") => p::event(Obj(&p::event_as_core(o)), now),
        ("", "PersistentVolumeClaim") => p::pvc(o, now),
        ("", "PersistentVolume") => p::pv(o, now),
        ("apps", "Deployment") => p::deployment(o, now),
        ("apps", "ReplicaSet") => p::replica_set(o, now),
        ("apps", "StatefulSet") => p::stateful_set(o, now),
        ("apps", "DaemonSet") => p::daemon_set(o, now),
        ("apps", "ControllerRevision") => p::controller_revision(o, now),
        ("batch", "Job") => p::job(o, now),
        ("batch", "CronJob") => p::cron_job(o, now),
        ("coordination.k8s.io", "Lease") => p::lease(o, now),
        ("discovery.k8s.io", "EndpointSlice") => p::endpoint_slice(o, now),
        ("networking.k8s.io", "Ingress") => p::ingress(o, now),
        ("networking.k8s.io", "IngressClass") => p::ingress_class(o, now),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            p::role_binding(o, now)
        }
        _ => p::created_at(o),
    };
    (cells, None)
}

/// Cells for one object, aligned with [`column_definitions`]. `now` is for AGE-like columns.
pub fn row_cells(res: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    row_parts(res, obj, now).0
}

fn row_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

fn row(res: &Resource, obj: &Value, include: IncludeObject, now: Timestamp) -> Value {
    let (cells, conditions) = row_parts(res, obj, now);
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(conditions) = conditions {
        row.insert("conditions".into(), conditions);
    }
    row.insert("object".into(), row_object(obj, include));
    Value::Object(row)
}

fn table_of(res: &Resource, rows: Vec<Value>, metadata: Value) -> Value {
    let metadata = if metadata.is_object() {
        metadata
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(res),
        "rows": rows,
    })
}

/// A whole Table. `list_meta` becomes `metadata` (`resourceVersion`, `continue`,
/// `remainingItemCount`).
pub fn table(
    res: &Resource,
    objects: &[Value],
    include: IncludeObject,
    now: Timestamp,
    list_meta: Value,
) -> Value {
    let rows = objects.iter().map(|o| row(res, o, include, now)).collect();
    table_of(res, rows, list_meta)
}

/// A single-row Table (for GET of one object and for watch events); its `metadata` carries the
/// object's `resourceVersion`.
pub fn watch_row_table(
    res: &Resource,
    obj: &Value,
    include: IncludeObject,
    now: Timestamp,
) -> Value {
    let mut metadata = Map::new();
    if let Some(rv) = obj.pointer("/metadata/resourceVersion") {
        metadata.insert("resourceVersion".into(), rv.clone());
    }
    table_of(
        res,
        vec![row(res, obj, include, now)],
        Value::Object(metadata),
    )
}
