"""The official Python client (kubernetes 32.x) against `skiff server`."""

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def deployment(name, replicas=2, image="nginx:1.25"):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="web", image=image, ports=[client.V1ContainerPort(container_port=80)])]
                ),
            ),
        ),
    )


def test_namespaces_and_version(api):
    core = client.CoreV1Api(api)
    names = {ns.metadata.name for ns in core.list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= names
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
    assert core.read_namespace("py").status.phase == "Active"
    info = client.VersionApi(api).get_code()
    assert (info.major, info.minor) == ("1", "32")


def test_deployment_crud_scale_patch_and_delete(api):
    apps = client.AppsV1Api(api)
    created = apps.create_namespaced_deployment("default", deployment("web"))
    assert created.metadata.uid
    assert created.spec.strategy.type == "RollingUpdate"
    assert created.metadata.generation == 1

    listed = apps.list_namespaced_deployment("default", label_selector="app=web")
    assert [d.metadata.name for d in listed.items] == ["web"]
    assert apps.list_namespaced_deployment("default", label_selector="app=other").items == []

    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 5}})
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 5
    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert scale.spec.replicas == 5 and scale.status.selector == "app=web"

    d = apps.read_namespaced_deployment("web", "default")
    d.spec.template.spec.containers[0].image = "nginx:1.26"
    replaced = apps.replace_namespaced_deployment("web", "default", d)
    assert replaced.spec.template.spec.containers[0].image == "nginx:1.26"
    assert replaced.metadata.generation == 3

    # The stale object from before the replace now conflicts.
    d.spec.replicas = 1
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment("web", "default", d)
    assert err.value.status == 409

    apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"team": "py"}}})
    assert apps.read_namespaced_deployment("web", "default").metadata.labels["team"] == "py"

    apps.delete_namespaced_deployment("web", "default")
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("web", "default")
    assert err.value.status == 404


def test_configmaps_secrets_and_services(api):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"k": "v"})
    )
    core.create_namespaced_secret(
        "default", client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"pw": "x"})
    )
    svc = core.create_namespaced_service(
        "default",
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(selector={"app": "web"}, ports=[client.V1ServicePort(port=80)], type="NodePort"),
        ),
    )
    assert svc.spec.cluster_ip.startswith("10.")
    assert 30000 <= svc.spec.ports[0].node_port <= 32767
    assert svc.spec.ports[0].target_port == 80
    assert core.read_namespaced_config_map("cfg", "default").data == {"k": "v"}
    assert core.read_namespaced_secret("s", "default").type == "Opaque"
    got = core.list_namespaced_config_map("default", field_selector="metadata.name=cfg")
    assert [c.metadata.name for c in got.items] == ["cfg"]


def test_watch_sees_changes(api):
    """The same changes through a plain watch (served from the stored bytes) and through a
    label-selected one (decoded and filtered): same types, names, versions and data."""
    core = client.CoreV1Api(api)
    seen = {"plain": [], "selected": []}
    done = {k: threading.Event() for k in seen}

    def watcher(key, **kw):
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=20, **kw):
            o = ev["object"]
            seen[key].append((ev["type"], o.metadata.name, o.metadata.resource_version, o.data))
            if ev["type"] == "DELETED" and o.metadata.name == "w1":
                w.stop()
                break
        done[key].set()

    for key, kw in (("plain", {}), ("selected", {"label_selector": "app=w"})):
        threading.Thread(target=watcher, args=(key,), kwargs=kw, daemon=True).start()
    time.sleep(0.5)
    created = core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w1", labels={"app": "w"})))
    patched = core.patch_namespaced_config_map("w1", "default", {"data": {"a": "1"}})
    core.delete_namespaced_config_map("w1", "default")
    for key in seen:
        assert done[key].wait(20), f"{key} watch did not finish: {seen[key]}"
    expected = [
        ("ADDED", "w1", created.metadata.resource_version, None),
        ("MODIFIED", "w1", patched.metadata.resource_version, {"a": "1"}),
    ]
    for key, events in seen.items():
        mine = [e for e in events if e[1] == "w1"]
        assert mine[:2] == expected, key
        assert [e[0] for e in mine] == ["ADDED", "MODIFIED", "DELETED"], key
        assert int(mine[2][2]) > int(patched.metadata.resource_version), key


def test_watch_from_resource_version(api):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="b")))
    w = watch.Watch()
    seen = []
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5):
        seen.append((ev["type"], ev["object"].metadata.name))
        break
    assert seen == [("ADDED", "b")]


def test_errors(api):
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("missing", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="Not_Valid")))
    assert err.value.status == 422
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup")))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup")))
    assert err.value.status == 409


def test_anonymous_requests_are_refused(server):
    import requests  # installed with the kubernetes client
    from kubernetes import config as kconfig

    cfg = client.Configuration()
    kconfig.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    r = requests.get(cfg.host + "/api/v1/namespaces", verify=cfg.ssl_ca_cert, timeout=5)
    assert r.status_code == 401
    assert r.json()["reason"] == "Unauthorized"
    health = requests.get(cfg.host + "/healthz", verify=cfg.ssl_ca_cert, timeout=5)
    assert health.status_code == 200 and health.text == "ok"
