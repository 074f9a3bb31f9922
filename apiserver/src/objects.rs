//! Objects in the store: key layout, encoding, and `resourceVersion` from MVCC revisions.
//!
//! Keys are `/{storage}/{namespace}/{name}` for namespaced kinds and `/{storage}/{name}` for
//! cluster-scoped ones. The stored JSON never carries `metadata.resourceVersion`: it is set on
//! the way out from the key's mod revision, as kube-apiserver does over etcd.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use skiff_apimachinery::Resource;
use skiff_store::{KeyValue, Store, StoreError};

use crate::status::ApiError;

pub fn key(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if res.namespaced() => format!("/{}/{ns}/{name}", res.storage),
        _ => format!("/{}/{name}", res.storage),
    }
}

/// The prefix holding one namespace's objects of a kind, or all of them.
pub fn prefix(res: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if res.namespaced() => format!("/{}/{ns}/", res.storage),
        _ => format!("/{}/", res.storage),
    }
}

/// Decode a stored value as `res` serves it, setting `metadata.resourceVersion`.
pub fn from_kv(res: &Resource, kv: &KeyValue) -> Result<Value, ApiError> {
    let stored: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    let mut obj = res.from_storage(stored);
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

/// The stored JSON bytes of `kv` with `metadata.resourceVersion` set, without building a
/// `serde_json::Value` tree: only the top level and `metadata` are split into raw parts. Lists
/// of thousands of objects are answered this way in a fraction of the memory and time.
pub fn raw_from_kv(res: &Resource, kv: &KeyValue) -> Result<Vec<u8>, ApiError> {
    use std::collections::BTreeMap;

    use serde_json::value::RawValue;

    if res.has_storage_conversion() {
        let obj = from_kv(res, kv)?;
        return serde_json::to_vec(&obj)
            .map_err(|e| ApiError::internal(format!("failed to encode object: {e}")));
    }
    let corrupt = |e: serde_json::Error| {
        ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key))
    };
    let mut top: BTreeMap<&str, &RawValue> = serde_json::from_slice(&kv.value).map_err(corrupt)?;
    let mut meta: BTreeMap<&str, &RawValue> = match top.get("metadata") {
        Some(m) => serde_json::from_str(m.get()).map_err(corrupt)?,
        None => BTreeMap::new(),
    };
    let rv = RawValue::from_string(format!("\"{}\"", kv.mod_revision)).map_err(corrupt)?;
    meta.insert("resourceVersion", &rv);
    let meta_raw =
        RawValue::from_string(serde_json::to_string(&meta).map_err(corrupt)?).map_err(corrupt)?;
    top.insert("metadata", &meta_raw);
    serde_json::to_vec(&top).map_err(corrupt)
}

pub fn set_resource_version(obj: &mut Value, rev: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// An object encoded once for the store, from which the JSON served to clients is made by
/// splicing `metadata.resourceVersion` into the bytes instead of encoding the object again.
struct Encoded {
    /// The stored JSON (no `resourceVersion`).
    stored: Bytes,
    /// Offset of the closing brace of `metadata`, and whether `metadata` has members before it.
    meta_end: Option<(usize, bool)>,
}

impl Encoded {
    fn new(obj: &Value) -> Result<Self, serde_json::Error> {
        let Value::Object(top) = obj else {
            return Ok(Self {
                stored: serde_json::to_vec(obj)?.into(),
                meta_end: None,
            });
        };
        let mut buf = Vec::with_capacity(2048);
        let mut meta_end = None;
        buf.push(b'{');
        for (i, (key, value)) in top.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            serde_json::to_writer(&mut buf, key)?;
            buf.push(b':');
            match value {
                Value::Object(meta) if key == "metadata" => {
                    buf.push(b'{');
                    let mut any = false;
                    for (k, v) in meta.iter().filter(|(k, _)| *k != "resourceVersion") {
                        if any {
                            buf.push(b',');
                        }
                        any = true;
                        serde_json::to_writer(&mut buf, k)?;
                        buf.push(b':');
                        serde_json::to_writer(&mut buf, v)?;
                    }
                    meta_end = Some((buf.len(), any));
                    buf.push(b'}');
                }
                _ => serde_json::to_writer(&mut buf, value)?,
            }
        }
        buf.push(b'}');
        // The watch history holds these bytes for a while: keep no spare capacity.
        buf.shrink_to_fit();
        Ok(Self {
            stored: buf.into(),
            meta_end,
        })
    }

    /// The JSON as served at revision `rev`.
    fn served(&self, rev: u64) -> Vec<u8> {
        let Some((at, any)) = self.meta_end else {
            return self.stored.to_vec();
        };
        let rv = format!(
            "{}\"resourceVersion\":\"{rev}\"",
            if any { "," } else { "" }
        );
        let mut out = Vec::with_capacity(self.stored.len() + rv.len());
        out.extend_from_slice(&self.stored[..at]);
        out.extend_from_slice(rv.as_bytes());
        out.extend_from_slice(&self.stored[at..]);
        out
    }
}

