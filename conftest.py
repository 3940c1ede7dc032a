"""Session fixtures shared by tests/, e2e/ and chaos/: the Kubernetes cluster the suite talks to,
and the hypothesis profile every property and fuzz test runs under (see
``tests/hypothesis_profiles.py``: fixed examples by default, fresh ones under ``make fuzz``).

By default a private control plane (built from source, see e2e/controlplane) is started once per
test session on random loopback ports and stopped at the end. Set ``SHORTHOP_TEST_KUBECONFIG`` to
a kubeconfig to run the same tests against an existing cluster instead (kind, a real cluster).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import hypothesis_profiles, kube

hypothesis_profiles.register()


def pytest_report_header(config: pytest.Config) -> str:
    external = os.environ.get(kube.KUBECONFIG_ENV)
    if external:
        return f"cluster: {external} ({kube.KUBECONFIG_ENV})"
    from e2e.controlplane import components

    try:
        release = components.selected()
    except components.UnsupportedVersion as exc:
        return f"local control plane: {exc}"
    return (
        f"local control plane: Kubernetes {release.kubernetes}, etcd {release.etcd}, "
        f"kwok {components.KWOK_VERSION} ({components.VERSION_ENV} picks another: "
        f"{components.supported()})"
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube.Cluster]:
    external = os.environ.get(kube.KUBECONFIG_ENV)
    if external:
        yield kube.Cluster(kubeconfig=Path(external), local=None)
        return
    from e2e.controlplane import cluster as controlplane

    local = controlplane.LocalCluster(tmp_path_factory.mktemp("cluster"), tie_to_parent=True)
    local.up()
    try:
        yield kube.Cluster(kubeconfig=local.kubeconfig, local=local)
    finally:
        local.down()


@pytest.fixture(scope="session")
def infd_crd(cluster: kube.Cluster) -> str:
    """The InferenceDeployment CRD applied from crds/ and Established."""
    path = Path(__file__).resolve().parent / "crds" / "inferencedeployments.shorthop.io.yaml"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    cluster.wait_established("inferencedeployments.shorthop.io")
    return "inferencedeployments.shorthop.io"
