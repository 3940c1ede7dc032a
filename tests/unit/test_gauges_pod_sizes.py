"""The stranded-GPU gauge needs the smallest pod over every deployment on each refresh; the pod
sizes of a deployment are parsed once per generation of its spec."""

from __future__ import annotations

import copy

from shorthop import metrics
from shorthop.controller.gauges import Gauges

from tests import operator_harness as oh


def test_pod_sizes_follow_the_spec_generation() -> None:
    gauges = Gauges(metrics.create())
    body = oh.deployment("llm", "ns", None, [("prefill", 2, 4, 2), ("decode", 1, 8, 8)])
    body["metadata"].update(uid="u-1", generation=1)
    assert gauges._smallest_pods(body) == (2, 8)
    bigger = copy.deepcopy(body)
    bigger["spec"]["roles"][0]["gpusPerPod"] = 4
    # Same generation: the spec has not changed as far as the API server is concerned.
    assert gauges._smallest_pods(bigger) == (2, 8)
    bigger["metadata"]["generation"] = 2
    assert gauges._smallest_pods(bigger) == (4, 8)


def test_an_invalid_spec_has_no_pods_to_count() -> None:
    gauges = Gauges(metrics.create())
    body = oh.deployment("bad", "ns", None, [("prefill", 1, 3, 2)])  # 3 GPUs in pods of 2
    body["metadata"].update(uid="u-2", generation=1)
    assert gauges._smallest_pods(body) == ()
