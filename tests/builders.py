"""Fixture builders shared by tests: node topologies, configs, hypothesis strategies."""

from __future__ import annotations

from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from shorthop.placement.request import Request, RoleRequest, TrafficEdge
from shorthop.topology import intranode
from shorthop.topology.labels import NodeTopology
from shorthop.topology.levels import NetworkLevel, TopologyConfig
from shorthop.topology.links import LinkKind, Weights

LEVEL_NAMES = ("zone", "block", "rack")
PAIR_KINDS = (
    LinkKind.NVLINK,
    LinkKind.PIX,
    LinkKind.PXB,
    LinkKind.PHB,
    LinkKind.NODE,
    LinkKind.SYS,
)
NIC_KINDS = (LinkKind.PIX, LinkKind.PXB, LinkKind.PHB, LinkKind.NODE, LinkKind.SYS)


def topology(
    name: str,
    model: intranode.IntraNodeModel | None = None,
    *,
    clique: str | None = None,
    chain: tuple[str | None, ...] = ("z", "b", "r"),
) -> NodeTopology:
    model = model or intranode.nvswitch_model(8)
    return NodeTopology(
        name=name, product="test", gpus=model.gpus, model=model, clique=clique, chain=chain
    )


def config(levels: int = 3, weights: Weights | None = None) -> TopologyConfig:
    names = LEVEL_NAMES[3 - levels :]
    return TopologyConfig(
        preset="test",
        levels=tuple(NetworkLevel(n, (f"test/{n}",)) for n in names),
        weights=weights or Weights(),
    )


