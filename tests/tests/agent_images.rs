//! Images through pods on a real node: hostile layers (`../` entries, symlink and hard-link
//! escapes) and a blob that lies about its digest leave the pod waiting with an event that
//! names the layer and the reason, and nothing lands outside the agent's store; an image that
//! does not exist goes `ErrImagePull` then `ImagePullBackOff`; pull secrets open a registry
//! that requires auth; `imagePullPolicy: Never` gives `ErrImageNeverPull`; and a node without
//! the `nft` binary still goes Ready and runs pods.
//!
//! Needs root, busybox-static, nginx-light, docker-registry, skopeo and apache2-utils; without
//! them the tests say so and pass without running.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use skiff_tests::eventually;
use skiff_tests::images::{self, tiny_image};
use skiff_tests::nodes::{Cluster, ClusterOptions, busybox_pod, can_run_agents};

/// A pod running `image` (no command: the image's own) on `node`.
fn image_pod(name: &str, node: &str, image: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, 'sleep 3600']\n"
    )
}

/// The waiting reason of a pod's first container (or "" if it has none).
fn waiting_reason(c: &Cluster, pod: &str) -> String {
    c.container_status(pod)["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn hostile_and_missing_images_leave_pods_waiting() {
    if !can_run_agents() {
        return;
    }
    let c = Cluster::start(ClusterOptions::default());
    let node = c.agents[0].name.clone();
    let sentinel = c.temp.path().join("sentinel");
    std::fs::create_dir_all(&sentinel).expect("sentinel dir");
    std::fs::write(sentinel.join("keep"), "precious\n").expect("keep file");

    let dotdot = images::hostile_dotdot_image(&sentinel);
    c.registry.push(&dotdot, "library/dotdot:latest");
    let symlink = images::hostile_symlink_image(&sentinel);
    c.registry.push(&symlink, "library/symlink:latest");
    let hardlink = images::hostile_hardlink_image(&sentinel);
    c.registry.push(&hardlink, "library/hardlink:latest");
    let corrupt = tiny_image("the registry will flip a byte of this layer");
    c.registry.push(&corrupt, "library/corrupt:latest");
    c.registry.corrupt_blob(&corrupt.layer_digests[0]);

    for name in ["dotdot", "symlink", "hardlink", "corrupt", "missing"] {
        c.apply(&image_pod(name, &node, name, ""));
    }

    // Each hostile image: a Failed event naming the layer (by digest) and why it was refused.
    let cases = [
        ("dotdot", &dotdot, "refused layer entry"),
        ("symlink", &symlink, "refused layer entry"),
        ("hardlink", &hardlink, "refused layer entry"),
        ("corrupt", &corrupt, "refused: its content hashes to"),
    ];
    for (pod, image, why) in cases {
        let ev = c.wait_event(
            pod,
            "Failed",
            "Failed to pull image",
            Duration::from_secs(40),
        );
        assert!(
            ev.contains(&image.layer_digests[0]) && ev.contains(why),
            "{pod}: the event should name layer {} and say {why:?}: {ev}",
            image.layer_digests[0]
        );
        let reason = eventually(Duration::from_secs(10), "a waiting reason", || {
            let r = waiting_reason(&c, pod);
            (!r.is_empty()).then_some(r)
        });
        assert!(
            reason == "ErrImagePull" || reason == "ImagePullBackOff",
            "{pod}: {reason}"
        );
        let msg = c.container_status(pod)["state"]["waiting"]["message"].clone();
        assert!(
            msg.as_str()
                .is_some_and(|m| m.contains(&image.layer_digests[0])),
            "{pod}: waiting message {msg}"
        );
        assert_ne!(c.pod_status(pod)["phase"], "Running");
    }

    // A missing image: ErrImagePull first, then ImagePullBackOff, in `kubectl get pod`.
    let mut seen = BTreeSet::new();
    eventually(
        Duration::from_secs(40),
        "missing: ErrImagePull then ImagePullBackOff",
        || {
            if let Some(status) = c.pod_row("missing").get(2) {
                seen.insert(status.clone());
            }
            seen.contains("ImagePullBackOff").then_some(())
        },
    );
    assert!(seen.contains("ErrImagePull"), "{seen:?}");
    let ev = c.wait_event(
        "missing",
        "Failed",
        "Failed to pull image \"missing\"",
        Duration::from_secs(5),
    );
    assert!(ev.contains("not found"), "{ev}");
    c.wait_event(
        "missing",
        "BackOff",
        "Back-off pulling image",
        Duration::from_secs(5),
    );

    // Nothing was written outside the store.
    let left: Vec<String> = std::fs::read_dir(&sentinel)
        .expect("sentinel")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["keep"], "files appeared next to the sentinel");
    let keep = std::fs::metadata(sentinel.join("keep")).expect("keep");
    assert_eq!(keep.nlink(), 1, "the hard link reached the host file");
    assert_eq!(
        std::fs::read_to_string(sentinel.join("keep")).unwrap_or_default(),
        "precious\n"
    );
    let tmp = c.agents[0].data.join("images/tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0),
        0,
        "half-unpacked layers left in {}",
        tmp.display()
    );
}

