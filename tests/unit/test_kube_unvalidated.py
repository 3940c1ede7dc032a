"""The operator's per-pod API calls skip the client's pydantic argument validation
(``kube.unvalidated``) and still send exactly the request the validated method sends."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from shorthop.controller import kube


class _Sent:
    """Stands in for the server: records each request the client would send."""

    status = 201
    data = b"{}"
    reason = "Created"

    @property
    def response(self) -> _Sent:  # the raw response a ``_preload_content=False`` call returns
        return self

    def getheaders(self) -> dict[str, str]:
        return {}


def _recording_api() -> tuple[client.ApiClient, list[tuple[Any, ...]]]:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    sent: list[tuple[Any, ...]] = []

    def call_api(
        method: str, url: str, headers: Any = None, body: Any = None, *_: Any, **__: Any
    ) -> _Sent:
        sent.append((method, url, dict(headers or {}), body))
        return _Sent()

    api.call_api = call_api  # type: ignore[method-assign]
    return api, sent


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p-0", "namespace": "ns", "labels": {"shorthop.io/role": "decode"}},
    "spec": {
        "schedulerName": "shorthop",
        "containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}],
    },
}


def test_unvalidated_create_sends_what_the_validated_method_sends() -> None:
    api, sent = _recording_api()
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("ns", POD, field_manager="shorthop", _preload_content=False)
    raw = kube.unvalidated(core, "create_namespaced_pod")
    raw("ns", POD, field_manager="shorthop", _preload_content=False)
    assert len(sent) == 2
    assert sent[0] == sent[1]
    method, url, _, body = sent[1]
    assert method == "POST"
    assert url.endswith("/api/v1/namespaces/ns/pods?fieldManager=shorthop")
    assert body == POD


def test_services_events_and_claim_lists_are_sent_as_the_validated_methods_send_them() -> None:
    api, sent = _recording_api()
    k = kube.Kube(api)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {}}
    k.ensure_service("ns", service)
    client.CoreV1Api(api).create_namespaced_service(
        "ns", service, field_manager="shorthop", _preload_content=False
    )
    assert sent[0] == sent[1]
    k.list_claims()
    client.ResourceV1Api(api).list_resource_claim_for_all_namespaces(
        _preload_content=False, limit=500
    )
    assert sent[2] == sent[3]
    assert sent[2][1].endswith("/apis/resource.k8s.io/v1/resourceclaims?limit=500")
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="d."),
        involved_object=client.V1ObjectReference(kind="InferenceDeployment", name="d"),
        reason="Placed",
        message="m",
    )
    raw = kube.unvalidated(client.CoreV1Api(api), "create_namespaced_event")
    raw("ns", event, field_manager="shorthop", _preload_content=False)
    client.CoreV1Api(api).create_namespaced_event(
        "ns", event, field_manager="shorthop", _preload_content=False
    )
    assert sent[4] == sent[5]


def test_the_binding_body_is_the_one_the_typed_model_gives() -> None:
    api, sent = _recording_api()
    kube.Kube(api).bind("ns", "p-0", "node-a", uid="u-1")
    typed = client.V1Binding(
        metadata=client.V1ObjectMeta(name="p-0", uid="u-1"),
        target=client.V1ObjectReference(api_version="v1", kind="Node", name="node-a"),
    )
    method, url, _, body = sent[0]
    assert (method, url.split("?")[0]) == (
        "POST",
        "https://127.0.0.1:1/api/v1/namespaces/ns/pods/p-0/binding",
    )
    assert body == {"apiVersion": "v1", "kind": "Binding", **api.sanitize_for_serialization(typed)}


def test_without_validation_in_the_client_the_method_itself_is_used() -> None:
    class Plain:
        def call(self, x: int) -> int:
            return x + 1

    plain = Plain()
    assert kube.unvalidated(plain, "call")(1) == 2
    # The generated methods carry pydantic's wrapper: the raw function is what is called.
    wrapped = client.CoreV1Api.create_namespaced_pod
    assert getattr(wrapped, "raw_function", None) is not None
    assert kube.unvalidated(client.CoreV1Api(), "create_namespaced_pod").func is (  # type: ignore[attr-defined]
        wrapped.raw_function  # type: ignore[attr-defined]
    )


def test_the_claim_calls_send_what_the_validated_methods_send() -> None:
    api, sent = _recording_api()
    resource = client.ResourceV1Api(api)
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "p-0-gpus", "namespace": "ns", "resourceVersion": "7"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com", "count": 4}}
                ]
            }
        },
    }
    resource.create_namespaced_resource_claim("ns", claim, _preload_content=False)
    resource.replace_namespaced_resource_claim_status(
        "p-0-gpus", "ns", claim, _preload_content=False
    )
    resource.read_namespaced_resource_claim("p-0-gpus", "ns", _preload_content=False)
    ops = kube.Kube(api)
    ops.create_claim("ns", claim)
    ops.update_claim_status("ns", claim)
    ops.get_claim("ns", "p-0-gpus")
    assert sent[3:] == sent[:3]
    assert [(m, u.split("?")[0].rsplit("/", 2)[-2:]) for m, u, _, _ in sent[:3]] == [
        ("POST", ["ns", "resourceclaims"]),
        ("PUT", ["p-0-gpus", "status"]),
        ("GET", ["resourceclaims", "p-0-gpus"]),
    ]