@st.composite
def weights(draw: Any, levels: int) -> Weights:
    """Random weights that still pass Weights.validate (distances follow bandwidth)."""
    half = draw(st.integers(1, 10))
    chain = sorted(
        draw(st.lists(st.integers(2 * half + 1, 400), min_size=5, max_size=5, unique=True))
    )
    pix, pxb, phb, node, sys_ = chain
    nic = draw(st.integers(1, 300))
    host_uplink = draw(st.integers(max(1, sys_ // 2 - nic + 1), 400))
    w = Weights(
        nvlink=draw(st.integers(1, 2 * half)),
        nvswitch=draw(st.integers(1, half)),
        nvlink_domain=draw(st.integers(1, half)),
        pix=pix,
        pxb=pxb,
        phb=phb,
        node=node,
        sys=sys_,
        numa=draw(st.integers(1, 200)),
        socket=draw(st.integers(1, 200)),
        nic=nic,
        nic_host=draw(st.integers(1, 200)),
        host_uplink=host_uplink,
        uplinks=tuple(draw(st.lists(st.integers(1, 500), min_size=levels, max_size=levels))),
    )
    try:
        w.validate(levels)
    except Exception:
        assume(False)
    return w


@st.composite
def matrix_models(draw: Any) -> intranode.IntraNodeModel:
    """A random nvidia-smi-like model: any pair relation, maybe NUMA info, maybe NICs."""
    g = draw(st.integers(1, 6))
    pairs = tuple(
        (i, j, draw(st.sampled_from(PAIR_KINDS))) for i in range(g) for j in range(i + 1, g)
    )
    numa = draw(st.none() | st.lists(st.integers(0, 1), min_size=g, max_size=g).map(tuple))
    nics = tuple(
        draw(
            st.lists(
                st.lists(st.sampled_from(NIC_KINDS), min_size=g, max_size=g).map(tuple), max_size=2
            )
        )
    )
    return intranode.IntraNodeModel("nvidia-smi", g, pairs=pairs, numa=numa, nics=nics)


def models() -> st.SearchStrategy[intranode.IntraNodeModel]:
    sizes = st.integers(1, 8)
    return st.one_of(
        sizes.map(intranode.nvswitch_model),
        st.integers(1, 4).map(intranode.nvl_tray_model),
        sizes.map(intranode.pcie_model),
        st.integers(2, 6).map(lambda g: intranode.pcie_model(g, tuple(i % 2 for i in range(g)))),
        st.just(intranode.dgx1_model()),
        matrix_models(),
    )


@st.composite
def clusters(draw: Any, max_nodes: int = 7) -> tuple[TopologyConfig, list[NodeTopology]]:
    """A random mixed cluster: random levels, weights, node models, cliques and labels."""
    levels = draw(st.integers(0, 3))
    cfg = config(levels, draw(weights(levels)))
    values = st.sampled_from([None, "a", "b"])
    n = draw(st.integers(1, max_nodes))
    nodes = [
        NodeTopology(
            name=f"n{i}",
            product="test",
            gpus=(model := draw(models())).gpus,
            model=model,
            clique=draw(st.sampled_from([None, None, "k1", "k2"])),
            chain=tuple(draw(values) for _ in range(levels)),
        )
        for i in range(n)
    ]
    return cfg, nodes


# -- Kubernetes objects for placement tests ------------------------------------------------------

PRODUCTS = {
    "hgx": "NVIDIA-H100-80GB-HBM3",
    "tray": "NVIDIA-GB200",
    "pcie": "NVIDIA-L40S",
}


def node_object(
    name: str,
    kind: str = "hgx",
    gpus: int = 8,
    *,
    clique: str | None = None,
    zone: str = "z1",
    block: str = "b1",
    rack: str = "r1",
    ready: bool = True,
    cordoned: bool = False,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """A Node as the API returns it, labelled for the ``plain`` preset."""
    node_labels = {
        "kubernetes.io/hostname": name,
        "nvidia.com/gpu.product": PRODUCTS[kind],
        "nvidia.com/gpu.count": str(gpus),
        "topology.kubernetes.io/zone": zone,
        "topology.shorthop.io/block": block,
        "topology.shorthop.io/rack": rack,
    }
    if clique:
        node_labels["nvidia.com/gpu.clique"] = clique
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels},
        "spec": {"unschedulable": cordoned, "taints": taints or []},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def gpu_pod(
    name: str, node: str, gpus: int | list[int], *, phase: str = "Running"
) -> dict[str, Any]:
    """A pod holding GPUs on ``node``: a count (any pod) or exact indices (shorthop's annotation)."""
    count = gpus if isinstance(gpus, int) else len(gpus)
    annotations = {} if isinstance(gpus, int) else {"shorthop.io/gpus": ",".join(map(str, gpus))}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": str(count)}}}],
        },
        "status": {"phase": phase},
    }


@st.composite
def small_clusters(
    draw: Any, max_nodes: int = 4, max_gpus: int = 8
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A few nodes of mixed kinds and racks with random GPUs already taken (exact indices)."""
    n = draw(st.integers(1, max_nodes))
    nodes, pods = [], []
    for i in range(n):
        kind = draw(st.sampled_from(["hgx", "tray", "pcie"]))
        gpus = draw(st.integers(1, 4 if kind == "tray" else max_gpus))
        clique = draw(st.sampled_from([None, "k1", "k2"])) if kind == "tray" else None
        rack = draw(st.sampled_from(["r1", "r2"]))
        block = draw(st.sampled_from(["b1", "b2"]))
        node = node_object(f"n{i}", kind, gpus, clique=clique, rack=rack, block=block)
        # Another resource some requests ask for (small_requests): on some nodes, in some amount.
        rdma = draw(st.sampled_from([None, None, "1", "2", "8"]))
        if rdma is not None:
            node["status"]["allocatable"]["rdma/ib"] = rdma
        nodes.append(node)
        taken = draw(st.lists(st.integers(0, gpus - 1), unique=True, max_size=gpus))
        if taken:
            pods.append(gpu_pod(f"bg{i}", f"n{i}", sorted(taken)))
    return nodes, pods


@st.composite
def small_requests(draw: Any, max_pods: int = 4) -> Any:
    """Prefill/decode requests small enough for the exact solver."""
    from shorthop.placement.request import Request, RoleRequest, TrafficEdge

    roles = []
    budget = max_pods
    for name in ("prefill", "decode"):
        pods_per_replica = draw(st.integers(1, 2))
        replicas = draw(st.integers(0, max(0, budget // pods_per_replica)))
        budget -= replicas * pods_per_replica
        gpus = draw(st.sampled_from([1, 2, 4]))
        rdma = draw(st.sampled_from([0, 0, 0, 1, 2]))  # rdma/ib per pod (small_clusters)
        other = (("rdma/ib", rdma),) if rdma else ()
        roles.append(RoleRequest(name, replicas, pods_per_replica, gpus, other=other))
    assume(sum(r.replicas for r in roles) > 0)
    return Request(
        roles=tuple(roles), traffic=(TrafficEdge(0, 1, draw(st.sampled_from([1.0, 0.5, 2.0]))),)
    )


# -- Dynamic Resource Allocation objects ---------------------------------------------------------

DRIVER = "gpu.nvidia.com"
BUSES = ("1b", "43", "52", "61", "9d", "c3", "d1", "df")


def dra_node(name: str, kind: str = "hgx", gpus: int = 8, **kwargs: Any) -> dict[str, Any]:
    """A Node whose GPUs the NVIDIA DRA driver publishes: no ``nvidia.com/gpu`` resource."""
    body = node_object(name, kind, gpus, **kwargs)
    for part in ("allocatable", "capacity"):
        body["status"][part].pop("nvidia.com/gpu", None)
    return body


def gpu_device(
    index: int,
    *,
    name: str | None = None,
    uuid: str | None = None,
    product: str = "NVIDIA H100 80GB HBM3",
    numa: int | None = None,
    root: str | None = None,
    kind: str = "gpu",
    taints: list[dict[str, str]] | None = None,
    bus: str | None = None,
) -> dict[str, Any]:
    """One device as the NVIDIA DRA driver publishes it (v1 shape)."""
    attributes: dict[str, Any] = {
        "type": {"string": kind},
        "uuid": {"string": uuid or f"GPU-{index:08d}-0000-0000-0000-000000000000"},
        "productName": {"string": product},
        "architecture": {"string": "Hopper"},
        "resource.kubernetes.io/pciBusID": {"string": bus or f"0000:{BUSES[index % 8]}:00.0"},
    }
    if numa is not None:
        attributes["resource.kubernetes.io/numaNode"] = {"int": numa}
    if root is not None:
        attributes["resource.kubernetes.io/pcieRoot"] = {"string": root}
    device: dict[str, Any] = {
        "name": name or f"gpu-{index}",
        "attributes": attributes,
        "capacity": {"memory": {"value": "80Gi"}},
    }
    if taints:
        device["taints"] = taints
    return device


def resource_slice(
    node: str,
    devices: list[dict[str, Any]],
    *,
    name: str | None = None,
    pool: str | None = None,
    generation: int = 1,
    count: int = 1,
    driver: str = DRIVER,
) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name or f"{node}-{driver}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": pool or node, "generation": generation, "resourceSliceCount": count},
            "devices": devices,
        },
    }


def gpu_slice(node: str, gpus: int = 8, **kwargs: Any) -> dict[str, Any]:
    """A node's whole slice: ``gpus`` H100s (NUMA by halves, a root complex per pair)."""
    devices = [
        gpu_device(i, numa=0 if i < gpus // 2 else 1, root=f"pci0000:{i // 2:02x}")
        for i in range(gpus)
    ]
    return resource_slice(node, devices, **kwargs)


def claim(
    name: str,
    allocated: list[tuple[str, str]] | None = None,
    *,
    owner: tuple[str, str] | None = None,
    namespace: str = "default",
    count: int = 1,
    reserved: list[str] | None = None,
    node: str | None = None,
    driver: str = DRIVER,
    deleting: bool = False,
) -> dict[str, Any]:
    """A ResourceClaim; ``allocated`` lists (pool, device); ``owner`` is (pod name, pod uid)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": owner[0], "uid": owner[1],
             "controller": True}
        ]  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": meta,
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpus", "exactly": {"deviceClassName": DRIVER, "count": count}}
                ]
            }
        },
    }
    if allocated:
        allocation: dict[str, Any] = {
            "devices": {
                "results": [
                    {"request": "gpus", "driver": driver, "pool": pool, "device": device}
                    for pool, device in allocated
                ]
            }
        }
        if node:
            allocation["nodeSelector"] = {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            }
        body["status"] = {
            "allocation": allocation,
            "reservedFor": [{"resource": "pods", "name": "x", "uid": u} for u in reserved or []],
        }
    return body


def dra_pod(
    name: str,
    node: str | None,
    gpus: list[int] | None,
    claim_name: str,
    *,
    uid: str | None = None,
    nominated: str | None = None,
    phase: str = "Running",
) -> dict[str, Any]:
    """A pod using a ResourceClaim (shorthop's on a DRA node when ``gpus`` are annotated)."""
    annotations = {"shorthop.io/gpus": ",".join(map(str, gpus))} if gpus else {}
    spec: dict[str, Any] = {
        "resourceClaims": [{"name": "gpus", "resourceClaimName": claim_name}],
        "containers": [{"name": "c", "resources": {"claims": [{"name": "gpus"}]}}],
    }
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": phase}
    if nominated:
        status["nominatedNodeName"] = nominated
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default", "uid": uid or f"uid-{name}",
            "annotations": annotations,
        },
        "spec": spec,
        "status": status,
    }  # fmt: skip


@st.composite
def small_pd_cases(
    draw: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Request]:
    """A small cluster (:func:`small_clusters`, up to 6 nodes) and a prefill -> decode request
    of 1-3 replicas per role, for the solver's bookkeeping properties."""
    nodes, pods = draw(small_clusters(max_nodes=6))
    request = Request(
        roles=(
            RoleRequest("prefill", draw(st.integers(1, 3)), 1, draw(st.sampled_from([1, 2]))),
            RoleRequest("decode", draw(st.integers(1, 3)), draw(st.integers(1, 2)), 2),
        ),
        traffic=(TrafficEdge(0, 1, 1.0),),
    )
    return nodes, pods, request
