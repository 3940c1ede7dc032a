"""The test helper that says when a fake node is ready for an untolerating pod: Ready is not
enough while the node lifecycle's ``not-ready`` taint is still on (a CI run failed on that)."""

from __future__ import annotations

from kubernetes import client

from tests import kube


def _node(ready: str | None, *taints: str) -> client.V1Node:
    conditions = [client.V1NodeCondition(type="Ready", status=ready)] if ready else None
    spec = client.V1NodeSpec(
        taints=[client.V1Taint(key=k, effect="NoSchedule") for k in taints] or None
    )
    return client.V1Node(spec=spec, status=client.V1NodeStatus(conditions=conditions))


def test_ready_and_untainted_is_schedulable() -> None:
    assert kube.node_schedulable(_node("True"))
    assert kube.node_schedulable(_node("True", "shorthop.io/test-pool"))


def test_ready_with_a_lifecycle_taint_still_on_is_not() -> None:
    assert not kube.node_schedulable(_node("True", "node.kubernetes.io/not-ready"))
    assert not kube.node_schedulable(_node("True", "node.kubernetes.io/unreachable"))


def test_not_ready_or_unreported_is_not() -> None:
    assert not kube.node_schedulable(_node("False"))
    assert not kube.node_schedulable(_node("Unknown"))
    assert not kube.node_schedulable(_node(None))
