"""The objects shorthop writes for a pod on a DRA node (pure parts of ``controller.dra``): the pod
references its claim instead of requesting ``nvidia.com/gpu``, the claim asks for exactly the
pod's GPUs of the device class and is owned by the pod, and its status is what kube-scheduler
writes and the kubelet needs (allocation, node selector, reservedFor)."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.api import models
from shorthop.controller import dra
from shorthop.errors import SpecError
from shorthop.placement import devices


def _refs(names: list[str]) -> tuple[devices.DeviceRef, ...]:
    return tuple(devices.DeviceRef("gpu.nvidia.com", "n1", n) for n in names)


def _pod(containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "llama-decode-0-1", "annotations": {"shorthop.io/gpus": "4,5"}},
        "spec": {"containers": containers},
    }


def test_the_pod_references_its_claim_instead_of_requesting_gpus() -> None:
    pod = _pod(
        [
            {"name": "engine", "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"},
                                             "requests": {"nvidia.com/gpu": "2"}}},
            {"name": "sidecar"},
        ]
    )  # fmt: skip
    out = dra.attach_claim(pod, ["gpu-4", "gpu-5"])
    engine, sidecar = out["spec"]["containers"]
    assert engine["resources"] == {"limits": {"cpu": "4"}, "claims": [{"name": "gpus"}]}
    assert "resources" not in sidecar
    assert out["spec"]["resourceClaims"] == [
        {"name": "gpus", "resourceClaimName": "llama-decode-0-1-gpus"}
    ]
    assert out["metadata"]["annotations"]["shorthop.io/devices"] == "gpu-4,gpu-5"
    assert "resourceClaims" not in pod["spec"]  # a copy: the rendered pod is left alone


def test_containers_that_asked_for_gpus_all_see_the_claim() -> None:
    both = [{"name": n, "resources": {"limits": {"nvidia.com/gpu": "1"}}} for n in ("a", "b")]
    out = dra.attach_claim(_pod(both), ["gpu-0", "gpu-1"])
    assert [c["resources"] for c in out["spec"]["containers"]] == [
        {"claims": [{"name": "gpus"}]}
    ] * 2


def test_without_gpu_limits_the_first_container_gets_the_claim() -> None:
    out = dra.attach_claim(_pod([{"name": "a"}, {"name": "b"}]), ["gpu-0"])
    assert out["spec"]["containers"][0]["resources"] == {"claims": [{"name": "gpus"}]}
    assert "resources" not in out["spec"]["containers"][1]


def test_the_claim_asks_for_exactly_the_pods_gpus_and_is_owned_by_the_pod() -> None:
    claim = dra.render_claim("ns", "p", "uid-p", 4, "gpu.nvidia.com")
    assert claim["metadata"]["name"] == "p-gpus"
    assert claim["metadata"]["finalizers"] == [devices.FINALIZER]
    (owner,) = claim["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "uid-p",
                     "controller": True}  # fmt: skip
    assert claim["spec"]["devices"]["requests"] == [
        {"name": "gpus", "exactly": {"deviceClassName": "gpu.nvidia.com",
                                     "allocationMode": "ExactCount", "count": 4}}
    ]  # fmt: skip


def test_the_status_allocates_the_planned_devices_on_the_node_for_the_pod() -> None:
    claim = dra.render_claim("ns", "p", "uid-p", 2, "gpu.nvidia.com")
    wanted = _refs(["gpu-3", "gpu-1"])
    body = dra.allocated(claim, wanted, "n1", "p", "uid-p", None)
    allocation = body["status"]["allocation"]
    assert allocation["devices"]["results"] == [
        {"request": "gpus", "driver": "gpu.nvidia.com", "pool": "n1", "device": "gpu-3"},
        {"request": "gpus", "driver": "gpu.nvidia.com", "pool": "n1", "device": "gpu-1"},
    ]
    assert "config" not in allocation["devices"]
    assert allocation["nodeSelector"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ]
    }
    assert body["status"]["reservedFor"] == [{"resource": "pods", "name": "p", "uid": "uid-p"}]
    record = devices.read_claim({**body, "metadata": {**body["metadata"], "namespace": "ns"}})
    assert (record.node, record.holder, record.reserved) == ("n1", "ns/p", ("uid-p",))


def test_the_classes_configuration_is_copied_as_the_allocator_does() -> None:
    opaque = {"driver": "gpu.nvidia.com", "parameters": {"sharing": {"strategy": "None"}}}
    cls = {"spec": {"config": [{"opaque": opaque}]}}
    claim = dra.render_claim("ns", "p", "u", 1, "gpu.nvidia.com")
    body = dra.allocated(claim, _refs(["gpu-0"]), "n1", "p",
                         "u", cls)  # fmt: skip
    assert body["status"]["allocation"]["devices"]["config"] == [
        {"source": "FromClass", "requests": ["gpus"], "opaque": opaque}
    ]


def test_an_allocation_already_there_is_kept_and_the_pod_added_once() -> None:
    claim = dra.render_claim("ns", "p", "u", 1, "gpu.nvidia.com")
    first = dra.allocated(claim, _refs(["gpu-0"]), "n1", "p",
                          "u", None)  # fmt: skip
    again = dra.allocated(first, _refs(["gpu-7"]), "n1", "p",
                          "u", None)  # fmt: skip
    assert again["status"] == first["status"]


def _role(spec: dict[str, Any]) -> models.Role:
    return models.Role.model_validate(
        {"name": "decode", "replicas": 1, "gpusPerReplica": 1, "template": {"spec": spec}}
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"containers": [{"name": "e"}], "resourceClaims": [{"name": "nic"}]},
         "spec.roles[1].template.spec.resourceClaims"),
        ({"containers": [{"name": "e"}, {"name": "f", "resources": {"claims": [{"name": "x"}]}}]},
         "spec.roles[1].template.spec.containers[1].resources.claims"),
    ],
)  # fmt: skip
def test_templates_with_claims_of_their_own_are_refused_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(SpecError) as raised:
        dra.check_template(_role(spec), 1)
    assert raised.value.field == field


def test_a_plain_template_passes() -> None:
    dra.check_template(_role({"containers": [{"name": "e"}]}), 0)


# -- consistent reads shared by concurrent binds ---------------------------------------------------


def test_one_list_serves_every_bind_that_asked_before_it_started() -> None:
    """A caller always gets a list that started after it asked (it must see its own write), and
    callers waiting together share the next one."""
    import threading

    release = [threading.Event(), threading.Event(), threading.Event()]
    calls: list[int] = []

    def read() -> list[dict[str, Any]]:
        n = len(calls)
        calls.append(n)
        release[n].wait(30)
        return [{"list": n}]

    reads = dra.FreshReads(read)
    got: dict[str, list[dict[str, Any]]] = {}

    def call(name: str) -> None:
        got[name] = reads.read()

    first = threading.Thread(target=call, args=("a",))
    first.start()
    while not calls:  # the first list is running
        threading.Event().wait(0.001)
    later = [threading.Thread(target=call, args=(n,)) for n in ("b", "c")]
    for t in later:
        t.start()
    while len(reads._cond._waiters) < 2:  # type: ignore[attr-defined]  # both asked, waiting
        threading.Event().wait(0.001)
    release[0].set()
    first.join(30)
    assert got["a"] == [{"list": 0}]
    release[1].set()
    for t in later:
        t.join(30)
    assert got["b"] == got["c"] == [{"list": 1}]  # not the list that was running when they asked
    assert calls == [0, 1]


def test_a_failed_list_is_reported_and_the_next_caller_lists_again() -> None:
    outcomes = iter([RuntimeError("no answer"), [{"ok": 1}]])

    def read() -> list[dict[str, Any]]:
        found = next(outcomes)
        if isinstance(found, Exception):
            raise found
        return found

    reads = dra.FreshReads(read)
    with pytest.raises(RuntimeError):
        reads.read()
    assert reads.read() == [{"ok": 1}]
