"""pytest fixtures of the chaos checks, imported by ``chaos/conftest.py`` (the ``cluster`` and
``infd_crd`` fixtures come from the root conftest)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from chaos import checks
from chaos.record import Recorder
from tests import kube
from tests import operator_harness as oh

__all__ = ["OperatorFactory", "lease_namespace", "operators", "settle_namespace"]


class OperatorFactory:
    """Starts ``shorthop run`` processes for one test and stops every one of them (by pid)."""

    def __init__(self, cluster: kube.Cluster, workdir: Path, lease_namespace: str) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.lease_namespace = lease_namespace
        self.started: list[oh.OperatorProcess] = []

    def make(self, identity: str | None = None, **kwargs: Any) -> oh.OperatorProcess:
        """An operator (not started); ``kwargs`` go to :class:`OperatorProcess`."""
        kwargs.setdefault("kubeconfig", self.cluster.kubeconfig)
        kwargs.setdefault("lease_namespace", self.lease_namespace)
        op = oh.OperatorProcess(
            workdir=self.workdir, identity=identity or f"op-{uuid.uuid4().hex[:6]}", **kwargs
        )
        self.started.append(op)
        return op

    def start(self, identity: str | None = None, **kwargs: Any) -> oh.OperatorProcess:
        return self.make(identity, **kwargs).start()

    def logs(self) -> list[str]:
        return [p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log"))]

    def stop_all(self) -> None:
        for op in self.started:
            with contextlib.suppress(Exception):
                op.stop(timeout=15)


@pytest.fixture(scope="module")
def lease_namespace(cluster: kube.Cluster) -> Iterator[str]:
    """A namespace of its own for the Lease, so these operators elect among themselves only."""
    name = f"chaos-lease-{uuid.uuid4().hex[:6]}"
    oh.ensure_namespace(cluster, name)
    yield name
    with contextlib.suppress(client.ApiException):
        cluster.core.delete_namespace(name)


@pytest.fixture
def operators(
    cluster: kube.Cluster, infd_crd: str, lease_namespace: str, tmp_path: Path
) -> Iterator[OperatorFactory]:
    factory = OperatorFactory(cluster, tmp_path / "operators", lease_namespace)
    try:
        yield factory
    finally:
        factory.stop_all()


def settle_namespace(cluster: kube.Cluster, namespace: str, timeout: float = 120.0) -> None:
    """Delete every InferenceDeployment of ``namespace`` and wait until their pods are gone."""
    for body in checks.list_deployments(cluster.api, namespace):
        with contextlib.suppress(client.ApiException):
            client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
                checks.GROUP, checks.VERSION, namespace, checks.PLURAL, body["metadata"]["name"]
            )
    kube.wait_for(
        f"the pods of {namespace} to be garbage-collected",
        lambda: not checks.list_pods(cluster.core, namespace, checks.DEPLOYMENT_LABEL),
        timeout=timeout,
        interval=0.5,
    )


def poll(
    what: str, probe: Callable[[], list[str]], *, timeout: float, interval: float = 0.5
) -> tuple[float, list[str]]:
    """Poll a check (a list of violations) until it is empty; return (seconds, last violations)
    instead of failing, so that callers can record what did not converge."""
    started = time.monotonic()
    last: list[str] = [f"{what}: never checked"]
    while time.monotonic() - started < timeout:
        try:
            last = probe()
        except client.ApiException as exc:  # the API server may be down on purpose
            last = [f"{what}: API error {exc.status}"]
        except OSError as exc:
            last = [f"{what}: {exc}"]
        if not last:
            return time.monotonic() - started, []
        time.sleep(interval)
    return time.monotonic() - started, last


def recorder(section: str) -> Recorder:
    return Recorder(section)