/// An object as written: the object served (with its new `resourceVersion`) and its JSON.
pub struct Written {
    pub object: Value,
    pub json: Vec<u8>,
}

impl Written {
    /// An object that was not stored (a dry run), served as it is.
    pub fn unstored(object: Value) -> Result<Self, ApiError> {
        let json = serde_json::to_vec(&object).map_err(encode_error)?;
        Ok(Self { object, json })
    }
}

fn encode_error(e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("failed to encode object: {e}"))
}

/// Encode `obj` for the store, in the stored version when `res` is a converted view.
fn encode(res: &Resource, obj: &Value) -> Result<Encoded, ApiError> {
    if res.has_storage_conversion() {
        Encoded::new(&res.to_storage(obj.clone())).map_err(encode_error)
    } else {
        Encoded::new(obj).map_err(encode_error)
    }
}

/// What a write answers: `obj` at revision `rev`, with its JSON made from `enc` when the stored
/// form is the served one.
fn written(res: &Resource, mut obj: Value, enc: &Encoded, rev: u64) -> Result<Written, ApiError> {
    set_resource_version(&mut obj, rev);
    let json = if res.has_storage_conversion() {
        serde_json::to_vec(&obj).map_err(encode_error)?
    } else {
        enc.served(rev)
    };
    Ok(Written { object: obj, json })
}

/// Parse a `resourceVersion` string.
pub fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse().map_err(|_| {
        ApiError::bad_request(format!("invalid resource version {rv:?}: not a number"))
    })
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// How long a namespace seen active is trusted without reading it again. Writes to namespaces
/// through this server forget it at once; the time bounds how long a change made elsewhere
/// (another API server on a shared store) can go unseen, as an informer's lag would.
const ACTIVE_NAMESPACE_TTL: Duration = Duration::from_secs(1);

/// Namespaces recently read as active (neither missing nor terminating), so that creates in
/// them skip a store read: that read was 7 % of the server's CPU per pod create.
#[derive(Default)]
struct ActiveNamespaces {
    /// Bumped by every namespace write, so a read that raced with one is not remembered.
    generation: u64,
    seen: HashMap<String, Instant>,
}

/// Typed access to the objects of the store.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
    active_namespaces: Arc<Mutex<ActiveNamespaces>>,
}

