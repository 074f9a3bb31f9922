//! Admission of pods on create: what kube-apiserver's ServiceAccount plugin does.
//!
//! A new pod runs as a service account (`default` unless it names one), which must exist; it
//! inherits the account's image pull secrets when it names none; and unless
//! `automountServiceAccountToken` says no (the pod's field wins over the account's) every
//! container gets a read-only `kube-api-access-XXXXX` projected volume at
//! [`TOKEN_MOUNT_PATH`]: a bound token, the cluster CA from `kube-root-ca.crt` and the
//! namespace, which is what in-cluster clients read.
//!
//! The `default` account is made by the controllers shortly after its namespace, so a lookup
//! of it is retried for about a second, as kube-apiserver does, before the create is refused.
//! A server that runs no controllers (`--no-controllers`) never gets one: there a pod whose
//! `default` account is missing is admitted with `serviceAccountName: default` and no token
//! volume. Mirror pods are only checked, never changed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::handlers::Api;
use crate::status::ApiError;

/// Where in-cluster clients look for the token, `ca.crt` and `namespace`.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const DEFAULT_ACCOUNT: &str = "default";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The token lifetime kube-apiserver asks for in the volumes it adds (one hour and a bit,
/// so the lifetime is recognisable as the admission's).
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// Lookups of a missing `default` account, and the pause between them.
const DEFAULT_ACCOUNT_ATTEMPTS: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_millis(150);

const CONTAINER_LISTS: [&str; 3] = ["initContainers", "containers", "ephemeralContainers"];

/// Admit a pod being created in `ns`: default its service account, add the token volume,
/// copy pull secrets. `display_name` names the pod in errors.
pub async fn admit_pod_create(
    api: &Api,
    ns: &str,
    display_name: &str,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if is_mirror(pod) {
        return check_mirror(pod, display_name);
    }
    let account = default_service_account(pod);
    let forbidden = |reason: String| {
        forbidden(
            display_name,
            &format!("error looking up service account {ns}/{account}: {reason}"),
        )
    };
    let Some(sa) = lookup(api, ns, &account)
        .await
        .map_err(|e| forbidden(e.message))?
    else {
        if account == DEFAULT_ACCOUNT && !api.default_service_accounts.load(Ordering::Relaxed) {
            return Ok(());
        }
        return Err(forbidden(format!("serviceaccount \"{account}\" not found")));
    };
    if should_automount(&sa, pod) {
        mount_token(pod, &random_suffix());
    }
    copy_pull_secrets(&sa, pod);
    Ok(())
}

/// The account, retried a while when it is the `default` one the controllers will make.
async fn lookup(api: &Api, ns: &str, name: &str) -> Result<Option<Value>, ApiError> {
    let res = api
        .registry
        .get("", "v1", "serviceaccounts")
        .ok_or_else(|| ApiError::internal("serviceaccounts are not registered"))?;
    let attempts =
        if name == DEFAULT_ACCOUNT && api.default_service_accounts.load(Ordering::Relaxed) {
            DEFAULT_ACCOUNT_ATTEMPTS
        } else {
            1
        };
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        if let Some(sa) = api.objects.get(res, Some(ns), name).await? {
            return Ok(Some(sa));
        }
    }
    Ok(None)
}

/// `pods "NAME" is forbidden: MESSAGE`, as admission plugins refuse.
fn forbidden(name: &str, message: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("pods \"{name}\" is forbidden: {message}"));
    e.details = Some(json!({"name": name, "kind": "pods"}));
    e
}

