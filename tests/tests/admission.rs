//! ServiceAccount admission through stock kubectl: a new pod gets the `default` account and a
//! `kube-api-access-XXXXX` projected volume mounted in every container, `automountServiceAccountToken`
//! turns that off (the pod's field over the account's), a missing account is refused with
//! kube-apiserver's message, the account's image pull secrets are copied, and a pod in a brand
//! new namespace waits for the controllers' `default` account instead of failing.

use serde_json::{Value, json};
use skiff_tests::Server;

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn pod_json(s: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&s.ok(&all)).expect("pod json")
}

fn busybox(name: &str, extra_spec: Value) -> String {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "main", "image": "busybox"}],
        },
    });
    if let (Some(spec), Some(extra)) = (pod["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    pod.to_string()
}

fn token_volumes(pod: &Value) -> Vec<Value> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
        .cloned()
        .collect()
}

#[test]
fn pods_get_the_default_account_and_a_token_volume() {
    let s = Server::start();
    // Created at once, before the controllers are sure to have made `default`: admission
    // waits for it.
    s.ok(&["create", "namespace", "fresh"]);
    s.ok_stdin(
        &["create", "-n", "fresh", "-f", "-"],
        &busybox("p", json!({})),
    );
    let pod = pod_json(&s, &["get", "pod", "-n", "fresh", "p"]);
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    assert_eq!(pod["spec"]["serviceAccount"], "default");
    let vols = token_volumes(&pod);
    assert_eq!(vols.len(), 1, "{pod}");
    let name = vols[0]["name"].as_str().expect("name").to_string();
    let suffix = name.trim_start_matches("kube-api-access-");
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(
        vols[0]["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        })
    );
    let want = json!([{"name": name, "readOnly": true, "mountPath": MOUNT}]);
    assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], want);
    assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"], want);
    // The fields admission added belong to no manager.
    let managed = pod["metadata"]["managedFields"].to_string();
    assert!(!managed.contains("f:serviceAccountName"), "{managed}");
    assert!(!managed.contains("f:volumes"), "{managed}");

    // A server-side dry run is admitted the same way and stores nothing.
    let dry = s.ok_stdin(
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &busybox("dry", json!({})),
    );
    let dry: Value = serde_json::from_str(&dry).expect("dry-run json");
    assert_eq!(token_volumes(&dry).len(), 1, "{dry}");
    assert!(!s.kubectl(&["get", "pod", "dry"]).status.success());

    // A container with its own volume at the path keeps it; the others get the token.
    let own = json!({
        "volumes": [{"name": "mine", "emptyDir": {}}],
        "containers": [
            {"name": "main", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": MOUNT}]},
            {"name": "side", "image": "busybox"},
        ],
    });
    s.ok_stdin(&["create", "-f", "-"], &busybox("own", own));
    let pod = pod_json(&s, &["get", "pod", "own"]);
    assert_eq!(token_volumes(&pod).len(), 1);
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "mine", "mountPath": MOUNT}])
    );
    assert_eq!(
        pod["spec"]["containers"][1]["volumeMounts"][0]["mountPath"],
        MOUNT
    );
}

#[test]
fn automount_missing_accounts_and_pull_secrets() {
    let s = Server::start();
    // A named account that does not exist is refused, as kube-apiserver does.
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        &busybox("ghost", json!({"serviceAccountName": "nobody"})),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pods \"ghost\" is forbidden: error looking up service account default/nobody: serviceaccount \"nobody\" not found"
        ),
        "{err}"
    );

    // The account says no: no volume, unless the pod says yes.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "quiet"},
            "automountServiceAccountToken": false,
            "imagePullSecrets": [{"name": "registry-creds"}],
        })
        .to_string(),
    );
    s.ok_stdin(
        &["create", "-f", "-"],
        &busybox("q1", json!({"serviceAccountName": "quiet"})),
    );
    let pod = pod_json(&s, &["get", "pod", "q1"]);
    assert!(token_volumes(&pod).is_empty(), "{pod}");
    assert!(pod["spec"]["containers"][0]["volumeMounts"].is_null());
    assert_eq!(
        pod["spec"]["imagePullSecrets"],
        json!([{"name": "registry-creds"}])
    );
    s.ok_stdin(
        &["create", "-f", "-"],
        &busybox(
            "q2",
            json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true,
                   "imagePullSecrets": [{"name": "own"}]}),
        ),
    );
    let pod = pod_json(&s, &["get", "pod", "q2"]);
    assert_eq!(token_volumes(&pod).len(), 1, "{pod}");
    assert_eq!(pod["spec"]["imagePullSecrets"], json!([{"name": "own"}]));

    // The pod says no while the account would mount.
    s.ok_stdin(
        &["create", "-f", "-"],
        &busybox("q3", json!({"automountServiceAccountToken": false})),
    );
    let pod = pod_json(&s, &["get", "pod", "q3"]);
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    assert!(token_volumes(&pod).is_empty(), "{pod}");

    // Updates are not admitted again: the volume stays as created.
    let before = pod_json(&s, &["get", "pod", "q2"]);
    s.ok(&["label", "pod", "q2", "touched=yes"]);
    let after = pod_json(&s, &["get", "pod", "q2"]);
    assert_eq!(before["spec"], after["spec"]);
}