impl Objects {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            active_namespaces: Arc::default(),
        }
    }

    fn namespaces(&self) -> MutexGuard<'_, ActiveNamespaces> {
        self.active_namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `ns` was read as active less than a second ago and not written since.
    pub fn namespace_known_active(&self, ns: &str) -> bool {
        self.namespaces()
            .seen
            .get(ns)
            .is_some_and(|at| at.elapsed() < ACTIVE_NAMESPACE_TTL)
    }

    /// The namespace write generation, taken before reading a namespace.
    pub fn namespace_generation(&self) -> u64 {
        self.namespaces().generation
    }

    /// Remember `ns` as active, read at `generation` (ignored if a namespace write came since).
    pub fn remember_active_namespace(&self, ns: &str, generation: u64) {
        let mut known = self.namespaces();
        if known.generation == generation {
            let now = Instant::now();
            known
                .seen
                .retain(|_, at| now.duration_since(*at) < ACTIVE_NAMESPACE_TTL);
            known.seen.insert(ns.to_owned(), now);
        }
    }

    /// Forget what is known of namespace `name` (after any write to it).
    fn namespace_written(&self, res: &Resource, name: &str) {
        if res.storage == "namespaces" {
            let mut known = self.namespaces();
            known.generation += 1;
            known.seen.remove(name);
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        match self.store.get(&key(res, ns, name)).await? {
            Some(kv) => from_kv(res, &kv).map(Some),
            None => Ok(None),
        }
    }

    /// The stored entry of an object, undecoded.
    pub async fn get_raw(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<KeyValue>, ApiError> {
        Ok(self.store.get(&key(res, ns, name)).await?)
    }

    pub async fn must_get(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.get(res, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Written, ApiError> {
        let enc = encode(res, &obj)?;
        let result = self
            .store
            .create(&key(res, ns, name), enc.stored.clone())
            .await;
        self.namespace_written(res, name);
        let kv = result.map_err(|e| match e {
            StoreError::AlreadyExists(_) => ApiError::already_exists(res, name),
            other => other.into(),
        })?;
        written(res, obj, &enc, kv.mod_revision)
    }

    /// Compare-and-swap update against the revision the caller read.
    pub async fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        expected: u64,
    ) -> Result<Written, ApiError> {
        let enc = encode(res, &obj)?;
        let result = self
            .store
            .update(&key(res, ns, name), enc.stored.clone(), Some(expected))
            .await;
        self.namespace_written(res, name);
        let kv = result.map_err(|e| map_cas(e, res, name))?;
        written(res, obj, &enc, kv.mod_revision)
    }

    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Value, ApiError> {
        let result = self.store.delete(&key(res, ns, name), expected).await;
        self.namespace_written(res, name);
        let kv = result.map_err(|e| map_cas(e, res, name))?;
        from_kv(res, &kv)
    }

    /// One page of raw stored entries after `start_after` (a full key).
    pub async fn list_raw(
        &self,
        res: &Resource,
        ns: Option<&str>,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<skiff_store::ListPage, ApiError> {
        Ok(self
            .store
            .list(&prefix(res, ns), start_after, limit)
            .await?)
    }

    /// One page of objects after `start_after` (a full key), and the store's page metadata.
    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<(Vec<Value>, skiff_store::ListPage), ApiError> {
        let page = self
            .store
            .list(&prefix(res, ns), start_after, limit)
            .await?;
        let items = page
            .items
            .iter()
            .map(|kv| from_kv(res, kv))
            .collect::<Result<_, _>>()?;
        Ok((items, page))
    }
}

fn map_cas(e: StoreError, res: &Resource, name: &str) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::modified(res, name),
        StoreError::NotFound(_) => ApiError::not_found(res, name),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use skiff_apimachinery::Registry;

    fn kv(value: &Value) -> KeyValue {
        KeyValue {
            key: "/configmaps/default/x".into(),
            value: Bytes::from(serde_json::to_vec(value).unwrap()),
            create_revision: 3,
            mod_revision: 7,
        }
    }

    #[test]
    fn raw_encoding_matches_the_parsed_object() {
        let res = Registry::builtin().get("", "v1", "configmaps").unwrap();
        let stored = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "data": {"tricky": "\"metadata\":{", "b": "2"},
            "metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"}}});
        let raw: Value = serde_json::from_slice(&raw_from_kv(res, &kv(&stored)).unwrap()).unwrap();
        assert_eq!(raw, from_kv(res, &kv(&stored)).unwrap());
        assert_eq!(raw["metadata"]["resourceVersion"], "7");
        assert_eq!(raw["data"]["tricky"], "\"metadata\":{");
    }

    #[test]
    fn encoded_once_serves_the_object_with_its_resource_version() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "data": {"k": "}\"metadata\":{"},
            "metadata": {"name": "x", "namespace": "default", "resourceVersion": "3"}});
        let enc = Encoded::new(&obj).unwrap();
        let stored: Value = serde_json::from_slice(&enc.stored).unwrap();
        assert!(stored["metadata"].get("resourceVersion").is_none());
        assert_eq!(stored["data"], obj["data"]);
        let served: Value = serde_json::from_slice(&enc.served(42)).unwrap();
        let mut expected = obj.clone();
        set_resource_version(&mut expected, 42);
        assert_eq!(served, expected);

        let empty_meta = Encoded::new(&json!({"kind": "X", "metadata": {}})).unwrap();
        let served: Value = serde_json::from_slice(&empty_meta.served(7)).unwrap();
        assert_eq!(
            served,
            json!({"kind": "X", "metadata": {"resourceVersion": "7"}})
        );
        let no_meta = Encoded::new(&json!({"kind": "X"})).unwrap();
        assert_eq!(no_meta.served(7), br#"{"kind":"X"}"#);
    }

    #[tokio::test]
    async fn active_namespaces_are_forgotten_on_every_namespace_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = skiff_store::RedbStore::open(&dir.path().join("db")).unwrap();
        let objects = Objects::new(Arc::new(store));
        let registry = Registry::builtin();
        let namespaces = registry.get("", "v1", "namespaces").unwrap();
        let configmaps = registry.get("", "v1", "configmaps").unwrap();
        let ns = |name: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});

        let generation = objects.namespace_generation();
        objects.remember_active_namespace("a", generation);
        assert!(objects.namespace_known_active("a"));
        assert!(!objects.namespace_known_active("b"));
        // Writes to other kinds change nothing.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "a"}});
        objects
            .create(configmaps, Some("a"), "c", cm)
            .await
            .unwrap();
        assert!(objects.namespace_known_active("a"));
        // A write to the namespace forgets it, and a read that started before the write is
        // not remembered.
        let stale = objects.namespace_generation();
        let created = objects
            .create(namespaces, None, "a", ns("a"))
            .await
            .unwrap();
        assert!(!objects.namespace_known_active("a"));
        objects.remember_active_namespace("a", stale);
        assert!(!objects.namespace_known_active("a"));
        objects.remember_active_namespace("a", objects.namespace_generation());
        assert!(objects.namespace_known_active("a"));
        let rv = parse_rv(meta_str(&created.object, "resourceVersion").unwrap()).unwrap();
        objects
            .delete(namespaces, None, "a", Some(rv))
            .await
            .unwrap();
        assert!(!objects.namespace_known_active("a"));
        // A failed write forgets it too (it may have raced with one that succeeded).
        objects.remember_active_namespace("a", objects.namespace_generation());
        assert!(objects.delete(namespaces, None, "a", None).await.is_err());
        assert!(!objects.namespace_known_active("a"));
    }

    #[test]
    fn raw_encoding_converts_views_of_other_versions() {
        let res = Registry::builtin()
            .get("events.k8s.io", "v1", "events")
            .unwrap();
        let stored = json!({"apiVersion": "v1", "kind": "Event", "message": "hi",
            "metadata": {"name": "e", "namespace": "default"}});
        let raw: Value = serde_json::from_slice(&raw_from_kv(res, &kv(&stored)).unwrap()).unwrap();
        assert_eq!(raw["note"], "hi");
        assert_eq!(raw["apiVersion"], "events.k8s.io/v1");
        assert_eq!(raw["metadata"]["resourceVersion"], "7");
    }
}
