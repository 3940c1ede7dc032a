"""Defects that fuzzing InferenceDeployment specs against the operator found
(``chaos/test_fuzz.py``):

* the CRD schema leaves the pod template free-form, so a string where a mapping belongs (a
  container's ``resources``, ``env``, the template's labels, ``tolerations``) passed the API server
  and crashed every reconcile with an AttributeError or TypeError (a traceback in the log, no
  status); now the spec is ``Invalid`` with a message naming the field;
* the schema allows 1024 replicas of 4096 one-GPU pods per role; every visit enumerated the 4
  million pod keys (10 s a visit, retried forever as unschedulable); now they are counted.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from shorthop import manifest
from shorthop.placement import request
from shorthop.topology import fake

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
    assert list(kube.created) == []
    status = kube.statuses[-1]
    assert status["phase"] == "Invalid"
    assert status["message"].startswith("spec.roles[0].template.")
    assert field in status["message"]


def test_request_reads_a_template_with_garbage_where_requests_belong() -> None:
    body = oh.deployment("d", "ns", None, [("r", 1, 4, 4)])
    body["spec"]["roles"][0]["template"]["spec"]["containers"] += ["sidecar", {"resources": 5}]
    infd = manifest.parse_deployment(body)
    req = request.from_spec(infd.spec, fake.CONFIG.tiers)
    assert req.roles[0].cpu_millis == 0


def test_the_largest_spec_the_schema_allows_is_reconciled_in_well_under_a_second() -> None:
    body = oh.deployment("d", "ns", None, [("prefill", 1024, 4096, 1), ("decode", 1024, 4096, 1)])
    started = time.perf_counter()
    kube = reconcile(body)
    assert time.perf_counter() - started < 2  # was 20 s: 8 million pod keys, twice
    status = kube.statuses[-1]
    assert status["phase"] == "Unschedulable"
    assert status["totalPods"] == 2 * 1024 * 4096