fn spec_mut(pod: &mut Value) -> &mut Map<String, Value> {
    if !pod.get("spec").is_some_and(Value::is_object) {
        pod["spec"] = json!({});
    }
    pod["spec"]
        .as_object_mut()
        .expect("spec was just made an object")
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// Mirror pods (the API's copies of a node's static pods) may not use the API's secrets.
fn check_mirror(pod: &Value, name: &str) -> Result<(), ApiError> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let named = |key: &str| {
        spec.get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if named("serviceAccountName") || named("serviceAccount") {
        return Err(forbidden(
            name,
            "a mirror pod may not reference service accounts",
        ));
    }
    for vol in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if vol.get("secret").is_some() {
            return Err(forbidden(name, "a mirror pod may not reference secrets"));
        }
        let sources = vol
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for source in sources {
            if source.get("secret").is_some() {
                return Err(forbidden(name, "a mirror pod may not reference secrets"));
            }
            if source.get("serviceAccountToken").is_some() {
                return Err(forbidden(
                    name,
                    "a mirror pod may not use ServiceAccountToken volume projections",
                ));
            }
        }
    }
    Ok(())
}

/// Set `serviceAccountName` (and its deprecated alias) to `default` when empty; the name.
fn default_service_account(pod: &mut Value) -> String {
    let spec = spec_mut(pod);
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string();
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    name
}

/// The pod's `automountServiceAccountToken` wins, then the account's; unset means yes.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// The projected volume kube-apiserver adds: bound token, cluster CA, namespace.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Mount the token volume in every container that has nothing at [`TOKEN_MOUNT_PATH`]; add
/// the volume (named `kube-api-access-SUFFIX`, or the existing one of that prefix) if any did.
fn mount_token(pod: &mut Value, suffix: &str) {
    let spec = spec_mut(pod);
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in CONTAINER_LISTS {
        let containers = spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten();
        for c in containers {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                mounted = true;
            }
        }
    }
    if mounted && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(token_volume(&volume_name));
        }
    }
}

/// A pod that names no image pull secrets gets its account's.
fn copy_pull_secrets(sa: &Value, pod: &mut Value) {
    let spec = spec_mut(pod);
    if spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return;
    }
    let from_sa: Vec<Value> = sa
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .map(|n| json!({"name": n}))
        .collect();
    if !from_sa.is_empty() {
        spec.insert("imagePullSecrets".into(), Value::Array(from_sa));
    }
}