#[test]
fn pull_secrets_and_pull_policy_never() {
    if !can_run_agents() || !std::path::Path::new("/usr/bin/htpasswd").exists() {
        return;
    }
    let c = Cluster::start(ClusterOptions {
        registry_auth: Some(("skiff".into(), "hunter2".into())),
        ..ClusterOptions::default()
    });
    let node = c.agents[0].name.clone();
    c.server.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        "--docker-username=skiff",
        "--docker-password=hunter2",
    ]);
    let secrets = "  imagePullSecrets: [{name: regcred}]\n";
    c.apply(&image_pod("authed", &node, "busybox", secrets));
    eventually(Duration::from_secs(40), "authed Running", || {
        (c.pod_status("authed")["phase"] == "Running").then_some(())
    });
    c.wait_event(
        "authed",
        "Pulling",
        "Pulling image \"busybox\"",
        Duration::from_secs(5),
    );
    c.wait_event(
        "authed",
        "Pulled",
        "Successfully pulled image \"busybox\"",
        Duration::from_secs(5),
    );

    // Without the secret the registry says no, even though the image is on the node (the
    // policy for `:latest` is Always).
    c.apply(&image_pod("anonymous", &node, "busybox", ""));
    let ev = c.wait_event(
        "anonymous",
        "Failed",
        "Failed to pull image",
        Duration::from_secs(30),
    );
    assert!(
        ev.to_lowercase().contains("not authorized") || ev.contains("401"),
        "{ev}"
    );
    eventually(Duration::from_secs(10), "anonymous ErrImagePull", || {
        let r = waiting_reason(&c, "anonymous");
        (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(())
    });

    // Never: a present image runs, a missing one is ErrImageNeverPull.
    let never = "    imagePullPolicy: Never\n";
    let present = image_pod("never-present", &node, "busybox", "");
    c.apply(&format!("{present}{never}"));
    let absent = image_pod("never-absent", &node, "nginx", "");
    c.apply(&format!("{absent}{never}"));
    eventually(Duration::from_secs(30), "never-present Running", || {
        (c.pod_status("never-present")["phase"] == "Running").then_some(())
    });
    eventually(
        Duration::from_secs(30),
        "never-absent ErrImageNeverPull",
        || {
            let row = c.pod_row("never-absent");
            (row.get(2).map(String::as_str) == Some("ErrImageNeverPull")).then_some(())
        },
    );
    c.wait_event(
        "never-absent",
        "Failed",
        "pull policy is Never",
        Duration::from_secs(5),
    );
}

#[test]
fn a_node_without_nft_binary_gets_outbound_nat_and_runs_pods() {
    if !can_run_agents() {
        return;
    }
    // No `nft` on the PATH, as on the appliance.
    let c = Cluster::start(ClusterOptions {
        agent_env: vec![("PATH".into(), "/nonexistent".into())],
        ..ClusterOptions::default()
    });
    let node = c.agents[0].name.clone();
    c.apply(&busybox_pod("web", &node, "httpd -f -p 80 -h /etc", "", ""));
    let ip = eventually(Duration::from_secs(40), "web Running with an IP", || {
        let st = c.pod_status("web");
        (st["phase"] == "Running").then(|| st["podIP"].as_str().map(str::to_owned))?
    });
    // The node reaches its pod.
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.hosts.netns[0],
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
        ])
        .arg(format!("http://{ip}/passwd"))
        .output()
        .expect("wget from the node");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("root:x:0:0"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Outbound NAT needs no `nft` binary: the agent sends the nf_tables batch itself.
    assert!(
        !c.agents[0].logs().contains("no outbound NAT for pods"),
        "{}",
        c.agents[0].logs()
    );
    let table = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.hosts.netns[0],
            "nft",
            "list",
            "table",
            "ip",
            "skiff",
        ])
        .output()
        .expect("nft list table");
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("masquerade"), "{table}");
}
