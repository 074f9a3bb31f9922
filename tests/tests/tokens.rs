//! Service-account tokens and the self-subject reviews through stock kubectl: `kubectl create
//! token`, the token as a bearer credential (`--token`), `kubectl auth whoami` and `auth can-i`,
//! and the cases a token must stop working (deleted account, deleted bound pod, wrong audience,
//! tampering). The signing key survives a restart.

use std::time::Duration;

use skiff_tests::{Server, eventually};

/// Wait for the namespace controller's `default` ServiceAccount.
fn wait_default_sa(s: &Server) {
    eventually(Duration::from_secs(30), "default service account", || {
        s.kubectl(&["get", "serviceaccount", "default"])
            .status
            .success()
            .then_some(())
    });
}

fn token(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend(args);
    s.ok(&all).trim().to_string()
}

/// `kubectl --token TOKEN args...` output (stdout on success, stderr on failure).
fn with_token(s: &Server, token: &str, args: &[&str]) -> (bool, String) {
    let flag = format!("--token={token}");
    let mut all = vec![flag.as_str()];
    all.extend(args);
    let out = s.kubectl(&all);
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    (out.status.success(), text)
}

#[test]
fn create_token_authenticates_as_the_service_account() {
    let s = Server::start();
    wait_default_sa(&s);
    let t = token(&s, &["default"]);
    assert_eq!(t.split('.').count(), 3, "a JWT: {t}");

    let (ok, who) = with_token(&s, &t, &["auth", "whoami", "-o", "json"]);
    assert!(ok, "{who}");
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    let info = &who["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:default");
    let groups: Vec<&str> = info["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]
    );
    let sa_uid = s.ok(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(info["uid"], sa_uid.as_str());

    // The token reads the API like any other credential.
    let (ok, out) = with_token(&s, &t, &["get", "namespaces", "-o", "name"]);
    assert!(ok, "{out}");
    assert!(out.contains("namespace/kube-system"), "{out}");

    // Tampered, for another audience, or plain garbage: 401.
    let mut forged = t.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        forged,
        token(&s, &["default", "--audience", "vault"]),
        "eyJhbGciOiJub25lIn0.e30.".to_string(),
    ] {
        let (ok, out) = with_token(&s, &bad, &["get", "namespaces"]);
        assert!(!ok);
        assert!(out.contains("Unauthorized"), "{out}");
    }

    // Bad requests.
    let err = s.fails(&["create", "token", "nosuch"]);
    assert!(
        err.contains("serviceaccounts \"nosuch\" not found"),
        "{err}"
    );
    let err = s.fails(&["create", "token", "default", "--duration=1m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );

    // The key is on disk: a restarted server still accepts the token.
    let s = s.restart();
    let (ok, out) = with_token(&s, &t, &["auth", "whoami"]);
    assert!(ok, "after restart: {out}");
}

#[test]
fn tokens_die_with_their_service_account_and_bound_pod() {
    let s = Server::start();
    wait_default_sa(&s);
    s.ok(&["create", "serviceaccount", "bot"]);
    let t = token(&s, &["bot"]);
    assert!(with_token(&s, &t, &["auth", "whoami"]).0);
    // Deleted, then recreated under the same name: a new uid, so the old token is dead.
    s.ok(&["delete", "serviceaccount", "bot"]);
    let (ok, out) = with_token(&s, &t, &["auth", "whoami"]);
    assert!(!ok && out.contains("Unauthorized"), "{out}");
    s.ok(&["create", "serviceaccount", "bot"]);
    assert!(!with_token(&s, &t, &["auth", "whoami"]).0);

    // A token bound to a pod names the pod and dies with it.
    s.ok(&["run", "p", "--image=busybox", "--restart=Never"]);
    let err = s.fails(&[
        "create",
        "token",
        "bot",
        "--bound-object-kind=Pod",
        "--bound-object-name=p",
    ]);
    assert!(
        err.contains("different serviceaccount name"),
        "bot is not the pod's account: {err}"
    );
    let t = token(
        &s,
        &[
            "default",
            "--bound-object-kind=Pod",
            "--bound-object-name=p",
        ],
    );
    let (ok, who) = with_token(&s, &t, &["auth", "whoami", "-o", "json"]);
    assert!(ok, "{who}");
    let who: serde_json::Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"],
        serde_json::json!(["p"])
    );
    let err = s.fails(&[
        "create",
        "token",
        "default",
        "--bound-object-kind=Pod",
        "--bound-object-name=nopod",
    ]);
    assert!(err.contains("pods \"nopod\" not found"), "{err}");
    s.ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    eventually(Duration::from_secs(10), "pod gone", || {
        (!s.kubectl(&["get", "pod", "p"]).status.success()).then_some(())
    });
    let (ok, out) = with_token(&s, &t, &["auth", "whoami"]);
    assert!(!ok && out.contains("Unauthorized"), "{out}");
}

#[test]
fn auth_can_i_and_discovery() {
    let s = Server::start();
    assert_eq!(
        s.ok(&["auth", "can-i", "create", "deployments"]).trim(),
        "yes"
    );
    assert_eq!(
        s.ok(&["auth", "can-i", "get", "/healthz"]).trim(),
        "yes",
        "non-resource URLs too"
    );
    let list = s.ok(&["auth", "can-i", "--list"]);
    assert!(list.contains("*.*"), "{list}");
    let who = s.ok(&["auth", "whoami"]);
    assert!(who.contains("skiff-admin"), "{who}");
    let resources = s.ok(&["api-resources", "--verbs=create", "-o", "name"]);
    for r in [
        "selfsubjectreviews.authentication.k8s.io",
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
    ] {
        assert!(resources.lines().any(|l| l == r), "{r} in {resources}");
    }
    let jwks: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    let oidc: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/.well-known/openid-configuration"]))
            .unwrap();
    assert_eq!(
        oidc["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    // Every namespace carries the cluster CA for its pods.
    let ca = eventually(Duration::from_secs(30), "kube-root-ca.crt", || {
        let out = s.kubectl(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "kube-public",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let on_disk = std::fs::read_to_string(s.data_dir().join("pki/ca.crt")).unwrap();
    assert_eq!(ca, on_disk);
}
