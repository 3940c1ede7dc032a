"""shorthop registers only an event handler with kopf, so kopf's per-event diff base (a deep copy
of the object, diffed with the stored one) is replaced by one that keeps and builds nothing."""

from __future__ import annotations

import kopf
from kopf._cogs.structs import diffs
from shorthop.controller.operator import NoDiffBase


def test_no_diff_base_builds_nothing_and_diffs_to_nothing() -> None:
    body = kopf.Body(
        {
            "apiVersion": "shorthop.io/v1alpha1",
            "kind": "InferenceDeployment",
            "metadata": {"name": "llm", "namespace": "ns", "generation": 3},
            "spec": {"roles": [{"name": "decode", "replicas": 2, "gpusPerReplica": 8}]},
            "status": {"phase": "Running", "replicas": [{"role": "decode", "replica": 0}]},
        }
    )
    storage = NoDiffBase()
    built = storage.build(body=body)
    assert built == {}
    assert storage.fetch(body=body) == built
    assert not diffs.diff(storage.fetch(body=body), built)
    # kopf's default copies the whole object (but status) on every event.
    assert kopf.AnnotationsDiffBaseStorage().build(body=body)["spec"] == body["spec"]
