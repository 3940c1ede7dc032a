"""A pod's request is Kubernetes' own (``occupancy.requests``): sidecars add to the containers,
an init container runs beside the sidecars declared before it, pod-level requests replace the
containers' CPU and memory, and the RuntimeClass overhead is added. A pod counted lower than the
kubelet counts it would be bound to a node that then refuses it (OutOfcpu, OutOfmemory)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from shorthop.placement import occupancy

GPU = "nvidia.com/gpu"


def container(cpu: int = 0, memory: int = 0, gpus: int = 0, sidecar: bool = False) -> dict:
    """A container requesting ``cpu`` millicores, ``memory`` MiB and ``gpus`` GPUs."""
    requests: dict[str, str] = {}
    if cpu:
        requests["cpu"] = f"{cpu}m"
    if memory:
        requests["memory"] = f"{memory}Mi"
    limits = {GPU: str(gpus)} if gpus else {}
    out: dict[str, Any] = {"resources": {"requests": requests, "limits": limits}}
    if sidecar:
        out["restartPolicy"] = "Always"
    return out


MIB = 1 << 20


def test_a_sidecar_adds_to_the_containers() -> None:
    spec = {"containers": [container(1000)], "initContainers": [container(500, sidecar=True)]}
    assert occupancy.requests(spec) == (0, 1500, 0)


def test_an_init_container_runs_beside_the_sidecars_declared_before_it() -> None:
    before = [container(500, sidecar=True), container(2000)]
    after = [container(2000), container(500, sidecar=True)]
    assert occupancy.requests({"containers": [container(1000)], "initContainers": before}) == (
        0,
        2500,  # the init step: 2 CPUs beside the sidecar's 0.5
        0,
    )
    assert occupancy.requests({"containers": [container(1000)], "initContainers": after}) == (
        0,
        2000,  # the init step runs alone; afterwards 1 + 0.5
        0,
    )


def test_a_sidecar_holding_gpus_keeps_them_beside_the_containers() -> None:
    spec = {
        "containers": [container(gpus=4)],
        "initContainers": [container(gpus=1, sidecar=True), container(gpus=2)],
    }
    assert occupancy.requests(spec)[0] == 5


def test_pod_level_requests_replace_the_containers_cpu_and_memory() -> None:
    spec = {
        "containers": [container(1000, 512, gpus=2)],
        "resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "8", "memory": "2Gi"}},
    }
    # CPU: the pod-level request; memory: a container names it, so the API server defaults the
    # pod-level request to the containers' (not to the pod-level limit); GPUs: never pod-level.
    assert occupancy.requests(spec) == (2, 4000, 512 * MIB)
    unnamed = {"containers": [container(1000)], "resources": {"limits": {"memory": "2Gi"}}}
    assert occupancy.requests(unnamed) == (0, 1000, 2048 * MIB)


def test_the_overhead_is_added() -> None:
    spec = {
        "containers": [container(1000, 1024)],
        "initContainers": [container(4000)],
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }
    assert occupancy.requests(spec) == (0, 4250, 1144 * MIB)
    usage = occupancy.pod_usage({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", **spec}})
    assert (usage.cpu_millis, usage.memory_bytes) == (4250, 1144 * MIB)


def _kep_753(containers: list[dict], inits: list[dict]) -> int:
    """The CPU request as KEP-753 writes it: InitContainerUse(i) = sum(sidecars before i) +
    init container i; the pod's = max(sum(containers) + sum(sidecars), max_i InitContainerUse)."""

    def cpu(c: dict) -> int:
        return int(c["resources"]["requests"].get("cpu", "0m")[:-1])

    sidecar = [c.get("restartPolicy") == "Always" for c in inits]
    uses = [
        sum(cpu(c) for c, s in zip(inits[:i], sidecar[:i], strict=True) if s) + cpu(inits[i])
        for i in range(len(inits))
    ]
    running = sum(map(cpu, containers)) + sum(
        cpu(c) for c, s in zip(inits, sidecar, strict=True) if s
    )
    return max([running, *uses])


_CONTAINERS = st.lists(st.integers(1, 4000).map(container), max_size=4)
_INITS = st.lists(st.builds(container, st.integers(1, 4000), sidecar=st.booleans()), max_size=5)


@given(_CONTAINERS, _INITS)
def test_the_cpu_request_follows_the_sidecar_rule(containers: list, inits: list) -> None:
    spec = {"containers": containers, "initContainers": inits}
    assert occupancy.requests(spec)[1] == _kep_753(containers, inits)
