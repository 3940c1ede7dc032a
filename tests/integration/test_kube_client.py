"""The operator's API calls reuse pooled connections (a TLS handshake per call cost ~11% of the
operator's time under load before raw responses were read to their end)."""

from __future__ import annotations

from typing import Any

import pytest
from shorthop.controller import kube as opkube

from tests import kube

pytestmark = pytest.mark.cluster


def _pool(api: Any) -> Any:
    pools = list(api.rest_client.pool_manager.pools._container.values())
    assert len(pools) == 1
    return pools[0]


def test_calls_whose_answer_is_not_used_hand_their_connection_back(cluster: kube.Cluster) -> None:
    api = opkube.api_client(str(cluster.kubeconfig))
    k = opkube.Kube(api)
    involved = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x", "uid": "u"}}
    with cluster.namespace("pool") as ns:
        involved["metadata"]["namespace"] = ns
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc"},
            "spec": {"clusterIP": "None", "selector": {"a": "b"}},
        }
        for i in range(10):
            k.event(involved, reason="R", message=f"m{i}", warning=False, component="test")
            k.ensure_service(ns, service)  # created once, then 409: already there
        # Calls run one after another, so one connection is enough (a second may have been
        # opened by the client's first request).
        assert _pool(api).num_connections <= 2