/// Five characters from the alphabet Kubernetes uses for generated names.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().into_bytes()[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "a", "image": "busybox"},
                    {"name": "b", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
                ],
            },
        })
    }

    #[test]
    fn service_account_defaults_to_default_and_mirrors() {
        let mut p = pod();
        assert_eq!(default_service_account(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut p = pod();
        p["spec"]["serviceAccountName"] = json!("builder");
        assert_eq!(default_service_account(&mut p), "builder");
        assert_eq!(p["spec"]["serviceAccount"], "builder");
    }

    #[test]
    fn automount_pod_field_wins_over_account() {
        let sa_off = json!({"automountServiceAccountToken": false});
        let sa_on = json!({"automountServiceAccountToken": true});
        let sa_unset = json!({});
        let mut p = pod();
        assert!(should_automount(&sa_unset, &p));
        assert!(should_automount(&sa_on, &p));
        assert!(!should_automount(&sa_off, &p));
        p["spec"]["automountServiceAccountToken"] = json!(true);
        assert!(should_automount(&sa_off, &p));
        p["spec"]["automountServiceAccountToken"] = json!(false);
        assert!(!should_automount(&sa_on, &p));
    }

    #[test]
    fn token_volume_is_mounted_where_the_path_is_free() {
        let mut p = pod();
        mount_token(&mut p, "x7k2q");
        let volumes = p["spec"]["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0], token_volume("kube-api-access-x7k2q"));
        assert_eq!(
            volumes[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let want = json!({"name": "kube-api-access-x7k2q", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([want])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([want]));
        // The container that mounts its own volume there keeps only that.
        let b = p["spec"]["containers"][1]["volumeMounts"]
            .as_array()
            .expect("mounts");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["name"], "mine");
    }

    #[test]
    fn no_volume_when_every_container_has_its_own_mount() {
        let mut p = json!({"spec": {"containers": [
            {"name": "a", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
        ]}});
        mount_token(&mut p, "abcde");
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn an_existing_kube_api_access_volume_is_reused() {
        let mut p = json!({"spec": {
            "volumes": [{"name": "kube-api-access-old11", "emptyDir": {}}],
            "containers": [{"name": "a"}],
        }});
        mount_token(&mut p, "new22");
        assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-old11"
        );
    }

    #[test]
    fn pull_secrets_come_from_the_account_only_when_the_pod_names_none() {
        let sa = json!({"imagePullSecrets": [{"name": "reg"}]});
        let mut p = pod();
        copy_pull_secrets(&sa, &mut p);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
        let mut p = pod();
        p["spec"]["imagePullSecrets"] = json!([{"name": "own"}]);
        copy_pull_secrets(&sa, &mut p);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "own"}]));
        let mut p = pod();
        copy_pull_secrets(&json!({}), &mut p);
        assert!(p["spec"].get("imagePullSecrets").is_none());
    }

    #[test]
    fn mirror_pods_may_not_use_accounts_or_secrets() {
        let mirror = |spec: Value| json!({"metadata": {"annotations": {MIRROR_ANNOTATION: "x"}}, "spec": spec});
        assert!(is_mirror(&mirror(json!({}))));
        assert!(!is_mirror(&pod()));
        assert!(check_mirror(&mirror(json!({"containers": []})), "m").is_ok());
        let e =
            check_mirror(&mirror(json!({"serviceAccountName": "sa"})), "m").expect_err("account");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"m\" is forbidden: a mirror pod may not reference service accounts"
        );
        let e = check_mirror(
            &mirror(json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]})),
            "m",
        )
        .expect_err("secret");
        assert!(e.message.ends_with("may not reference secrets"));
        let e = check_mirror(
            &mirror(json!({"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]})),
            "m",
        )
        .expect_err("token");
        assert!(
            e.message
                .ends_with("ServiceAccountToken volume projections")
        );
    }

    async fn api(dir: &tempfile::TempDir) -> Api {
        let store = skiff_store::RedbStore::open(&dir.path().join("db")).expect("store");
        Api::new(
            std::sync::Arc::new(store),
            "https://127.0.0.1:6443".into(),
            (std::net::Ipv4Addr::new(10, 96, 0, 0), 12),
        )
    }

    #[tokio::test]
    async fn missing_accounts_are_refused_or_skipped_as_documented() {
        let dir = tempfile::tempdir().expect("temp dir");
        let api = api(&dir).await;
        // No controllers: a missing `default` account admits the pod without a token.
        let mut p = pod();
        admit_pod_create(&api, "ns", "p", &mut p)
            .await
            .expect("admitted");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert!(p["spec"].get("volumes").is_none());
        // A named account that does not exist is refused either way.
        let mut p = pod();
        p["spec"]["serviceAccountName"] = json!("bot");
        let e = admit_pod_create(&api, "ns", "p", &mut p)
            .await
            .expect_err("no bot");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: error looking up service account ns/bot: serviceaccount \"bot\" not found"
        );
        // With controllers the `default` account is waited for, then required.
        api.expect_default_service_accounts();
        let started = std::time::Instant::now();
        let e = admit_pod_create(&api, "ns", "p", &mut pod())
            .await
            .expect_err("no default");
        assert!(started.elapsed() >= RETRY_PAUSE * (DEFAULT_ACCOUNT_ATTEMPTS - 1));
        assert!(e.message.ends_with("serviceaccount \"default\" not found"));
        // Once it exists, pods get the token volume.
        let res = api
            .registry
            .get("", "v1", "serviceaccounts")
            .expect("registered");
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "ns"}});
        api.objects
            .create(res, Some("ns"), "default", sa)
            .await
            .expect("stored");
        let mut p = pod();
        admit_pod_create(&api, "ns", "p", &mut p)
            .await
            .expect("admitted");
        let name = p["spec"]["volumes"][0]["name"].as_str().expect("volume");
        assert!(name.starts_with(VOLUME_PREFIX), "{name}");
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][0]["name"], name);
    }

    #[test]
    fn suffixes_use_the_generated_name_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(
            s.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
    }
}
