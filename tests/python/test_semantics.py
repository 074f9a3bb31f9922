"""API semantics beyond CRUD: tokens, certificate reuse, 410 Gone, finalizers, dry run,
deletecollection, binding and field selectors, generateName."""

import json
import pathlib

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from conftest import Raw, Server

CMS = "/api/v1/namespaces/default/configmaps"


def test_bearer_tokens_from_the_token_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "tokens.csv").write_text('sekret-token,alice,1001,"dev,ops"\n')
    server = Server(data)
    try:
        raw = Raw(server, tmp_path)
        ok = raw.session.get(raw.base + "/api/v1/namespaces", verify=raw.verify, timeout=5,
                             headers={"Authorization": "Bearer sekret-token"})
        assert ok.status_code == 200, ok.text
        bad = raw.session.get(raw.base + "/api/v1/namespaces", verify=raw.verify, timeout=5,
                              headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.json()["reason"] == "Unauthorized"
    finally:
        server.stop()


def test_restart_reuses_certificates_and_keeps_objects(tmp_path):
    data = tmp_path / "data"
    server = Server(data)
    ca_before = (data / "pki" / "ca.crt").read_bytes()
    api = server.api_client()
    client.CoreV1Api(api).create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept"), data={"a": "1"})
    )
    server.stop()
    server = Server(data)
    try:
        assert (data / "pki" / "ca.crt").read_bytes() == ca_before
        core = client.CoreV1Api(server.api_client())
        assert core.read_namespaced_config_map("kept", "default").data == {"a": "1"}
    finally:
        server.stop()


def test_watch_from_a_compacted_version_is_gone(tmp_path):
    data = tmp_path / "data"
    server = Server(data)
    core = client.CoreV1Api(server.api_client())
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
    old_rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="b")))
    server.stop()
    # After a restart the history is gone: watching from before it must say 410 Gone so that
    # clients re-list instead of missing events.
    server = Server(data)
    try:
        core = client.CoreV1Api(server.api_client())
        with pytest.raises(ApiException) as err:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                          resource_version=str(int(old_rv) - 1), timeout_seconds=5):
                pass
        assert err.value.status == 410
    finally:
        server.stop()


def test_finalizers_hold_deletion_until_removed(api):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="held", finalizers=["example.com/hold"])))
    core.delete_namespaced_config_map("held", "default")
    held = core.read_namespaced_config_map("held", "default")
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as err:  # no new finalizers while deleting
        core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": ["example.com/hold", "x/y"]}})
    assert err.value.status in (403, 422)
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("held", "default")
    assert err.value.status == 404


def test_dry_run_stores_nothing(api):
    core = client.CoreV1Api(api)
    out = core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dry")), dry_run="All")
    assert out.metadata.name == "dry"
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("dry", "default")
    assert err.value.status == 404
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="real")))
    core.delete_namespaced_config_map("real", "default", dry_run="All")
    assert core.read_namespaced_config_map("real", "default").metadata.name == "real"


def test_delete_collection_with_selector(api):
    core = client.CoreV1Api(api)
    for name, tier in [("a", "x"), ("b", "x"), ("c", "y")]:
        core.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels={"tier": tier})))
    core.delete_collection_namespaced_config_map("default", label_selector="tier=x")
    left = sorted(c.metadata.name for c in core.list_namespaced_config_map("default").items)
    assert left == ["c"]


def test_generate_name_binding_and_pod_field_selectors(api):
    core = client.CoreV1Api(api)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(generate_name="worker-"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
    )
    created = core.create_namespaced_pod("default", pod)
    name = created.metadata.name
    assert name.startswith("worker-") and len(name) == len("worker-") + 5
    assert created.status.phase == "Pending"
    assert created.spec.restart_policy == "Always" and created.spec.dns_policy == "ClusterFirst"
    assert created.spec.termination_grace_period_seconds == 30
    unbound = core.list_namespaced_pod("default", field_selector="spec.nodeName=")
    assert [p.metadata.name for p in unbound.items] == [name]
    core.create_namespaced_pod_binding(name, "default", client.V1Binding(
        metadata=client.V1ObjectMeta(name=name), target=client.V1ObjectReference(kind="Node", name="node-1")),
        _preload_content=False)
    bound = core.read_namespaced_pod(name, "default")
    assert bound.spec.node_name == "node-1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in bound.status.conditions)
    on_node = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-1")
    assert [p.metadata.name for p in on_node.items] == [name]
    pending = core.list_namespaced_pod("default", field_selector="status.phase=Pending")
    assert [p.metadata.name for p in pending.items] == [name]
    with pytest.raises(ApiException) as err:  # a pod binds once
        core.create_namespaced_pod_binding(name, "default", client.V1Binding(
            metadata=client.V1ObjectMeta(name=name), target=client.V1ObjectReference(kind="Node", name="node-2")),
            _preload_content=False)
    assert err.value.status == 409
    # A bound pod is deleted gracefully: it stays, marked, until its node finishes the delete.
    core.delete_namespaced_pod(name, "default")
    marked = core.read_namespaced_pod(name, "default")
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod(name, "default", grace_period_seconds=0)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod(name, "default")
    assert err.value.status == 404


def test_status_subresource_only_changes_status(api):
    apps = client.AppsV1Api(api)
    labels = {"app": "s"}
    apps.create_namespaced_deployment("default", client.V1Deployment(
        metadata=client.V1ObjectMeta(name="s"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=labels),
                                              spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")])))))
    apps.patch_namespaced_deployment_status("s", "default", {"status": {"replicas": 4, "observedGeneration": 1}, "spec": {"replicas": 9}})
    d = apps.read_namespaced_deployment("s", "default")
    assert d.status.replicas == 4 and d.status.observed_generation == 1
    assert d.spec.replicas == 1, "spec is not writable through /status"
    apps.patch_namespaced_deployment("s", "default", {"status": {"replicas": 0}, "spec": {"replicas": 2}})
    d = apps.read_namespaced_deployment("s", "default")
    assert d.status.replicas == 4, "status is not writable through the main resource"
    assert d.spec.replicas == 2 and d.metadata.generation == 2


def test_no_creates_in_a_terminating_namespace(api):
    """Namespace lifecycle, right after the namespace was used (the server remembers active
    namespaces for a moment) and right after it starts terminating."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    cm = lambda name: client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))  # noqa: E731
    core.create_namespaced_config_map("doomed", cm("before"))
    # No namespace controller runs in this server: the namespace stays Terminating.
    core.delete_namespace("doomed")
    assert core.read_namespace("doomed").status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("doomed", cm("after"))
    assert err.value.status == 403
    body = json.loads(err.value.body)
    assert "because it is being terminated" in body["message"]
    assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    assert [c.metadata.name for c in core.list_namespaced_config_map("doomed").items] == ["before"]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("never-made", cm("x"))
    assert err.value.status == 404
