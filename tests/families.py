"""Families of small placement problems for the exact comparison (``bench.quality`` section
4(a), ``bench.plan_identity`` and the property tests): :data:`FAMILIES` and
:func:`quality_instance`. Small enough for ``placement.exact``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from shorthop.topology import smi
from shorthop.topology.labels import SMI_ANNOTATION

from tests.builders import gpu_pod, node_object

# Families of small placement problems; ``quality_instance`` draws one of each kind. Every family
# mixes node kinds (HGX NVSwitch nodes, GB200 trays in one or two NVLink cliques, PCIe nodes with
# or without a NUMA layout), takes some GPUs by background pods, and asks for roles whose
# replicas differ in size (1/2/4/8 GPUs, one or several pods).
FAMILIES = (
    "greedy-trap",  # an HGX node and trays; large replicas of one role, 1-GPU of the other
    "two-roles",  # prefill and decode of random shapes
    "multi-pod",  # replicas of several pods (spanning nodes)
    "three-roles",  # three roles joined by two or three traffic edges
    "scoped",  # a replicaScope, or a deployment scope (required or preferred)
    "busy",  # heavy background occupancy, tight fits
    "uneven-nodes",  # GPUs not uniformly linked: DGX-1, real nvidia-smi captures, random matrices
    "crossed",  # all node kinds at once; edges either way between two or three roles, mixed
    # patterns, weights 0.25-10; up to 11 pods
)

# The real ``nvidia-smi topo -m`` captures of tests/fixtures with two GPUs or more (the
# ``uneven-nodes`` family puts them on nodes as the node agent does, in an annotation).
_REAL_CAPTURES = Path(__file__).parent / "fixtures" / "nvidia-smi" / "real"
_SMI_CODES = ("NV1", "NV2", "NV4", "NV12", "NV18", "PIX", "PXB", "PHB", "NODE", "SYS")


@cache
def _captures() -> tuple[str, ...]:
    texts = [p.read_text() for p in sorted(_REAL_CAPTURES.glob("*.txt"))]
    return tuple(t for t in texts if smi.parse(t).gpus >= 2)


def random_smi(rng: Any, gpus: int) -> str:
    """An ``nvidia-smi topo -m`` matrix of ``gpus`` GPUs, each pair joined by a relation drawn
    from NVLink (1-18 links) and the PCIe ones; NUMA affinity split in halves or absent."""
    cells = [[smi.Link("X") for _ in range(gpus)] for _ in range(gpus)]
    for i in range(gpus):
        for j in range(i + 1, gpus):
            code = rng.choice(_SMI_CODES)
            link = smi.Link("NV", int(code[2:])) if code.startswith("NV") else smi.Link(code)
            cells[i][j] = cells[j][i] = link
    halves = rng.random() < 0.5
    numa = tuple((0 if g < gpus // 2 else 1) if halves else None for g in range(gpus))
    matrix = smi.TopoMatrix(
        gpus,
        (),
        tuple(tuple(row) for row in cells),
        tuple(() for _ in range(gpus)),
        tuple(None for _ in range(gpus)),
        numa,
        {},
    )
    return smi.render(matrix)


def _uneven_node(rng: Any, i: int, cliques: list[str]) -> dict[str, Any]:
    """A node of the ``uneven-nodes`` family: HGX, tray or PCIe as elsewhere, or a DGX-1 V100
    (the cube-mesh preset), or a node carrying a real or random nvidia-smi matrix."""
    kind = rng.choice(["hgx", "tray", "pcie", "dgx1", "capture", "capture", "matrix", "matrix"])
    rack, block = rng.choice(["r1", "r2"]), rng.choice(["b1", "b2"])
    if kind in ("hgx", "tray", "pcie"):
        gpus = 4 if kind == "tray" else rng.choice([4, 8])
        clique = rng.choice(cliques) if kind == "tray" and cliques else None
        return node_object(f"n{i}", kind, gpus, clique=clique, rack=rack, block=block)
    if kind == "dgx1":
        node = node_object(f"n{i}", "hgx", 8, rack=rack, block=block)
        node["metadata"]["labels"]["nvidia.com/gpu.product"] = "Tesla-V100-SXM2-32GB"
        return node
    if kind == "capture":
        text = rng.choice(_captures())
    else:
        text = random_smi(rng, rng.choice([2, 3, 4, 6, 8]))
    node = node_object(f"n{i}", "pcie", smi.parse(text).gpus, rack=rack, block=block)
    node["metadata"]["annotations"] = {SMI_ANNOTATION: text}
    return node


def _small_node(rng: Any, i: int, kind: str, gpus: int, cliques: list[str]) -> dict[str, Any]:
    clique = rng.choice(cliques) if kind == "tray" and cliques else None
    node = node_object(
        f"n{i}",
        kind,
        gpus,
        clique=clique,
        rack=rng.choice(["r1", "r2"]),
        block=rng.choice(["b1", "b2"]),
        zone=rng.choice(["z1", "z1", "z2"]),
    )
    if kind == "pcie" and gpus >= 2 and rng.random() < 0.5:
        node["metadata"]["labels"]["shorthop.io/gpu-numa"] = ",".join(
            str(0 if g < gpus // 2 else 1) for g in range(gpus)
        )
    return node


def quality_instance(
    rng: Any, family: str, pattern: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    """Nodes, background pods and a request of ``family`` (see :data:`FAMILIES`), all traffic
    edges of ``pattern`` (``crossed``: the first), drawn from ``rng`` (a ``random.Random``).
    Small enough for ``placement.exact`` (at most 5 nodes and about 8 pods; ``crossed`` 11)."""
    from shorthop.placement.request import Request, RoleRequest, TrafficEdge

    cliques = rng.choice([["k1"], ["k1", "k2"], ["k1", None]])
    nodes: list[dict[str, Any]] = []
    if family == "greedy-trap":
        nodes.append(_small_node(rng, 0, "hgx", 8, cliques))
        for i in range(1, rng.randint(2, 3)):
            nodes.append(_small_node(rng, i, "tray", 4, ["k1"]))
    elif family == "uneven-nodes":
        nodes = [_uneven_node(rng, i, [c for c in cliques if c]) for i in range(rng.randint(1, 4))]
    elif family == "crossed":
        for i in range(rng.randint(1, 5)):
            if rng.random() < 0.4:
                nodes.append(_uneven_node(rng, i, [c for c in cliques if c]))
            else:
                kind = rng.choice(["hgx", "hgx", "tray", "tray", "pcie"])
                gpus = 4 if kind == "tray" else rng.choice([2, 4, 4, 8, 8])
                nodes.append(_small_node(rng, i, kind, gpus, cliques))
    else:
        for i in range(rng.randint(2, 5)):
            kind = rng.choice(["hgx", "hgx", "tray", "tray", "pcie"])
            gpus = 4 if kind == "tray" else rng.choice([2, 4, 4, 8, 8])
            nodes.append(_small_node(rng, i, kind, gpus, cliques))
    busy = 0.6 if family == "busy" else rng.choice([0.0, 0.2, 0.35])
    if family == "crossed":
        busy = rng.choice([0.0, 0.2, 0.35, 0.6])
    if family == "uneven-nodes":
        busy = rng.choice([0.0, 0.0, 0.25, 0.5])
    pods = []
    for node in nodes:
        gpus = int(node["status"]["allocatable"]["nvidia.com/gpu"])
        taken = [g for g in range(gpus) if rng.random() < busy]
        if taken:
            name = node["metadata"]["name"]
            pods.append(gpu_pod(f"bg-{name}", name, taken))
    free = sum(int(n["status"]["allocatable"]["nvidia.com/gpu"]) for n in nodes) - sum(
        len(p["metadata"]["annotations"]["shorthop.io/gpus"].split(",")) for p in pods
    )

    def role(name: str, budget_pods: int) -> Any:
        if family == "multi-pod":
            pods_per_replica = rng.choice([2, 2, 3])
            q = rng.choice([1, 2, 2, 4])
        elif family == "greedy-trap":
            pods_per_replica, q = 1, rng.choice([1, 4])
        elif family == "uneven-nodes":
            q = rng.choice([1, 1, 2, 2, 3, 4])  # 3-GPU pods too: no power of two
            pods_per_replica = rng.choice([1, 1, 2]) if q <= 2 else 1
        elif family == "crossed":
            pods_per_replica = rng.choice([1, 1, 2, 3])
            q = rng.choice([1, 1, 2, 4, 8] if pods_per_replica == 1 else [1, 2, 4])
            return RoleRequest(name, rng.randint(1, 4), pods_per_replica, q)
        else:
            pods_per_replica = rng.choice([1, 1, 2])
            q = rng.choice([1, 1, 2, 4, 8] if pods_per_replica == 1 else [1, 2, 4])
        replicas = rng.randint(1, max(1, budget_pods // pods_per_replica))
        return RoleRequest(name, replicas, pods_per_replica, q)

    names = ["encode", "prefill", "decode"] if family == "three-roles" else ["prefill", "decode"]
    if family == "crossed":
        names = ["prefill", "decode", "encode"][: rng.choice([2, 2, 3])]
    for _ in range(50):
        budget = rng.randint(3, 6 if family != "three-roles" else 7)
        roles = []
        for name in names:
            roles.append(role(name, max(1, budget // len(names) + rng.randint(0, 1))))
        if family == "greedy-trap":
            big, small = rng.sample([0, 1], 2)
            roles[big] = RoleRequest(roles[big].name, rng.randint(1, 2), 1, 4)
            roles[small] = RoleRequest(roles[small].name, rng.randint(2, 6), 1, 1)
        want = sum(r.replicas * r.gpus_per_replica for r in roles)
        pods_total = sum(r.replicas * r.pods_per_replica for r in roles)
        if pods_total <= (11 if family == "crossed" else 9) and want <= max(free, 1) + 2:
            break
    weights = [1.0, 0.5, 2.0]
    if family == "crossed":
        edges = _crossed_edges(rng, len(roles), pattern)
    elif family == "three-roles":
        edges = [TrafficEdge(1, 2, rng.choice(weights), pattern)]
        edges.append(TrafficEdge(0, 1, rng.choice(weights), pattern))
        if rng.random() < 0.5:
            edges.append(TrafficEdge(0, 2, rng.choice(weights), pattern))
    else:
        edges = [TrafficEdge(0, 1, rng.choice(weights), pattern)]
    required = preferred = None
    if family == "scoped":
        tiers = ("same-node-nvlink", "same-node-pcie", "nvlink-domain", "rack", "block", "zone")
        kind = rng.choice(["replica", "required", "preferred"])
        if kind == "replica":
            i = rng.randrange(len(roles))
            tier = rng.choice([0, 2, 3])
            r = roles[i]
            roles[i] = RoleRequest(r.name, r.replicas, r.pods_per_replica, r.pod_gpus, tier)
        elif kind == "required":
            required = tiers.index(rng.choice(["rack", "block", "zone"]))
        else:
            preferred = tiers.index(rng.choice(["nvlink-domain", "rack", "block"]))
    return (
        nodes,
        pods,
        Request(
            roles=tuple(roles),
            traffic=tuple(edges),
            required_scope=required,
            preferred_scope=preferred,
            name=f"{family}",
        ),
    )


def _crossed_edges(rng: Any, roles: int, pattern: Any) -> list[Any]:
    """One to three traffic edges between ``roles`` roles, either way (never both ways between
    two roles), weights 0.25-10; the first edge has ``pattern``, the others either pattern."""
    from shorthop.placement.request import Pattern, TrafficEdge

    ends = [(a, b) for a in range(roles) for b in range(roles) if a != b]
    rng.shuffle(ends)
    edges: list[Any] = []
    for a, b in ends[: rng.randint(1, min(3, len(ends)))]:
        if any({e.source, e.target} == {a, b} for e in edges):
            continue
        kind = pattern if not edges else rng.choice([Pattern.ALL_TO_ALL, Pattern.PAIRED])
        edges.append(TrafficEdge(a, b, rng.choice([0.25, 1.0, 3.0, 10.0]), kind))
    return edges
