"""Bad input gets a Kubernetes Status with the right code, and nothing stored changes."""

import json

import pytest

CMS = "/api/v1/namespaces/default/configmaps"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    },
}


def snapshot(raw):
    """Everything stored that the tests touch, with resource versions."""
    out = {}
    for path in (CMS, DEPLOYS, "/api/v1/namespaces"):
        r = raw.request("GET", path)
        assert r.status_code == 200
        out[path] = sorted((i["metadata"]["name"], i["metadata"]["resourceVersion"]) for i in r.json()["items"])
    return out


@pytest.fixture
def seeded(raw):
    assert raw.request("POST", CMS, json.dumps({"metadata": {"name": "keep"}, "data": {"a": "1"}})).status_code == 201
    assert raw.request("POST", DEPLOYS, json.dumps(DEPLOYMENT)).status_code == 201
    return snapshot(raw)


def status_of(r, code, reason):
    assert r.status_code == code, r.text
    body = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    assert body["message"], body
    return body


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b'{"metadata": {"name": "x"', "application/json"),
        (b"not json at all", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b"", "application/json"),
        (b"metadata: [unclosed", "application/yaml"),
        (b'{"metadata": {"name": 5}}', "application/json"),
        (b'{"metadata": {"name": "x"}, "data": {"a": 1}}', "application/json"),
    ],
)
def test_malformed_bodies_are_bad_requests(raw, seeded, body, content_type):
    status_of(raw.request("POST", CMS, body, content_type), 400, "BadRequest")
    assert snapshot(raw) == seeded


def test_wrong_types_in_a_deployment(raw, seeded):
    bad = json.loads(json.dumps(DEPLOYMENT))
    bad["metadata"]["name"] = "web2"
    bad["spec"]["replicas"] = "three"
    body = status_of(raw.request("POST", DEPLOYS, json.dumps(bad)), 400, "BadRequest")
    assert "Deployment" in body["message"]
    assert snapshot(raw) == seeded


def test_unsupported_media_type(raw, seeded):
    status_of(raw.request("POST", CMS, b"<xml/>", "application/xml"), 415, "UnsupportedMediaType")
    assert snapshot(raw) == seeded


def test_ten_megabyte_body_is_refused(raw, seeded):
    big = json.dumps({"metadata": {"name": "big"}, "data": {"a": "x" * (10 * 1024 * 1024)}})
    status_of(raw.request("POST", CMS, big), 413, "RequestEntityTooLarge")
    assert snapshot(raw) == seeded
    # The server is still healthy afterwards.
    assert raw.request("GET", "/readyz").status_code == 200


def test_unknown_resources_and_paths(raw, seeded):
    status_of(raw.request("GET", "/api/v1/namespaces/default/widgets"), 404, "NotFound")
    status_of(raw.request("POST", "/apis/example.com/v1/namespaces/default/things", b"{}"), 404, "NotFound")
    status_of(raw.request("GET", "/api/v1/namespaces/default/configmaps/keep/bogus"), 404, "NotFound")
    assert snapshot(raw) == seeded


def test_bad_patches_change_nothing(raw, seeded):
    path = DEPLOYS + "/web"
    status_of(raw.request("PATCH", path, b'{"spec": ', "application/merge-patch+json"), 400, "BadRequest")
    status_of(raw.request("PATCH", path, b'{"op": "add"}', "application/json-patch+json"), 400, "BadRequest")
    status_of(raw.request("PATCH", path, b'{"spec": {}}', "text/plain"), 415, "UnsupportedMediaType")
    failing_test = json.dumps([{"op": "test", "path": "/spec/replicas", "value": 7}, {"op": "replace", "path": "/spec/replicas", "value": 9}])
    status_of(raw.request("PATCH", path, failing_test, "application/json-patch+json"), 422, "Invalid")
    wrong_type = json.dumps({"spec": {"replicas": "many"}})
    status_of(raw.request("PATCH", path, wrong_type, "application/merge-patch+json"), 400, "BadRequest")
    invalid_value = json.dumps({"spec": {"replicas": -1}})
    status_of(raw.request("PATCH", path, invalid_value, "application/merge-patch+json"), 422, "Invalid")
    assert snapshot(raw) == seeded


def test_unknown_fields_strict_warn_and_ignore(raw, seeded):
    obj = {"metadata": {"name": "strict"}, "data": {"a": "1"}, "dta": {"typo": "1"}}
    body = status_of(raw.request("POST", CMS + "?fieldValidation=Strict", json.dumps(obj)), 400, "BadRequest")
    assert 'unknown field "dta"' in body["message"]
    assert snapshot(raw) == seeded
    r = raw.request("POST", CMS + "?fieldValidation=Warn", json.dumps(obj))
    assert r.status_code == 201 and 'unknown field \\"dta\\"' in r.headers.get("Warning", "")
    assert "dta" not in r.json()


def test_bad_query_parameters(raw, seeded):
    status_of(raw.request("GET", CMS + "?labelSelector=a%20in%20(b"), 400, "BadRequest")
    status_of(raw.request("GET", CMS + "?continue=garbage!!"), 400, "BadRequest")
    status_of(raw.request("GET", CMS + "?limit=abc"), 400, "BadRequest")
    status_of(raw.request("GET", CMS + "?watch=true&resourceVersion=notanumber"), 400, "BadRequest")
    status_of(raw.request("POST", CMS + "?dryRun=Sometimes", json.dumps({"metadata": {"name": "d"}})), 400, "BadRequest")
    assert snapshot(raw) == seeded


def test_invalid_objects_are_unprocessable(raw, seeded):
    body = status_of(raw.request("POST", CMS, json.dumps({"metadata": {"name": "x" * 300}})), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    status_of(raw.request("POST", CMS, json.dumps({"metadata": {}})), 422, "Invalid")
    mismatch = json.loads(json.dumps(DEPLOYMENT))
    mismatch["metadata"]["name"] = "mismatch"
    mismatch["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    body = status_of(raw.request("POST", DEPLOYS, json.dumps(mismatch)), 422, "Invalid")
    assert any(c["field"] == "spec.template.metadata.labels" for c in body["details"]["causes"]), body
    assert snapshot(raw) == seeded


def test_mismatched_identity_is_refused(raw, seeded):
    other_ns = {"metadata": {"name": "x", "namespace": "kube-system"}}
    status_of(raw.request("POST", CMS, json.dumps(other_ns)), 400, "BadRequest")
    wrong_kind = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}
    status_of(raw.request("POST", CMS, json.dumps(wrong_kind)), 400, "BadRequest")
    renamed = {"metadata": {"name": "other"}, "data": {}}
    status_of(raw.request("PUT", CMS + "/keep", json.dumps(renamed)), 400, "BadRequest")
    assert snapshot(raw) == seeded


def test_stale_update_conflicts(raw, seeded):
    current = raw.request("GET", CMS + "/keep").json()
    current["data"]["a"] = "2"
    assert raw.request("PUT", CMS + "/keep", json.dumps(current)).status_code == 200
    current["data"]["a"] = "3"
    status_of(raw.request("PUT", CMS + "/keep", json.dumps(current)), 409, "Conflict")
    assert raw.request("GET", CMS + "/keep").json()["data"]["a"] == "2"
