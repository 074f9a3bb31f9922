"""Service-account tokens and self-subject reviews through the official Python client."""

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def test_token_request_and_bearer_use(server, api):
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account("default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app")))
    tr = core.create_namespaced_service_account_token(
        "app", "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=1200))
    )
    assert tr.status.token.count(".") == 2
    assert tr.spec.expiration_seconds == 1200
    assert tr.spec.audiences == ["https://kubernetes.default.svc.cluster.local"]
    assert tr.status.expiration_timestamp is not None

    # The token alone (no client certificate) is enough to call the API.
    cfg = client.Configuration()
    cfg.host = api.configuration.host
    cfg.ssl_ca_cert = api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": "Bearer " + tr.status.token}
    with client.ApiClient(cfg) as sa_client:
        review = client.AuthenticationV1Api(sa_client).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == "system:serviceaccount:default:app"
        assert "system:serviceaccounts:default" in review.status.user_info.groups
        ssar = client.AuthorizationV1Api(sa_client).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(namespace="default", verb="list", resource="pods")
                )
            )
        )
        assert ssar.status.allowed is True
        core.delete_namespaced_service_account("app", "default")
        with pytest.raises(ApiException) as e:
            client.CoreV1Api(sa_client).list_namespaced_pod("default")
        assert e.value.status == 401


def test_token_request_errors(api):
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service_account_token("ghost", "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])))
    assert e.value.status == 404
    core.create_namespaced_service_account("default", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="app")))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service_account_token(
            "app", "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=10))
        )
    assert e.value.status == 422
    with pytest.raises(ApiException) as e:
        client.AuthorizationV1Api(api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec())
        )
    assert e.value.status == 422
