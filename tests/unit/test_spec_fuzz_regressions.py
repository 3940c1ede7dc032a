"""Defects that fuzzing InferenceDeployment specs against the operator found
(``chaos/test_fuzz.py``):

* the CRD schema leaves the pod template free-form, so a string where a mapping belongs (a
  container's ``resources``, ``env``, the template's labels, ``tolerations``) passed the API server
  and crashed every reconcile with an AttributeError or TypeError (a traceback in the log, no
  status); now the spec is ``Invalid`` with a message naming the field;
* the schema allows 1024 replicas of 4096 one-GPU pods per role; every visit enumerated the 4
  million pod keys (10 s a visit, retried forever as unschedulable); now they are counted (the
  regression test bounds the visit's memory, not its time).
"""

from __future__ import annotations

from typing import Any

import pytest
from shorthop import manifest
from shorthop.placement import request
from shorthop.topology import fake

from tests import bounds
from tests import operator_harness as oh
from tests.recording_kube import RecordingKube, one_node_reconciler


def reconcile(body: dict[str, Any]) -> RecordingKube:
    kube = RecordingKube()
    _, reconciler, key = one_node_reconciler(kube, body)
    reconciler.reconcile(key)
    return kube


def _container(**fields: Any) -> Any:
    def edit(template: dict[str, Any]) -> None:
        template["spec"]["containers"][0].update(fields)

    return edit


def _spec(**fields: Any) -> Any:
    def edit(template: dict[str, Any]) -> None:
        template["spec"].update(fields)

    return edit


def _meta(**fields: Any) -> Any:
    def edit(template: dict[str, Any]) -> None:
        template["metadata"] = fields

    return edit


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_container(resources="8 GPUs"), "containers[0].resources"),
        (_container(resources=8), "containers[0].resources"),
        (_container(resources={"limits": ["nvidia.com/gpu"]}), "resources.limits"),
        (_container(resources={"requests": 4}), "resources.requests"),
        (_container(env="A=1"), "containers[0].env"),
        (_container(env=["A=1"]), "containers[0].env"),
        (_spec(tolerations=5), "spec.tolerations"),
        (_spec(tolerations={"key": "x"}), "spec.tolerations"),
        (_spec(tolerations=["all"]), "spec.tolerations"),
        (_meta(labels="app=x"), "metadata.labels"),
        (_meta(labels={"app": 5}), "metadata.labels"),
        (_meta(annotations=["x"]), "metadata.annotations"),
    ],
)
def test_a_template_of_the_wrong_shape_is_invalid_naming_the_field(edit: Any, field: str) -> None:
    body = oh.deployment("d", "ns", None, [("r", 1, 4, 4)])
    edit(body["spec"]["roles"][0]["template"])
    kube = reconcile(body)
    assert kube.creates() == []
    status = kube.statuses[-1]
    assert status["phase"] == "Invalid"
    assert status["message"].startswith("spec.roles[0].template.")
    assert field in status["message"]


def test_request_reads_a_template_with_garbage_where_requests_belong() -> None:
    body = oh.deployment("d", "ns", None, [("r", 1, 4, 4)])
    # (A container that is not a mapping no longer gets this far: the models refuse it, as the
    # API server does.)
    body["spec"]["roles"][0]["template"]["spec"]["containers"] += [{"resources": 5}]
    infd = manifest.parse_deployment(body)
    req = request.from_spec(infd.spec, fake.CONFIG.tiers)
    assert req.roles[0].cpu_millis == 0


def _unschedulable_visit(replicas: int, gpus_per_replica: int) -> tuple[dict[str, Any], int]:
    """The status one visit writes for two roles of one-GPU pods, and the visit's peak memory."""
    roles = [("prefill", replicas, gpus_per_replica, 1), ("decode", replicas, gpus_per_replica, 1)]
    body = oh.deployment("d", "ns", None, roles)
    kube, peak = bounds.peak_bytes(lambda: reconcile(body))
    return kube.statuses[-1], peak


def test_the_largest_spec_the_schema_allows_is_reconciled_without_enumerating_its_pods() -> None:
    """Was 20 s a visit: 8 million pod keys, twice. Now the work follows the replicas, not the
    pods: 256 times the pods (1024 replicas of 4096 pods against 1024 of 16) must not even
    double the visit's peak memory, where one small object per pod key would take 200 MiB."""
    small, small_peak = _unschedulable_visit(1024, 16)
    largest, peak = _unschedulable_visit(1024, 4096)
    assert small["phase"] == largest["phase"] == "Unschedulable"
    assert small["totalPods"] == 2 * 1024 * 16
    assert largest["totalPods"] == 2 * 1024 * 4096
    assert peak < 2 * small_peak, (peak, small_peak)
